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
from pathlib import Path

import numpy as np
from rich.console import Console

from ..data import load_manifest
from ..data.cache import SplitArrays
from ..data.views import packed_split
from ..ensemble import export_onnx, load_ensemble, onnx_available, save_ensemble, size_on_disk, tta
from ..ensemble.probs import apply_bias, combine
from ..errors import InvalidArgument, ModelError, one_of
from ..metrics import summarize
from ..models import preprocess_for
from ..progress import tasks
from ..runtime import resolve_device
from ..search.study import load_study, settings
from ..train.evaluate import predict_views
from ..version import code_version
from . import calibrate, weighting
from .bootstrap import bootstrap
from .cv import cross_validate
from .report import baselines, metrics_block, write_report
from .retrain import MemberStore, TrainedMember, save_array, split_arrays, train_member
from .select import MemberSpec, member_specs, search_history, top_trials

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


def _retrain_all(specs, manifest, store, views, progress, label) -> list[TrainedMember]:
    overall = progress.add_task(label, total=len(specs))
    members = []
    for spec in specs:
        size = preprocess_for(spec.config)["image_size"]
        train, val = split_arrays(manifest, "train", size), split_arrays(manifest, "val", size)
        task = progress.add_task(f"  {spec.id}: epoch", total=spec.config.epochs)
        members.append(
            train_member(
                spec,
                store,
                train,
                val,
                manifest.num_classes,
                "best",
                views,
                on_epoch=lambda rec, t=task: progress.advance(t),
                class_names=list(manifest.class_names),
            )
        )
        progress.remove_task(task)
        progress.advance(overall)
    return members


