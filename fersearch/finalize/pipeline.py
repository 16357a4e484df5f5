"""finalize: retrain the top-K trials, choose TTA, ensemble weights and calibration on
validation, then read the test split once for the report, and export the ensemble.

The order is the point. Steps 1-4 see only train and validation; every choice is fixed before
step 7 decodes a single test image:

1. retrain each member on train, its epoch chosen on validation; save weights and per-view
   validation predictions as each finishes (a rerun reuses finished members);
2. TTA: keep a view set only if it beats every cheaper set (and no TTA) on validation UAR;
3. ensemble weights: greedy forward selection with replacement (Caruana et al. 2004) on
   validation UAR, compared with the plain mean;
4. per-class calibration offsets tuned on validation UAR, applied only if offsets fitted on one
   half of validation raise UAR on the other half;
5. with ``--retrain-on train+val``: refit the selected members on train+val for the number of
   epochs their train-only run chose (no validation left to choose with), keep the last epoch;
6. with ``--cv K``: k-fold estimate of that fixed recipe on train+val;
7. test: predictions of every member, the comparisons, bootstrap intervals, the report, export.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from ..data import load_manifest
from ..data.cache import SplitArrays
from ..data.views import packed_split
from ..ensemble import export_onnx, load_ensemble, onnx_available, save_ensemble, size_on_disk, tta
from ..ensemble.cost import torch_threads
from ..ensemble.probs import apply_bias, combine
from ..ensemble.runners import INT8
from ..errors import InvalidArgument, ModelError, one_of
from ..metrics import summarize
from ..models import preprocess_for
from ..progress import bar, tasks
from ..runtime import resolve_device
from ..search.finetune import bind_trial_sources
from ..search.study import load_study
from ..search.tracking import TensorBoard, hparams_of
from ..train.evaluate import predict_views
from .budget import Budget, choose_under_budget, member_cost
from .calibrate import crossfit_gain, fit_bias
from .cv import cross_validate
from .quantize import quantize_ensemble
from .report import build_report, member_info, write_report
from .retrain import MemberStore, Splits, TrainedMember, save_array, train_member
from .select import MemberSpec, member_specs, top_trials
from .stages import Choices, TestResults
from .va import va_on_test
from .weighting import Selection, choose_weights, score

RETRAIN_ON = ("train", "train+val")
TTA_MODES = ("auto", *tta.VIEW_SETS)


def _check_args(top: int, seeds: int, retrain_on: str, cv: int | None, tta_mode: str) -> None:
    if top < 1:
        raise InvalidArgument(f"--top must be at least 1 (got {top})")
    if seeds < 1:
        raise InvalidArgument(f"--seeds must be at least 1 (got {seeds})")
    if retrain_on not in RETRAIN_ON:
        raise InvalidArgument(f"--retrain-on: {one_of(retrain_on, RETRAIN_ON)}")
    if cv is not None and cv < 2:
        raise InvalidArgument(f"--cv needs at least 2 folds (got {cv}); leave it out for no cross-validation")
    if tta_mode not in TTA_MODES:
        raise InvalidArgument(f"--tta: {one_of(tta_mode, TTA_MODES)}")


def choose_view_set(member_views: np.ndarray, view_names: list[str], labels, n_cls: int) -> dict:
    """member_views (M, V, N, K) on validation. Scores every candidate set whose views were
    computed, with the plain mean of all members. TTA multiplies the cost of every prediction,
    so a set is kept only if its validation UAR is strictly higher than every cheaper set's."""
    scores, best = {}, None
    for name in tta.VIEW_SETS:  # in order of cost
        if not set(tta.VIEW_SETS[name]) <= set(view_names):
            continue
        idx = [view_names.index(v) for v in tta.VIEW_SETS[name]]
        uar, loglik = score(labels, member_views[:, idx].mean(1).mean(0), n_cls)
        scores[name] = {"uar": uar, "nll": -loglik, "views": len(idx)}
        if best is None or uar > scores[best]["uar"]:
            best = name
    return {"chosen": best, "candidates": scores}


