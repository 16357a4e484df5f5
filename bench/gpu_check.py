r"""The GPU check: what fersearch's training and prediction do on one GPU, in one command.

    python bench/gpu_check.py --device cuda [--out DIR]   # one GPU (not yet timed whole: BENCHMARKS.md)
    python bench/gpu_check.py --device cpu --quick           # the same code paths, tiny models

For the seed architectures (convnext_tiny; efficientnet_b4 + dual attention + Bi-LSTM head;
CLIP ViT-B/16 + prompt head + face/context fusion; swin_base; ir50 at 112 px) it prints:

  model-only   training images/s of a bare step (forward, loss, backward, AdamW) on a batch that
               already sits on the device, with bf16 autocast and channels_last on CUDA: the
               physical limit of that model on that device
  fit          training images/s of ``fersearch.train.fit`` on the same model, batch and size
               (goal on a GPU: >= 0.9 of model-only), then with the CPU albumentations loader
               (``augment: basic``) with its prefetch thread on and off, and with the same
               pipeline on the device (``augment_on: device``)
  syncs        (CUDA only) the places in fersearch where a fit step waits for the device, found
               with torch.cuda.set_sync_debug_mode
  memory       the device's allocated and reserved memory after each of 5 consecutive trials of
               the real worker in this one process (no growth), and the process's resident memory
  workers      a budget of trials run by one ``fersearch worker`` process and by two sharing the
               one device
  predict      latency of a 5-member ensemble through ``Ensemble.predict_probs`` (what
               ``fersearch predict --backend torch`` calls) at batch 1 and 32

Weights are random (speed does not depend on them; the check needs no download). The images
are random for the step figures and ``fersearch synth`` faces on disk for the worker runs.
``--quick`` swaps in timm's and open_clip's tiny test models at small sizes and a few steps, so
the CPU run takes a few minutes and a test keeps the script from rotting. Results go to
``DIR/gpu_check.json`` beside the printed tables.

On the GPU machine (no package registry) install what it lacks from the wheelhouse first
(``make wheelhouse`` here, carried as ``.whl``); see BENCHMARKS.md's GPU section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import run_together  # noqa: E402  (bench/processes.py)

CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]


@dataclass
class Arch:
    name: str
    config: dict  # TrialConfig keys beyond the common ones
    size: int
    batch: int
    context: bool = False  # face + context views (fusion)


FULL = [
    Arch("convnext_tiny", {"backbone": "convnext_tiny"}, 224, 64),
    Arch(
        "effb4_dual_bilstm", {"backbone": "efficientnet_b4", "attention": "dual", "head": "bilstm"}, 224, 32
    ),
    Arch(
        "clip_b16_prompt_fusion",
        {"backbone": "open_clip:ViT-B-16", "head": "prompt", "fusion": "xattn"},
        224,
        32,
        context=True,
    ),
    Arch("swin_base", {"backbone": "swin_base_patch4_window7_224"}, 224, 32),
    Arch("ir50_112", {"backbone": "ir50"}, 112, 64),
]
QUICK = [
    Arch("convnext(test)", {"backbone": "test_convnext"}, 32, 8),
    Arch(
        "effnet_dual_bilstm(test)",
        {"backbone": "test_efficientnet", "attention": "dual", "head": "bilstm"},
        64,
        8,
    ),
    Arch(
        "clip_prompt_fusion(test)",
        {"backbone": "open_clip:test-clip-ViT", "head": "prompt", "fusion": "xattn"},
        32,
        8,
        context=True,
    ),
    Arch("vit(test)", {"backbone": "test_vit"}, 32, 8),
    Arch("ir50_112", {"backbone": "ir50"}, 112, 2),
]
ENSEMBLE_FULL = (["convnext_tiny", "efficientnet_b0", "resnet50", "resnet18", "mobilenetv3_large_100"], 224)
ENSEMBLE_QUICK = (["test_resnet", "test_convnext", "test_efficientnet", "test_vit", "test_byobnet"], 32)


@dataclass
class Plan:
    """How much each section runs: the full check on a GPU, or ``--quick``."""

    archs: list[Arch]
    steps: int  # training steps per epoch (fit) and timed steps (model-only)
    warmup: int  # untimed model-only steps
    trials: int  # trials of the memory and workers sections
    worker_arch: Arch
    worker_images: int
    ensemble: tuple[list[str], int]
    repeats: int  # predict calls timed per batch size
    results: dict = field(default_factory=dict)


def plan_for(quick: bool) -> Plan:
    if quick:
        return Plan(QUICK, 3, 1, 5, QUICK[0], 160, ENSEMBLE_QUICK, 3)
    # 80 steps: on the H200, convnext_tiny's fit/model-only read 0.79 at 40 steps, 0.91 at 200
    return Plan(FULL, 80, 5, 5, FULL[0], 1600, ENSEMBLE_FULL, 20)


def base_config(arch: Arch, device: str, **extra) -> dict:
    return {
        "data": {"root": "."},
        **arch.config,
        "image_size": arch.size,
        "batch_size": arch.batch,
        "pretrained": False,
        "device": device,
        "seed": 0,
        "warmup_epochs": 0,
        **extra,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_split(n: int, arch: Arch, seed: int):
    from fersearch.data.cache import SplitArrays

    rng = np.random.default_rng(seed)
    shape = (n, arch.size, arch.size, 3)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    context = rng.integers(0, 256, shape, dtype=np.uint8) if arch.context else None
    labels = np.arange(n) % len(CLASSES)
    return SplitArrays(images, labels, [str(i) for i in range(n)], context=context)


def model_only(arch: Arch, device: torch.device, plan: Plan) -> float:
    """Training images/s of a bare step on a device-resident batch."""
    from fersearch.config import build_config
    from fersearch.data.views import pack
    from fersearch.models import create_model
    from fersearch.runtime import autocast, to_input

    config = build_config(base_config(arch, str(device)))
    model = create_model(config, len(CLASSES), CLASSES).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    data = random_split(arch.batch, arch, 1)
    packed = torch.from_numpy(pack(data.images, data.context)).to(device)
    x = to_input(packed, model.preprocess["mean"], model.preprocess["std"])
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(data.labels).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x)["logits"].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(plan.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(plan.steps):
        step()
    sync(device)
    return plan.steps * arch.batch / (time.perf_counter() - t0)


FIT_VARIANTS = {
    "fit": {},  # on-device flip/shift: the loop's default path
    "fit+cpu_aug+prefetch": {"augment": "basic", "augment_on": "cpu", "prefetch": 2},
    "fit+cpu_aug-prefetch": {"augment": "basic", "augment_on": "cpu", "prefetch": 0},
    "fit+device_aug": {"augment": "basic", "augment_on": "device"},
}
# prefetch off on request only: on the H200 it was 1.6x (convnext) and 1.8x (CLIP) slower than on,
# and equal for efficientnet_b4, whose model is the bottleneck
DEFAULT_VARIANTS = ["fit", "fit+cpu_aug+prefetch", "fit+device_aug"]


def fit_rate(arch: Arch, device: torch.device, plan: Plan, variant: dict, sync_debug: bool = False):
    """Training images/s of fit's second epoch (the first warms up): its seconds include one
    validation batch. With ``sync_debug`` (CUDA): the fersearch lines where a step waited."""
    from fersearch.config import build_config
    from fersearch.train import fit

    config = build_config(base_config(arch, str(device), epochs=2, **variant))
    train, val = random_split(plan.steps * arch.batch, arch, 2), random_split(arch.batch, arch, 3)
    seconds: list[float] = []
    sites: dict[str, int] = {}

    def on_epoch(record: dict) -> None:
        seconds.append(record["seconds"])
        if sync_debug and len(seconds) == 1:
            torch.cuda.set_sync_debug_mode("warn")  # the second epoch: steps, then validation

    def count(message, *_args, **_kwargs) -> None:  # called where the warning is raised
        if "synchroniz" in str(message):
            site = _fersearch_site()
            sites[site] = sites.get(site, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = count
        try:
            fit(config, train, val, len(CLASSES), on_epoch=on_epoch, class_names=CLASSES)
        finally:
            if sync_debug:
                torch.cuda.set_sync_debug_mode("default")
    return plan.steps * arch.batch / seconds[-1], sites


def _fersearch_site() -> str:
    """The innermost fersearch frame of the stack: set_sync_debug_mode warns from inside torch,
    and the warning is shown before that stack unwinds."""
    import traceback

    for frame in reversed(traceback.extract_stack()):
        if "/fersearch/" in frame.filename.replace("\\", "/") and "gpu_check" not in frame.filename:
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"
    return "(outside fersearch)"


def section_steps(plan: Plan, device: torch.device, variants: list[str]) -> list[dict]:
    rows = []
    for arch in plan.archs:
        row = {"arch": arch.name, "size": arch.size, "batch": arch.batch, "steps": plan.steps}
        row["model_only"] = model_only(arch, device, plan)
        for name in variants:
            rate, _ = fit_rate(arch, device, plan, FIT_VARIANTS[name])
            row[name] = rate
        row["fit/model_only"] = row["fit"] / row["model_only"]
        if device.type == "cuda":
            _, row["syncs"] = fit_rate(arch, device, plan, {}, sync_debug=True)
        rows.append(row)
        print(_step_line(row, variants), flush=True)
        for site, n in row.get("syncs", {}).items():
            print(f"    waits for the device {n}x at {site}", flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _step_line(row: dict, variants: list[str]) -> str:
    rates = " ".join(f"{k}={row[k]:.0f}" for k in ["model_only", *variants])
    ratio = row["fit/model_only"]
    return f"  {row['arch']} {row['size']}px b{row['batch']}: {rates} img/s; fit/model-only {ratio:.2f}"


def _memory() -> dict:
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    out = {"rss_mib": rss / 2**20}
    if torch.cuda.is_available():
        out |= {
            "allocated_mib": torch.cuda.memory_allocated() / 2**20,
            "reserved_mib": torch.cuda.memory_reserved() / 2**20,
            "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
        }
        torch.cuda.reset_peak_memory_stats()
    return out


def write_dataset(work: Path, plan: Plan) -> Path:
    from fersearch.cli import main as cli
    from fersearch.data.synthetic import generate

    data = work / "data"
    size = plan.worker_arch.size
    generate(data, n=plan.worker_images, size=size, seed=0, difficulty="easy")
    cli(["data", "prepare", str(data), "--size", str(size)])  # the decode cache, before timing
    return data


def write_space(work: Path, plan: Plan, device: str) -> Path:
    arch = plan.worker_arch
    space = {
        "description": "bench/gpu_check.py: fixed-size trials",
        "fixed": {
            k: v for k, v in base_config(arch, device, epochs=2).items() if k not in ("data", "device")
        },
        "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    path = work / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def create_study(name: str, data: Path, space: Path, storage: str, trials: int) -> None:
    from fersearch.search.api import StudyOptions, create_or_join

    create_or_join(StudyOptions(name, data, str(space), storage, n_trials=trials))


def section_memory(plan: Plan, work: Path, data: Path, space: Path, device: torch.device) -> list[dict]:
    """Memory after each trial of one worker process (this one) running the study's budget."""
    from fersearch.search import worker

    storage = f"journal:{work / 'memory.journal'}"
    create_study("memory", data, space, storage, plan.trials)
    after: list[dict] = []
    call = worker.Objective.__call__

    def recorded(self, trial):  # the real objective; memory read once it has returned
        try:
            return call(self, trial)
        finally:
            gc.collect()
            after.append({"trial": trial.number, **_memory()})
            print(f"  after trial {trial.number}: " + ", ".join(f"{k} {v:.0f}" for k, v in after[-1].items()
                                                                 if k != "trial"), flush=True)  # fmt: skip

    worker.Objective.__call__ = recorded
    try:
        gpu = str(device.index or 0) if device.type == "cuda" else None
        worker.run_worker("memory", storage, artifacts_dir=work / "art-memory", gpu=gpu)
    finally:
        worker.Objective.__call__ = call
    key = "allocated_mib" if device.type == "cuda" else "rss_mib"
    if len(after) > 1:  # the first trial allocates what every later one reuses
        growth = after[-1][key] - after[1][key]
        print(f"  {key} growth from trial 1 to trial {len(after) - 1}: {growth:+.1f} MiB")
    return after