def choose_view_set(member_views: np.ndarray, view_names: list[str], labels, n_cls: int) -> dict:
    """member_views (M, V, N, K) on validation. Scores every candidate set whose views were
    computed, with the plain mean of all members. TTA multiplies the cost of every prediction,
    so a set is kept only if its validation UAR is strictly higher than every cheaper set's."""
    scores, best = {}, None
    for name in tta.VIEW_SETS:  # in order of cost
        if not set(tta.VIEW_SETS[name]) <= set(view_names):
            continue
        idx = [view_names.index(v) for v in tta.VIEW_SETS[name]]
        uar, loglik = weighting.score(labels, member_views[:, idx].mean(1).mean(0), n_cls)
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
) -> dict[str, Path]:
    """onnx: also write ONNX files; None = when the optional onnx extra is installed."""
    _check_args(top, seeds, retrain_on, cv, tta_mode)
    if onnx and not onnx_available():  # before hours of retraining, not after
        raise ModelError(
            "--onnx needs the onnx and onnxscript packages, which are not installed: "
            "pip install 'fersearch[onnx]', or drop --onnx"
        )
    console = console or Console(stderr=True)
    out = Path(out)
    study = load_study(study_name, storage_url)
    cfg = settings(study)
    trials = top_trials(study, top)
    if len(trials) < top:
        console.print(f"[yellow]only {len(trials)} distinct complete trial(s); using them all[/]")
    specs = member_specs(trials, seeds)
    manifest = load_manifest(cfg.data)
    n_cls, class_names = manifest.num_classes, list(manifest.class_names)
    views = list(tta.ALL_VIEWS) if tta_mode == "auto" else tta.view_set(tta_mode)
    if tta_mode not in ("auto", "none"):
        views = [tta.ALL_VIEWS[0], *[v for v in views if v.name != "full"]]  # "none" is the baseline
    view_names = [v.name for v in views]
    members_root = out / "members"

    progress = tasks(console)
    with progress:
        # 1. Retrain on train; the validation split picks each member's epoch.
        members = _retrain_all(
            specs, manifest, MemberStore(members_root, "train"), views, progress, "finalize: retrain members"
        )
    val_labels = split_arrays(manifest, "val", preprocess_for(specs[0].config)["image_size"]).labels
    member_views = np.stack([m.predictions("held_views") for m in members])  # (M, V, Nval, K)

    # 2-4. Every choice on validation only.
    tta_choice = choose_view_set(member_views, view_names, val_labels, n_cls)
    view_set = tta_choice["chosen"]
    member_val = np.stack([_apply_views(m, view_set) for m in members])  # (M, Nval, K)
    selection, decision = weighting.choose_weights(member_val, val_labels, n_cls)
    weights = np.asarray(selection.weights)
    val_raw = combine(member_val, weights)
    bias = calibrate.fit_bias(val_raw, val_labels, n_cls)
    crossfit = calibrate.crossfit_gain(val_raw, val_labels, n_cls)
    # Offsets that do not help on held-out halves of validation are noise fitted to a small
    # split: drop them rather than ship them.
    calibration_applied = crossfit["gain"] > 0
    fitted_bias = bias
    if not calibration_applied:
        bias = np.zeros(n_cls)
    selected = [i for i in range(len(members)) if weights[i] > 0]
    console.print(
        f"validation ({len(val_labels)} images): TTA [bold]{view_set}[/], "
        + (
            f"greedy ensemble of {len(selected)} member(s) (UAR {selection.val_uar:.4f} vs plain mean "
            f"{selection.plain_mean_val_uar:.4f}; {decision['reason']}), "
            if decision["used"] == "greedy"
            else f"plain mean of {len(selected)} member(s) ({decision['reason']}), "
        )
        + (
            f"calibration offsets {np.round(bias, 2).tolist()}"
            if calibration_applied
            else "calibration not applied (no cross-fitted gain on validation)"
        )
    )

    # 5. The deployed members: the selected train-only members, or their train+val refits.
    deployed = [members[i] for i in selected]
    if retrain_on == "train+val":
        refit_specs = [_fixed_epochs(members[i]) for i in selected]
        with tasks(console) as progress:
            deployed = _refit_trainval(refit_specs, manifest, members_root, progress)

    # 6. Cross-validation of the fixed recipe on train+val (never test).
    cv_result = None
    if cv is not None:
        cv_specs = [_fixed_epochs(members[i]) for i in selected]
        with tasks(console) as progress:
            task = progress.add_task(f"finalize: {cv}-fold cross-validation", total=cv)
            cv_result = cross_validate(
                cv_specs,
                [weights[i] for i in selected],
                bias,
                view_set,
                manifest,
                cv,
                out / "cv",
                on_fold=lambda done, total: progress.update(task, completed=done),
            )

    # 7. Selection is fixed. Read the test split, once, for the report.
    test_sets = {}
    for m in [*members, *deployed]:
        size = preprocess_for(m.config)["image_size"]
        if size not in test_sets:
            test_sets[size] = split_arrays(manifest, "test", size)
    test_labels = next(iter(test_sets.values())).labels
    views_chosen = tta.view_set(view_set)

    def test_probs(m: TrainedMember) -> np.ndarray:
        model = m.load_model(n_cls).to(resolve_device(m.config.device))
        test = test_sets[preprocess_for(m.config)["image_size"]]
        p = predict_views(model, packed_split(test, m.config.fusion != "none"), views_chosen)
        p = p.mean(0)
        save_array(m.dir / f"test_probs_{view_set}.npy", p)  # kept beside the member, for audits
        return p

    member_test = np.stack([test_probs(m) for m in members])
    test_raw = combine(member_test, weights)
    if retrain_on == "train+val":
        deployed_test = np.stack([test_probs(m) for m in deployed])
        deployed_raw = combine(deployed_test, weights[selected])
    else:
        deployed_test, deployed_raw = None, test_raw
    test_final = apply_bias(deployed_raw, bias)
    val_final = apply_bias(val_raw, bias)

    # Export first, so latency and size are measured on the artefact people will deploy.
    out.mkdir(parents=True, exist_ok=True)
    ensemble_dir = out / "ensemble"
    save_ensemble(
        ensemble_dir,
        [(m.load_model(n_cls), _member_info(m, members, weights)) for m in deployed],
        class_names,
        [float(weights[i]) for i in selected],
        bias.tolist(),
        view_set,
        retrain_on,
    )
    want_onnx = onnx_available() if onnx is None else onnx
    onnx_files = export_onnx(ensemble_dir, load_ensemble(ensemble_dir)) if want_onnx else []
    if want_onnx and not onnx_files:
        console.print(
            "[yellow]ONNX export failed (reason in ensemble/manifest.json); the safetensors "
            "ensemble is complete, predict with --backend torch[/]"
        )
    deploy = _measure_deployment(ensemble_dir, split_arrays, manifest, latency_images, bool(onnx_files))
    deploy["onnx_files"] = onnx_files

    best = int(np.argmax([m.record["val_uar"] for m in members]))  # best single model: by validation
    arrays = {
        "val_labels": val_labels,
        "test_labels": test_labels,
        "member_ids": np.array([m.id for m in members]),
        "member_val_probs": member_val,
        "member_test_probs": member_test,
        "weights": weights,
        "bias": bias,
        "val_probs_uncalibrated": val_raw,
        "val_probs": val_final,
        "test_probs_uncalibrated": deployed_raw,
        "test_probs": test_final,
    }
    if deployed_test is not None:
        arrays["deployed_member_test_probs"] = deployed_test
    np.savez_compressed(out / "predictions.npz", **arrays)

    rows = _comparison_rows(member_val, member_test, weights, bias, best, deployed_raw, retrain_on)
    pairs = [
        ("ensemble", "best_single"),
        ("ensemble_calibrated", "ensemble"),
        ("ensemble_calibrated", "best_single"),
        ("ensemble", "plain_mean"),
        ("deployed", "best_single"),
    ]
    cis = {}
    for split, labels in (("val", val_labels), ("test", test_labels)):
        preds = {name: r[split].argmax(1) for name, r in rows.items() if r[split] is not None}
        cis[split] = bootstrap(labels, preds, n_cls, pairs=[p for p in pairs if set(p) <= set(preds)])
    report = {
        "study": study_name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "class_names": class_names,
        "data": cfg.data.model_dump(mode="json"),
        "dataset": {
            "root": str(manifest.root),
            "format": manifest.format,
            "counts": {s: manifest.counts(s) for s in ("train", "val", "test")},
        },
        "recipe": {
            "top": top,
            "seeds": seeds,
            "retrain_on": retrain_on,
            "tta_mode": tta_mode,
            "tta": tta_choice,
            "selection": {
                "method": "greedy forward selection with replacement, sorted initialisation "
                "(Caruana et al. 2004), metric validation UAR (ties: NLL); kept only if weights "
                "chosen on one stratified half of validation beat the plain mean on the other",
                "used": decision["used"],
                "reason": decision["reason"],
                "crossfit_on_validation": decision["crossfit"],
                "weights": weights.tolist(),
                "counts": selection.counts,
                "init_size": selection.init_size,
                "val_uar": selection.val_uar,
                "plain_mean_val_uar": selection.plain_mean_val_uar,
                "steps": selection.steps,
            },
            "calibration": {
                "applied": bool(calibration_applied),
                "bias": bias.tolist(),
                "fitted_bias": fitted_bias.tolist(),
                "crossfit_on_validation": crossfit,
                "rule": "offsets fitted on all of validation; applied only if offsets fitted on one "
                "stratified half raise UAR on the other (pooled over both halves)",
            },
            "best_single_member": members[best].id,
            "hygiene": _hygiene_note(retrain_on),
        },
        "validation": metrics_block(val_labels, val_final, class_names),
        "test": metrics_block(test_labels, test_final, class_names),
        "baselines": baselines(manifest.counts("train"), test_labels, class_names),
        "search": search_history(study),
        "comparison": {
            name: {
                "label": r["label"],
                "val": _headline(val_labels, r["val"], n_cls) if r["val"] is not None else None,
                "test": _headline(test_labels, r["test"], n_cls),
            }
            for name, r in rows.items()
        },
        "bootstrap": cis,
        "members": [
            {
                **_member_info(m, members, weights),
                "selected": bool(weights[i] > 0),
                "test_uar": summarize(test_labels, member_test[i].argmax(1), n_cls)["uar"],
            }
            for i, m in enumerate(members)
        ],
        "weights": weights.tolist(),
        "cv": cv_result,
        "deployment": deploy,
        "ensemble_dir": str(ensemble_dir),
        "code_version": code_version(),
    }
    paths = write_report(out, report)
    paths["ensemble"] = ensemble_dir
    paths["predictions"] = out / "predictions.npz"
    return paths