def _apply_views(member: TrainedMember, view_set: str) -> np.ndarray:
    names = member.record["views"]
    return member.predictions("held_views")[[names.index(v) for v in tta.VIEW_SETS[view_set]]].mean(0)


def finalize(
    study_name: str,
    top: int,
    out: str | Path,
    storage_url: str | None = None,
    console: Console | None = None,
    seeds: int = 1,
    retrain_on: str = "train",
    cv: int | None = None,
    tta_mode: str = "auto",
    latency_images: int = 16,
    onnx: bool | None = None,
    tensorboard: str | Path | None = None,
    budget: Budget | None = None,
    quantize: str | None = None,
) -> dict[str, Path]:
    """onnx: also write ONNX files; None = when the optional onnx extra is installed.
    tensorboard: a folder for TensorBoard event files, one run per member trained here.
    budget: members and TTA views chosen so the deployed ensemble meets it (finalize/budget.py).
    quantize: "int8" also writes int8 members, each kept only where validation UAR holds
    (finalize/quantize.py); the report gives their validation and test UAR and latency."""
    _check_args(top, seeds, retrain_on, cv, tta_mode)
    if quantize not in (None, "int8"):
        raise InvalidArgument(f"--quantize {quantize!r}: the only quantisation is int8")
    if quantize and (onnx is False or not onnx_available()):
        raise InvalidArgument(
            "--quantize int8 quantises the members' ONNX files: it needs --onnx and the onnx extra"
        )
    if onnx and not onnx_available():  # before hours of retraining, not after
        raise ModelError(
            "--onnx needs the onnx and onnxscript packages, which are not installed: "
            "pip install 'fersearch[onnx]', or drop --onnx"
        )
    console = console or Console(stderr=True)
    board = TensorBoard(tensorboard, lambda text: console.print(text, style="yellow", markup=False))
    out = Path(out)
    study, cfg = load_study(study_name, storage_url)
    bind_trial_sources(study)  # a member retrained from pretrained: trial:STUDY/N finds it there
    trials = top_trials(study, top)
    if len(trials) < top:
        console.print(f"[yellow]only {len(trials)} distinct complete trial(s); using them all[/]")
    specs = member_specs(trials, seeds)
    manifest = load_manifest(cfg.data)
    splits = Splits(manifest)
    views = _candidate_views(tta_mode)

    # 1. Retrain on train; the validation split picks each member's epoch.
    with tasks(console) as progress:
        store = MemberStore(out / "members", "train")
        label = "finalize: retrain members"
        members = _train_members(specs, splits, store, views, progress, label, board=board, study=study_name)
    # 2-4. Every choice on validation only.
    val_labels = splits.get("val", preprocess_for(specs[0].config)["image_size"]).labels
    within = _within_budget(members, views, val_labels, manifest.num_classes, budget, console)
    choices = choose_on_validation(members, [v.name for v in views], val_labels, manifest.num_classes, within)
    console.print(_describe_choices(choices))
    # 5. The deployed members: the selected train-only members, or their train+val refits.
    deployed = [members[i] for i in choices.selected]
    if retrain_on == "train+val":
        refits = [_fixed_epochs(m) for m in deployed]
        with tasks(console) as progress:
            store = MemberStore(out / "members", "trainval")
            plain = [tta.ALL_VIEWS[0]]
            deployed = _train_members(refits, splits, store, plain, progress, REFIT, True, board, study_name)
    # 6. Cross-validation of the fixed recipe on train+val (never test).
    cv_result = _cross_validate(members, choices, manifest, cv, out / "cv", console) if cv else None
    # 7. Every choice is sealed. Read the test split, once, for the report.
    splits.seal()
    test = _test_stage(members, deployed, splits, choices, manifest.num_classes, retrain_on)
    # Export first, so latency and size are measured on the artefact people will deploy.
    ensemble_dir, onnx_files = _export(out, members, deployed, choices, manifest, retrain_on, onnx, console)
    deploy = _measure_deployment(ensemble_dir, splits, latency_images, bool(onnx_files))
    deploy["onnx_files"] = onnx_files
    if within is not None:
        deploy["budget"] = {**within, **_budget_check(ensemble_dir, splits, latency_images, budget)}
    if quantize and onnx_files:
        deploy["int8"] = _int8(ensemble_dir, cfg.data, splits, test, latency_images, console)
    _save_predictions(out / "predictions.npz", members, choices, test)
    report = build_report(
        study_name,
        study,
        cfg,
        manifest,
        {"top": top, "seeds": seeds, "retrain_on": retrain_on, "tta_mode": tta_mode},
        members,
        choices,
        test,
        _hygiene_note(retrain_on),
        cv_result,
        deploy,
        ensemble_dir,
    )
    paths = write_report(out, report)
    paths["ensemble"] = ensemble_dir
    paths["predictions"] = out / "predictions.npz"
    return paths