def run_workers(n: int, plan: Plan, work: Path, data: Path, space: Path, device: torch.device) -> dict:
    """Seconds for ``n`` worker processes on this host (and device) to finish the budget."""
    storage = f"journal:{work / f'workers{n}.journal'}"
    create_study(f"w{n}", data, space, storage, plan.trials)
    cmd = [sys.executable, "-m", "fersearch.cli", "worker", "--study", f"w{n}", "--storage", storage]
    if device.type == "cuda":
        cmd += ["--gpu", str(device.index or 0)]
    env = {
        **os.environ,
        "FERSEARCH_LOCK_DIR": str(work / "locks"),
        "FERSEARCH_ARTIFACTS": str(work / f"art{n}"),
    }
    seconds = run_together(cmd, n, env, f"the {n}-worker run")
    import optuna

    from fersearch.search.storage import open_storage

    trials = optuna.load_study(study_name=f"w{n}", storage=open_storage(storage)).get_trials()
    complete = sum(t.state.name == "COMPLETE" for t in trials)
    return {"workers": n, "seconds": seconds, "complete": complete}


def section_workers(plan: Plan, work: Path, data: Path, space: Path, device: torch.device) -> list[dict]:
    rows = [run_workers(n, plan, work, data, space, device) for n in (1, 2)]
    rows[1]["speed_up"] = rows[0]["seconds"] / rows[1]["seconds"]
    for r in rows:
        print(f"  {r['workers']} worker(s): {r['complete']} trials in {r['seconds']:.1f} s", flush=True)
    print(f"  two workers sharing the device: {rows[1]['speed_up']:.2f}x one worker", flush=True)
    return rows