def _fixed_epochs(member: TrainedMember) -> MemberSpec:
    """The train-only run's chosen epoch count becomes the budget of a run with no validation."""
    e = int(member.record["best_epoch"])
    config = member.config
    config = config.model_copy(update={"epochs": e, "warmup_epochs": min(config.warmup_epochs, e)})
    return MemberSpec(member.record["trial"], member.record["seed"], config, member.record["search_val_uar"])


def _refit_trainval(specs, manifest, members_root, progress) -> list[TrainedMember]:
    store = MemberStore(members_root, "trainval")
    overall = progress.add_task("finalize: refit on train+val", total=len(specs))
    out = []
    for spec in specs:
        size = preprocess_for(spec.config)["image_size"]
        train, val = split_arrays(manifest, "train", size), split_arrays(manifest, "val", size)
        task = progress.add_task(f"  {spec.id}: epoch", total=spec.config.epochs)
        # val is inside the training data now: it only receives predictions, it picks nothing.
        out.append(
            train_member(
                spec,
                store,
                SplitArrays.concat(train, val),
                val,
                manifest.num_classes,
                "last",
                [tta.ALL_VIEWS[0]],
                on_epoch=lambda rec, t=task: progress.advance(t),
                class_names=list(manifest.class_names),
            )
        )
        progress.remove_task(task)
        progress.advance(overall)
    return out