REFIT = "finalize: refit on train+val"


def _candidate_views(tta_mode: str) -> list[tta.View]:
    """The views every member is scored on: all of them for --tta auto; otherwise the named
    set, always with the plain view, the "none" baseline."""
    if tta_mode == "auto":
        return list(tta.ALL_VIEWS)
    views = tta.view_set(tta_mode)
    if tta_mode != "none":
        views = [tta.ALL_VIEWS[0], *[v for v in views if v.name != "full"]]
    return views


def _train_members(
    specs,
    splits: Splits,
    store,
    views,
    progress,
    label: str,
    refit: bool = False,
    board: TensorBoard | None = None,
    study: str = "",
):
    """Train each spec, one progress row each (and a TensorBoard run on ``board``). Train-only
    members choose their epoch on validation; a refit trains on train+val for the spec's fixed
    epochs and keeps the last (validation is inside its training data: it only receives
    predictions, it picks nothing)."""
    board = board or TensorBoard(None)
    overall = progress.add_task(label, total=len(specs))
    members = []
    for spec in specs:
        size = preprocess_for(spec.config)["image_size"]
        train, val = splits.get("train", size), splits.get("val", size)
        task = progress.add_task(f"  {spec.id}: epoch", total=spec.config.epochs)
        run = board.member_run(study, store.stage, spec.id, hparams_of(spec.config, trial=spec.trial))

        def on_epoch(rec: dict, task=task, run=run) -> None:
            progress.advance(task)
            run.epoch(rec)  # never raises

        with run:
            member = train_member(
                spec,
                store,
                SplitArrays.concat(train, val) if refit else train,
                val,
                splits.manifest.num_classes,
                "last" if refit else "best",
                views,
                on_epoch=on_epoch,
                class_names=list(splits.manifest.class_names),
            )
        if member.record.get("trial_weights"):
            progress.console.print(
                f"{spec.id}: trial {spec.trial}'s own best weights (epoch {member.record['best_epoch']}, "
                f"val UAR {member.record['val_uar']:.4f}); training them again would repeat the trial"
            )
        members.append(member)
        progress.remove_task(task)
        progress.advance(overall)
    return members


def choose_on_validation(
    members: list[TrainedMember], view_names, val_labels, n_cls: int, within: dict | None = None
) -> Choices:
    """Steps 2-4: the TTA view set, the ensemble weights and the calibration offsets. ``within``:
    the view set and members a deployment budget allows (finalize/budget.py); the weights are
    then chosen among those members only."""
    member_views = np.stack([m.predictions("held_views") for m in members])  # (M, V, Nval, K)
    tta_choice = choose_view_set(member_views, view_names, val_labels, n_cls)
    if within is not None:
        tta_choice["chosen"] = within["view_set"]
    member_val = np.stack([_apply_views(m, tta_choice["chosen"]) for m in members])  # (M, Nval, K)
    allowed = within["members"] if within is not None else list(range(len(members)))
    selection, decision = choose_weights(member_val[allowed], val_labels, n_cls)
    selection = _on_all_members(selection, allowed, len(members))
    weights = np.asarray(selection.weights)
    val_raw = combine(member_val, weights)
    fitted = fit_bias(val_raw, val_labels, n_cls)
    crossfit = crossfit_gain(val_raw, val_labels, n_cls)
    # Offsets that do not help on held-out halves of validation are noise fitted to a small
    # split: drop them rather than ship them.
    applied = crossfit["gain"] > 0
    return Choices(
        view_set=tta_choice["chosen"],
        tta=tta_choice,
        val_labels=val_labels,
        member_val=member_val,
        selection=selection,
        decision=decision,
        weights=weights,
        val_raw=val_raw,
        bias=fitted if applied else np.zeros(n_cls),
        fitted_bias=fitted,
        crossfit=crossfit,
        calibration_applied=bool(applied),
    )


