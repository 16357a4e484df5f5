r"""Does the search pay? fersearch's default search against random search and the seed recipes.

    python bench/search_efficiency.py --out /tmp/effbench            # CPU defaults (see --help)
    python bench/search_efficiency.py --out runs/eff --data DIR --scale space --budget 600 \
        --device cuda --jobs 1 --threads 8                             # real data, one GPU

CPU defaults: 2,000 synthetic ``easy`` faces at 32 px (1,200 train / 400 val / 400 test), 30
epochs per trial (where the tiny backbones learn: 6 epochs left every arm near chance), a budget
of 360 epochs (12 unpruned trials) per arm, 5 repetitions of the ``plain`` and ``random`` arms
on the ``scratch`` space (the tiny backbones train from scratch: the pretrained ``default`` space
has nothing to fine-tune here), two arms at a time in two processes of one thread each. Rerunning
with the same ``--out`` continues. The report also gives the paired bootstrap of the two arms'
``finalize --top 3`` test UAR, and in how many repetitions ``plain`` reached ``random``'s final
best within a third.

Arms, each with the same budget in epochs, the same data and the same seeds (trial n trains
with seed n in every arm; repetition r seeds every sampler with r):

  default    the space's own sampler and pruner (TPE + successive halving in ``scratch``), the
             seed recipes enqueued as the first trials (``fersearch search --seed-recipes``)
  plain      the space's own sampler and pruner, no recipes: what ``fersearch search`` does
             without flags
  random     random search, no pruning (how most people sweep)
  random_hb  random search with the space's Hyperband pruner
  seeds      the seed recipes alone, each trained for the full epochs, no pruning; rerun with
             the next seeds until the budget is spent (hand-tuning). What a recipe leaves
             open in the space is drawn at random once and kept for its reruns.
  warm       ``plain`` warm-started from an earlier study (``fersearch create
             --warm-start-from``): its best configurations are the first trials, in place of
             TPE's random start-up. Needs --warm-start-storage and --warm-start-study; a study
             on other data (e.g. this script's ``plain`` arm run with another --data-seed) is a
             transfer, one on the same data would select on this run's validation split.

Everything runs through fersearch itself: ``create_study`` on an embedded journal file, the
worker's ``Objective`` (the same trial code ``fersearch worker`` runs), ``make_sampler`` /
``make_pruner`` from the arm's sampler/pruner settings, and ``finalize`` for the test figures
(with its optional ONNX export turned off: it costs more than the retraining here).
Epochs consumed are the epochs trials actually trained (a pruned trial counts the epochs it
ran). A trial starts only while its full epoch count still fits in the budget, so no arm ever
spends more than the budget.

Screening a setting on one arm against an earlier run's reference, at a shorter budget (a
rough screen only: the ``random`` arm draws the same configurations for one code version, but
another machine trains them to other figures, as float differences grow over 30 epochs: one
configuration and seed gave 0.545 and 0.466; a verdict needs both arms run side by side):

    python bench/search_efficiency.py --out runs/screen --space FILE --arms default --top 0 \
        --budget 60 --reference-from /tmp/effbench/results.json --mark-epochs 40 [--only-reps 2]

Reported per arm (median and min-max over repetitions): best validation UAR of the complete
trials against epochs consumed (PNG), the epochs each arm needed to reach the ``random`` arm's
final best, the fraction of trials pruned, and the test UAR of ``finalize --top 3`` (read for
the report only: every choice, in the search and in finalize, is made on validation).

``--scale cpu`` (default) runs the space's parameters with tiny timm test backbones at a small
image size on the synthetic faces (``fersearch synth --difficulty easy``): the figures are about
the search, not about FER accuracy. ``--scale space`` runs the space file unchanged (real
backbones: GPUs and real data).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.progress import Progress

from fersearch.config import DataConfig
from fersearch.data import load_manifest
from fersearch.data.decode import decode_split
from fersearch.data.synthetic import DIFFICULTIES, generate
from fersearch.errors import FersearchError
from fersearch.finalize import finalize, pipeline
from fersearch.search.space import SearchSpace, load_space, parse_space
from fersearch.search.study import create_study, settings
from fersearch.search.warm_start import DEFAULT_TOP, WarmStart, read_warm_start
from fersearch.search.worker import Objective

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quiet  # noqa: E402
from efficiency_report import (  # noqa: E402
    CANDIDATES,
    paired_test_difference,
    plot_curves,
    summarize_arms,
    write_markdown,
)

from fersearch.search import attrs

ARMS = ("default", "plain", "random", "random_hb", "seeds", "warm")
REFERENCE = "random"  # "epochs to reach" is measured against this arm's final best

# --scale cpu: what changes in the space so a 2-core CPU runs the benchmark in minutes. Every
# other parameter (ranges, sampler and pruner settings) is the space file's own.
# (Not test_convnext: finalize cannot save ConvNeXt members yet, their head norm shares memory.)
CPU_BACKBONES = ("test_efficientnet", "test_resnet")
CPU_FIXED = {
    # The tiny test backbones have no published weights: from scratch, whatever the space says.
    "pretrained": False,
    # The seed recipes' oversample_per_class (8,000) is sized for RAF-DB's 12,271 images; on a
    # 1,000-image set it would make one "epoch" fifty times longer. None = the largest class.
    "oversample_per_class": None,
}


def cpu_space(space: SearchSpace, size: int, epochs: int, warmup: int, backbones) -> SearchSpace:
    raw = space.model_dump(mode="json")
    raw["fixed"] = {**raw["fixed"], **CPU_FIXED, "image_size": size, "epochs": epochs}
    raw["fixed"]["warmup_epochs"] = warmup
    raw["params"]["backbone"] = {"type": "categorical", "choices": list(backbones)}
    return parse_space(raw, source="cpu-scaled space")


def arm_space(space: SearchSpace, arm: str, seed: int) -> SearchSpace:
    """The space with the arm's sampler and pruner (all else equal)."""
    raw = space.model_dump(mode="json")
    if arm not in ("default", "plain", "warm"):
        raw["sampler"] = {**raw["sampler"], "name": "random"}
    if arm in ("random", "seeds"):
        raw["pruner"] = {**raw["pruner"], "name": "none"}
    raw["sampler"]["seed"] = seed
    return parse_space(raw, source=f"arm {arm}")