def section_predict(plan: Plan, work: Path, device: torch.device) -> list[dict]:
    from fersearch.config import build_config
    from fersearch.ensemble import load_ensemble, save_ensemble
    from fersearch.models import create_model

    backbones, size = plan.ensemble
    members = []
    for i, name in enumerate(backbones):
        config = build_config({"data": {"root": "."}, "backbone": name, "seed": i, "image_size": size})
        members.append(
            (create_model(config, len(CLASSES)).eval(), {"id": name, "config": config.to_json_dict()})
        )
    path = work / "ensemble"
    save_ensemble(path, members, CLASSES, [1.0] * len(members))
    ens = load_ensemble(path).to(device)
    rng = np.random.default_rng(4)
    rows = []
    for batch in (1, 32):
        images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        ens.predict_probs(lambda s, images=images: images)  # warm-up: allocations, kernels
        ms = []
        for _ in range(plan.repeats):
            t0 = time.perf_counter()
            ens.predict_probs(lambda s, images=images: images)  # returns numpy: includes the copy back
            ms.append((time.perf_counter() - t0) * 1000)
        rows.append(
            {
                "batch": batch,
                "median_ms": statistics.median(ms),
                "per_image_ms": statistics.median(ms) / batch,
            }
        )
        last = rows[-1]
        print(f"  5 members, batch {batch}: {last['median_ms']:.1f} ms ({last['per_image_ms']:.2f} ms/image)")
    return rows


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "load_at_start": os.getloadavg()[0],
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