def _on_all_members(sel: Selection, allowed: list[int], m: int) -> Selection:
    """A selection made among ``allowed`` members, indexed over all ``m`` (0 for the others)."""
    if allowed == list(range(m)):
        return sel
    weights, counts = [0.0] * m, [0] * m
    for j, i in enumerate(allowed):
        weights[i], counts[i] = sel.weights[j], sel.counts[j]
    steps = [{**step, "added": allowed[step["added"]]} for step in sel.steps]
    return replace(sel, weights=weights, counts=counts, steps=steps)


def _within_budget(members, views, val_labels, n_cls: int, budget: Budget | None, console) -> dict | None:
    """The view set and members a deployment budget allows, chosen on validation; None without one."""
    if budget is None or not budget.active:
        return None
    names = [v.name for v in views]
    view_sets = [name for name, v in tta.VIEW_SETS.items() if set(v) <= set(names)]
    costs = []
    with bar(f"finalize: measuring {len(members)} members for the budget", console) as update:
        for i, m in enumerate(members):  # one model in memory at a time
            costs.append(member_cost(m.load_model(n_cls), view_sets, budget.threads))
            update(i + 1, len(members))
    member_views = np.stack([m.predictions("held_views") for m in members])
    within = choose_under_budget(member_views, names, val_labels, n_cls, costs, budget)
    within["member_costs"] = [{"member": m.id, **c} for m, c in zip(members, costs)]
    chosen = next(c for c in within["candidates"] if c["chosen"])
    console.print(
        f"deployment budget: TTA {chosen['view_set']}, members {chosen['members']}: "
        f"{chosen['latency_ms']:.1f} ms per image on {budget.threads} thread(s), "
        f"{chosen['size_mib']:.1f} MiB "
        f"(val UAR {chosen['val_uar']:.4f}); {len(within['candidates'])} candidates"
    )
    return within


def _int8(ensemble_dir: Path, data, splits: Splits, test: TestResults, n_images: int, console) -> dict:
    """Int8 members where validation UAR holds (chosen on train and validation only), then the
    int8 ensemble's test UAR beside the float one's and its latency (ONNX Runtime, 1 thread)."""
    q = quantize_ensemble(ensemble_dir, data.root, data.format, console=console)
    ens = load_ensemble(ensemble_dir, backend=INT8, threads=1)
    probs = ens.predict_probs(lambda s: packed_split(splits.get("test", s), False))  # ONNX: plain images
    k = len(ens.class_names)
    by_size, n = _timing_images(ens, splits, n_images)
    int8_ms = _latency(ens, by_size, n)[0]
    float_ms = _latency(load_ensemble(ensemble_dir, backend="onnxruntime", threads=1), by_size, n)[0]
    return {
        **q,
        "test_uar_float": float(summarize(test.labels, test.final.argmax(1), k)["uar"]),
        "test_uar_int8": float(summarize(test.labels, probs.argmax(1), k)["uar"]),
        "latency_ms_per_image_int8": int8_ms,
        "latency_ms_per_image_float_onnx": float_ms,
        "threads": 1,
    }