def run_arm(arm, space, data_cfg, budget, workdir: Path, device: str, warm: WarmStart | None = None) -> dict:
    """Run one arm's search until the next trial would no longer fit in ``budget`` epochs."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"journal:{workdir / 'study.journal'}"
    recipes = arm in ("default", "seeds")
    study, created = create_study(arm, space, data_cfg, None, url, seed_recipes=recipes, warm_start=warm)
    if not created:
        raise SystemExit(f"{workdir} already holds a study {arm!r}: remove it or use another --out")
    progress = Progress(console=Console(file=io.StringIO()), disable=True)
    objective = Objective(study, settings(study), progress, workdir / "artifacts", device=device)
    epochs_per_trial = space.max_epochs
    trials, consumed, t0 = [], 0, time.perf_counter()
    while consumed + epochs_per_trial <= budget:
        if arm == "seeds" and not _waiting(study):
            _enqueue_recipes_again(study)
        finished: list[optuna.trial.FrozenTrial] = []
        study.optimize(
            objective, n_trials=1, catch=(RuntimeError,), callbacks=[lambda s, t: finished.append(t)]
        )
        t = finished[-1]
        ran = _epochs_trained(t, epochs_per_trial)
        consumed += ran
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "epochs": ran,
                "cum_epochs": consumed,
                "value": t.value,
                "uar_per_epoch": t.user_attrs.get(attrs.UAR_PER_EPOCH, []),
                "preset": t.user_attrs.get(attrs.PRESET),
                "params": t.params,
                "seconds": t.user_attrs.get(attrs.WALL_SECONDS),
            }
        )
        best = max((x["value"] for x in trials if x["state"] == "COMPLETE"), default=float("nan"))
        print(
            f"    {arm:9s} trial {t.number:3d} {t.state.name.lower():8s} {ran} ep "
            f"(total {consumed:4d}/{budget})  best {best:.4f}",
            flush=True,
        )
    return {"trials": trials, "epochs": consumed, "seconds": time.perf_counter() - t0, "storage": url}


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def _enqueue_recipes_again(study: optuna.Study) -> None:
    """Hand-tuning: the recipes of the first pass again (same parameters), with new trial seeds."""
    first = [t for t in study.trials if t.user_attrs.get(attrs.PRESET)]
    n_recipes = len(study.user_attrs[attrs.SEED_RECIPES])
    for t in first[:n_recipes]:
        user = {
            attrs.PRESET: t.user_attrs[attrs.PRESET],
            attrs.PRESET_SKIPPED: t.user_attrs.get(attrs.PRESET_SKIPPED),
        }
        study.enqueue_trial(dict(t.params), user_attrs=user)


def _epochs_trained(t: optuna.trial.FrozenTrial, epochs: int) -> int:
    done = len(t.user_attrs.get(attrs.UAR_PER_EPOCH, []))
    partial = t.state != optuna.trial.TrialState.COMPLETE and "pruned_at_epoch" not in t.user_attrs
    if partial and done < epochs:
        done += 1  # diverged or failed inside an epoch: that partial epoch was spent too
    return min(done, epochs)


def run_finalize(arm: str, storage: str, out: Path, top: int) -> dict:
    # finalize exports ONNX files whenever the onnx package is importable; on this CPU that is
    # more than half of finalize's time and changes no figure here, so the bench turns it off.
    pipeline.onnx_available = lambda: False
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = finalize(arm, top, out, storage, console=Console(file=io.StringIO()))
    report = json.loads(Path(paths["json"]).read_text())
    return {
        "predictions": str(paths["predictions"]),  # for the paired bootstrap between arms
        "test_uar": report["test"]["uar"],
        "test_war": report["test"]["war"],
        "val_uar": report["validation"]["uar"],
        "members": [m["id"] for m in report["members"]],
        "seconds": time.perf_counter() - t0,
    }


def run_job(job: dict) -> tuple[str, dict]:
    """One arm of one repetition: search, then finalize. Runs in a worker process."""
    torch.set_num_threads(job["threads"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    key, workdir = job["key"], Path(job["workdir"])
    shutil.rmtree(workdir, ignore_errors=True)  # a previous, unfinished attempt
    space = parse_space(job["space"], source=key)
    data_cfg = DataConfig.model_validate(job["data"])
    print(f"[{key}] search", flush=True)
    run = run_arm(job["arm"], space, data_cfg, job["budget"], workdir, job["device"], job["warm"])
    if job["top"] > 0:
        run["finalize"] = run_finalize(job["arm"], run["storage"], workdir / "finalize", job["top"])
        print(f"[{key}] finalize --top {job['top']}: test UAR {run['finalize']['test_uar']:.4f}", flush=True)
    return key, run


def prepare_data(args) -> DataConfig:
    if args.data is not None:
        root = args.data
    else:
        root = args.out / "data"
        wanted = {"n": args.n, "size": args.size, "seed": args.data_seed, "label_noise": args.label_noise}
        marker = root / "synthetic.json"
        meta = json.loads(marker.read_text()) if marker.is_file() else {}
        same = all(meta.get(k) == v for k, v in wanted.items())
        if not (same and meta.get("complete") and meta.get("difficulty", "standard") == args.difficulty):
            generate(root, difficulty=args.difficulty, **wanted)
    data_cfg = DataConfig(root=str(root.resolve()), val_fraction=args.val_fraction)
    manifest = load_manifest(data_cfg)
    data_cfg.format = manifest.format
    if args.scale == "cpu":  # build the decoded cache once, before the worker processes map it
        for split in ("train", "val", "test"):
            decode_split(manifest, split, args.size)
    return data_cfg


def report(
    results: dict, arms: list[str], out: Path, reference_from: Path | None = None, mark: int | None = None
) -> str:
    if reference_from is not None:  # the reference arm of another run (same data, space and seeds)
        other = json.loads(reference_from.read_text())["runs"]
        ref_runs = {k: v for k, v in other.items() if k.endswith(f"/{REFERENCE}")}
        results = {**results, "runs": {**ref_runs, **results["runs"]}}
    summary = summarize_arms(results, arms, REFERENCE, mark)
    summary["paired_tests"] = {
        arm: paired_test_difference(results, arm, REFERENCE) for arm in arms if arm in CANDIDATES
    }
    png = plot_curves(results, arms, out / "search_efficiency.png")
    text = write_markdown(summary, results, png)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return text


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), optuna {optuna.__version__}, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="work and results directory")
    ap.add_argument("--data", type=Path, default=None, help="a dataset dir (default: synthesise one)")
    ap.add_argument("--space", default="scratch", help="search space file or built-in name")
    ap.add_argument("--scale", choices=("cpu", "space"), default="cpu")
    ap.add_argument("--budget", type=int, default=360, help="epochs per arm and repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--mark-epochs",
        type=int,
        help="epochs of the goal and of the 'best by' column (default: a third of --budget; a shorter "
        "screening run against a --reference-from run of the full budget passes that budget's third)",
    )
    ap.add_argument("--only-reps", type=int, nargs="+", help="run only these repetitions (of 0..reps-1)")
    ap.add_argument(
        "--reference-from",
        type=Path,
        help=f"another run's results.json to take the `{REFERENCE}` arm from (this run has none)",
    )
    ap.add_argument("--arms", nargs="+", default=["plain", "random"], choices=ARMS)
    ap.add_argument("--top", type=int, default=3, help="finalize --top K (0: skip finalize)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job (1: fastest on a busy CPU)")
    ap.add_argument("--jobs", type=int, default=2, help="arms run side by side, one process each")
    ap.add_argument("--val-fraction", type=float, default=0.25)
    cpu = ap.add_argument_group("--scale cpu and synthetic data")
    cpu.add_argument("--epochs", type=int, default=30, help="epochs per trial (--scale cpu)")
    cpu.add_argument("--warmup-epochs", type=int, default=1)
    cpu.add_argument("--backbones", nargs="+", default=list(CPU_BACKBONES))
    cpu.add_argument("--size", type=int, default=32, help="image size (data and --scale cpu)")
    cpu.add_argument("--n", type=int, default=2000, help="synthetic images (train + test)")
    cpu.add_argument("--difficulty", choices=list(DIFFICULTIES), default="easy")
    cpu.add_argument("--label-noise", type=float, default=0.0)
    cpu.add_argument("--data-seed", type=int, default=0, help="the synthetic generator's seed (other data)")
    warm = ap.add_argument_group("the warm arm")
    warm.add_argument("--warm-start-storage", help="the store of the study to warm-start from (a URL)")
    warm.add_argument("--warm-start-study", help="that study's name")
    warm.add_argument("--warm-start-top", type=int, default=DEFAULT_TOP, help="its best K configurations")
    ap.add_argument("--report-only", action="store_true", help="redo the figures from --out/results.json")
    quiet.add_argument(ap)
    args = ap.parse_args()
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        arms = [a for a in ARMS if any(k.endswith(f"/{a}") for k in results["runs"])]
        print(report(results, arms, args.out, args.reference_from, args.mark_epochs))
        return
    warm = None
    if "warm" in args.arms:  # read once, here, so a wrong source stops the run before any training
        if not (args.warm_start_storage and args.warm_start_study):
            ap.error("the warm arm needs --warm-start-storage URL and --warm-start-study NAME")
        try:
            warm = read_warm_start(args.warm_start_study, args.warm_start_storage, args.warm_start_top)
        except FersearchError as exc:
            ap.error(str(exc))

    quiet.start(args.allow_load)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    data_cfg = prepare_data(args)
    space = load_space(args.space)
    if args.scale == "cpu":
        space = cpu_space(space, args.size, args.epochs, args.warmup_epochs, args.backbones)
    manifest = load_manifest(data_cfg)
    print(f"machine: {machine()}")
    print(
        f"data {data_cfg.root}: {len(manifest.splits['train'])} train / {len(manifest.splits['val'])} "
        f"val / {len(manifest.splits['test'])} test; space {args.space} ({args.scale}): "
        f"{space.max_epochs} epochs per trial, sampler {space.sampler.model_dump()}, "
        f"pruner {space.pruner.model_dump()}; budget {args.budget} epochs per arm",
        flush=True,
    )
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    results.update(
        {
            "command": " ".join(sys.argv),
            "budget": args.budget,
            "space": space.model_dump(mode="json"),
            "data": data_cfg.model_dump(),
        }
    )
    t_start = time.perf_counter()
    reps = [r for r in range(args.reps) if args.only_reps is None or r in args.only_reps]
    todo = [(f"rep{r}/{arm}", arm, r) for r in reps for arm in args.arms]
    todo = [job for job in todo if job[0] not in results["runs"]]  # a rerun continues
    jobs = {
        key: dict(
            key=key,
            arm=arm,
            space=arm_space(space, arm, rep).model_dump(mode="json"),
            data=data_cfg.model_dump(),
            budget=args.budget,
            workdir=str(args.out / key),
            device=args.device,
            top=args.top,
            threads=args.threads,
            warm=warm if arm == "warm" else None,  # a WarmStart: pickled to the job's process
        )
        for key, arm, rep in todo
    }
    # Separate processes, one study (journal file) each: nothing is shared but the data cache.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run_job, job) for job in jobs.values()]
        for fut in concurrent.futures.as_completed(futures):
            key, run = fut.result()
            results["runs"][key] = run
            results_path.write_text(json.dumps(results, indent=1))
    results["machine_at_end"] = machine()
    results["wall_seconds"] = time.perf_counter() - t_start
    results_path.write_text(json.dumps(results, indent=1))

    print(report(results, args.arms, args.out, args.reference_from, args.mark_epochs))
    print(f"machine at the end: {results['machine_at_end']}; this run {results['wall_seconds']:.0f} s")
    quiet.end()


if __name__ == "__main__":
    main()