SECTIONS = ("steps", "memory", "workers", "predict")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument(
        "--quick", action="store_true", help="tiny models, a few steps: the code paths, not figures"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for gpu_check.json (default: a temp folder)"
    )
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--archs", nargs="+", default=None, help="only these of the plan's architectures")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed epoch (default: the plan's)")
    ap.add_argument(
        "--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(FIT_VARIANTS),
        help="the fit variants of the steps section (fit always runs)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; use --device cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
    plan = plan_for(args.quick)
    if args.archs:
        unknown = sorted(set(args.archs) - {a.name for a in plan.archs})
        if unknown:
            names = [a.name for a in plan.archs]
            sys.exit(f"--archs {' '.join(unknown)}: not in the plan; choose from {names}")
        plan.archs = [a for a in plan.archs if a.name in args.archs]
    if args.steps is not None:
        if args.steps < 1:
            sys.exit(f"--steps {args.steps}: give a number of steps of at least 1")
        plan.steps = args.steps
    variants = ["fit", *(v for v in args.variants if v != "fit")]
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"environment": environment(device), "quick": args.quick, "seconds": {}}
    print(json.dumps(results["environment"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_work_") as tmp:
        work = Path(tmp)
        os.environ.setdefault("FERSEARCH_LOCK_DIR", str(work / "locks"))
        data = space = None
        for section in args.sections:
            t0 = time.perf_counter()
            print(f"== {section}", flush=True)
            if section in ("memory", "workers") and data is None:
                data, space = write_dataset(work, plan), write_space(work, plan, str(device))
            if section == "steps":
                results["steps"] = section_steps(plan, device, variants)
            elif section == "memory":
                results["memory"] = section_memory(plan, work, data, space, device)
            elif section == "workers":
                results["workers"] = section_workers(plan, work, data, space, device)
            else:
                results["predict"] = section_predict(plan, work, device)
            results["seconds"][section] = time.perf_counter() - t0
            (out / "gpu_check.json").write_text(
                json.dumps(results, indent=2)
            )  # what ran, if a later part fails
    results["environment"]["load_at_end"] = os.getloadavg()[0]
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    print(f"total {sum(results['seconds'].values()):.0f} s; results in {out / 'gpu_check.json'}")
    return results


if __name__ == "__main__":
    main()