def _budget_check(ensemble_dir: Path, splits: Splits, n_images: int, budget: Budget) -> dict:
    """The exported ensemble measured as the budget states it (torch, its threads, batch 1)."""
    ens = load_ensemble(ensemble_dir)
    by_size, n = _timing_images(ens, splits, n_images)
    with torch_threads(budget.threads):
        median, p90 = _latency(ens, by_size, n)
    size = sum((ensemble_dir / m["file"]).stat().st_size for m in ens.manifest["members"]) / 2**20
    return {
        "measured_latency_ms_per_image_median": median,
        "measured_latency_ms_per_image_p90": p90,
        "measured_members_mib": size,
        "within": budget.fits(median, size),
    }


def _describe_choices(c: Choices) -> str:
    n, sel = len(c.selected), c.selection
    if c.decision["used"] == "greedy":
        weights = (
            f"greedy ensemble of {n} member(s) (UAR {sel.val_uar:.4f} vs plain mean "
            f"{sel.plain_mean_val_uar:.4f}; {c.decision['reason']}), "
        )
    else:
        weights = f"plain mean of {n} member(s) ({c.decision['reason']}), "
    calibration = (
        f"calibration offsets {np.round(c.bias, 2).tolist()}"
        if c.calibration_applied
        else "calibration not applied (no cross-fitted gain on validation)"
    )
    return f"validation ({len(c.val_labels)} images): TTA [bold]{c.view_set}[/], {weights}{calibration}"


def _cross_validate(members, c: Choices, manifest, folds: int, root: Path, console) -> dict:
    specs = [_fixed_epochs(members[i]) for i in c.selected]
    weights = [c.weights[i] for i in c.selected]
    with tasks(console) as progress:
        task = progress.add_task(f"finalize: {folds}-fold cross-validation", total=folds)
        return cross_validate(
            specs,
            weights,
            c.bias,
            c.view_set,
            manifest,
            folds,
            root,
            on_fold=lambda done, total: progress.update(task, completed=done),
        )


def _test_stage(members, deployed, splits: Splits, c: Choices, n_cls: int, retrain_on: str) -> TestResults:
    test_sets = {}
    for m in [*members, *deployed]:
        size = preprocess_for(m.config)["image_size"]
        if size not in test_sets:
            test_sets[size] = splits.get("test", size)
    views = tta.view_set(c.view_set)

    def test_probs(m: TrainedMember) -> np.ndarray:
        model = m.load_model(n_cls).to(resolve_device(m.config.device))
        test = test_sets[preprocess_for(m.config)["image_size"]]
        p = predict_views(model, packed_split(test, m.config.fusion != "none"), views).mean(0)
        save_array(m.dir / f"test_probs_{c.view_set}.npy", p)  # kept beside the member, for audits
        return p

    member_test = np.stack([test_probs(m) for m in members])
    deployed_test, deployed_raw = None, combine(member_test, c.weights)
    if retrain_on == "train+val":
        deployed_test = np.stack([test_probs(m) for m in deployed])
        deployed_raw = combine(deployed_test, c.weights[c.selected])
    labels = next(iter(test_sets.values())).labels
    refit = retrain_on == "train+val"  # VA of the ensemble deployed: None without VA heads or labels
    va = va_on_test(*((deployed, c.weights[c.selected]) if refit else (members, c.weights)), test_sets, n_cls)
    return TestResults(labels, member_test, deployed_test, deployed_raw, apply_bias(deployed_raw, c.bias), va)


def _export(
    out: Path, members, deployed, c: Choices, manifest, retrain_on, onnx, console
) -> tuple[Path, list]:
    out.mkdir(parents=True, exist_ok=True)
    ensemble_dir = out / "ensemble"
    n_cls = manifest.num_classes
    save_ensemble(
        ensemble_dir,
        [(m.load_model(n_cls), member_info(m, members, c.weights)) for m in deployed],
        list(manifest.class_names),
        [float(c.weights[i]) for i in c.selected],
        c.bias.tolist(),
        c.view_set,
        retrain_on,
    )
    want_onnx = onnx_available() if onnx is None else onnx
    onnx_files = export_onnx(ensemble_dir, load_ensemble(ensemble_dir)) if want_onnx else []
    if want_onnx and not onnx_files:
        console.print(
            "[yellow]ONNX export failed (reason in ensemble/manifest.json); the safetensors "
            "ensemble is complete, predict with --backend torch[/]"
        )
    return ensemble_dir, onnx_files