def _member_info(m: TrainedMember, members: list[TrainedMember], weights) -> dict:
    """What the report and the manifest say about a member (weights from its train-only run)."""
    i = next(j for j, c in enumerate(members) if c.id == m.id)
    return {
        "id": m.id,
        "trial": m.record["trial"],
        "seed": m.record["seed"],
        "stage": m.record["stage"],
        "search_val_uar": m.record["search_val_uar"],
        "val_uar": members[i].record["val_uar"],
        "best_epoch": m.record["best_epoch"],
        "weight": float(weights[i]),
        "config": m.record["config"],
    }


def _comparison_rows(member_val, member_test, weights, bias, best, deployed_raw, retrain_on) -> dict:
    def both(fn):
        return fn(member_val), fn(member_test)

    rows = {}
    for name, label, fn in (
        ("best_single", "best single member (by validation UAR)", lambda p: p[best]),
        ("plain_mean", "plain mean of all members", lambda p: p.mean(0)),
        ("ensemble", "chosen ensemble weights", lambda p: combine(p, weights)),
        (
            "ensemble_calibrated",
            "chosen ensemble weights + calibration",
            lambda p: apply_bias(combine(p, weights), bias),
        ),
    ):
        v, t = both(fn)
        rows[name] = {"label": label, "val": v, "test": t}
    if retrain_on == "train+val":
        rows["deployed"] = {
            "label": "deployed: selected members refit on train+val + calibration",
            "val": None,  # val was training data for these models: no honest number exists
            "test": apply_bias(deployed_raw, bias),
        }
    return rows


def _headline(labels, probs, n_cls) -> dict:
    m = summarize(labels, probs.argmax(1), n_cls)
    return {k: m[k] for k in ("uar", "war", "macro_f1")}


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


def _measure_deployment(ensemble_dir: Path, arrays_fn, manifest, n_images: int, onnx: bool) -> dict:
    """Latency per image at batch size 1 of the reloaded, exported ensemble (with its TTA), on
    validation images, with the torch backend and, when ONNX files were written and onnxruntime
    is installed, with the onnxruntime backend; and the ensemble's size on disk."""
    import torch

    ens = load_ensemble(ensemble_dir)
    # timing only: with context views packed in, a member that does not fuse reads them as frames
    use_context = any(getattr(m, "fusion", None) is not None for m in ens.models)
    by_size = {s: packed_split(arrays_fn(manifest, "val", s), use_context)[:n_images] for s in ens.sizes}
    n = min(len(a) for a in by_size.values())
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


def _latency(ens, by_size: dict, n: int) -> tuple[float, float]:
    ens.predict_probs(lambda s: by_size[s][:1])  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        ens.predict_probs(lambda s, i=i: by_size[s][i : i + 1])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))