def _save_predictions(path: Path, members, c: Choices, test: TestResults) -> None:
    arrays = {
        "val_labels": c.val_labels,
        "test_labels": test.labels,
        "member_ids": np.array([m.id for m in members]),
        "member_val_probs": c.member_val,
        "member_test_probs": test.member_test,
        "weights": c.weights,
        "bias": c.bias,
        "val_probs_uncalibrated": c.val_raw,
        "val_probs": apply_bias(c.val_raw, c.bias),
        "test_probs_uncalibrated": test.deployed_raw,
        "test_probs": test.final,
    }
    if test.deployed_test is not None:
        arrays["deployed_member_test_probs"] = test.deployed_test
    np.savez_compressed(path, **arrays)


def _fixed_epochs(member: TrainedMember) -> MemberSpec:
    """The train-only run's chosen epoch count becomes the budget of a run with no validation."""
    e = int(member.record["best_epoch"])
    config = member.config
    config = config.model_copy(update={"epochs": e, "warmup_epochs": min(config.warmup_epochs, e)})
    return MemberSpec(member.record["trial"], member.record["seed"], config, member.record["search_val_uar"])


def _hygiene_note(retrain_on: str) -> str:
    note = (
        "Epochs, TTA views, ensemble weights and calibration offsets were chosen on the validation "
        "split only; the test split was decoded after every choice was fixed and read once, for "
        "this report. Validation numbers after selection are optimistic (they are what was "
        "maximised); the cross-fitted calibration gain is the honest validation estimate."
    )
    if retrain_on == "train+val":
        note += (
            " The deployed members were refit on train+val for the number of epochs their "
            "train-only run chose on validation, keeping the last epoch; validation was part of "
            "their training data, so no validation number is given for them, and the TTA, weights "
            "and calibration chosen with the train-only members were carried over unchanged."
        )
    return note


def _measure_deployment(ensemble_dir: Path, splits: Splits, n_images: int, onnx: bool) -> dict:
    """Latency per image at batch size 1 of the reloaded, exported ensemble (with its TTA), on
    validation images, with the torch backend and, when ONNX files were written and onnxruntime
    is installed, with the onnxruntime backend; and the ensemble's size on disk."""
    import torch

    ens = load_ensemble(ensemble_dir)
    by_size, n = _timing_images(ens, splits, n_images)
    median, p90 = _latency(ens, by_size, n)
    out = {
        "latency_ms_per_image_median": median,
        "latency_ms_per_image_p90": p90,
        "latency_images": n,
        "latency_device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "views_per_member": len(ens.views),
        "members": len(ens.models),
        "size_bytes": size_on_disk(ensemble_dir),
        "budgets": {"latency_ms_per_image": 100, "size_bytes": 500 * 1024 * 1024},
    }
    if onnx and importlib.util.find_spec("onnxruntime") is not None:
        median, p90 = _latency(load_ensemble(ensemble_dir, backend="onnxruntime"), by_size, n)
        out["onnxruntime"] = {"latency_ms_per_image_median": median, "latency_ms_per_image_p90": p90}
    return out


def _timing_images(ens, splits: Splits, n_images: int) -> tuple[dict, int]:
    """Up to ``n_images`` validation images at every member size, for the latency figures, and
    how many there are at every size."""
    # timing only: with context views packed in, a member that does not fuse reads them as frames
    use_context = any(getattr(m, "fusion", None) is not None for m in ens.models)
    by_size = {s: packed_split(splits.get("val", s), use_context)[:n_images] for s in ens.sizes}
    return by_size, min(len(a) for a in by_size.values())


def _latency(ens, by_size: dict, n: int) -> tuple[float, float]:
    ens.predict_probs(lambda s: by_size[s][:1])  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        ens.predict_probs(lambda s, i=i: by_size[s][i : i + 1])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))
