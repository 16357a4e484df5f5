"""Seed 002's 4-stage curriculum against plain cross-entropy, same epochs, several seeds.

    python bench/curriculum.py                       # defaults below: ~5 min on a quiet 2-core CPU
    python bench/curriculum.py --n 6000 --size 64 --epochs 30 --seeds 0 1 2 3 4

Data: ``fersearch synth --difficulty easy`` (procedural faces in RAF-DB's layout and class
proportions, so Fear is ~2% and Happiness ~37% of train), a quarter of train held out as the
validation split. Sized where both recipes learn (3,000 images at 32 px, 40 epochs): at 8 epochs
on ``standard`` faces neither left chance and the comparison said nothing. Every arm
trains the same tiny timm backbone from scratch with the same data, epochs, batch size, LR and
seed; only the recipe differs:

  plain_ce     curriculum off: random sampler, unweighted CE, no logit adjustment,
               warm-up + cosine LR
  curriculum   the ``raer_4stage`` preset: the default 4-stage curriculum (caps 1.5/3/10/3,
               tau 0/0.5/1.2/0.8, random then class-weighted sampler) with a flat LR lowered by
               the cooldown milestones
  curriculum_cosine (--arms): the same stages on the warm-up + cosine LR of plain_ce

Reported per arm, mean with a 95% t-interval over seeds, on the validation split: UAR and WAR
at the last epoch (no selection involved) and at the best-validation-UAR epoch (optimistic:
selected on the same split); then the paired difference curriculum minus plain CE per seed
(same seed, same data) with its 95% t-interval, and which recipe wins on what. The test split is
not read.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quiet  # noqa: E402

from fersearch.config import DataConfig, build_config  # noqa: E402
from fersearch.data import load_manifest  # noqa: E402
from fersearch.data.decode import decode_split  # noqa: E402
from fersearch.data.synthetic import DIFFICULTIES, generate  # noqa: E402
from fersearch.search.presets import get_preset  # noqa: E402
from fersearch.train import fit  # noqa: E402

ARMS = {
    "plain_ce": {},
    "curriculum": get_preset("raer_4stage"),
    "curriculum_cosine": {"curriculum": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="synthetic dataset dir (made if missing)")
    ap.add_argument("--n", type=int, default=3000, help="images in the synthetic dataset (train+test)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--difficulty", choices=list(DIFFICULTIES), default="easy")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=["plain_ce", "curriculum"], choices=list(ARMS))
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="write the raw results as JSON here")
    quiet.add_argument(ap)
    args = ap.parse_args()
    quiet.start(args.allow_load)

    data = args.data or Path(".fersearch/bench") / f"synth_n{args.n}_s{args.size}_{args.difficulty}"
    if not (data / "synthetic.json").exists():
        t = time.perf_counter()
        generate(data, n=args.n, size=args.size, seed=0, difficulty=args.difficulty)
        print(f"generated {args.n} synthetic images at {args.size} px in {time.perf_counter() - t:.0f} s")
    data_cfg = DataConfig(root=str(data.resolve()), val_fraction=0.25)
    manifest = load_manifest(data_cfg)
    train = decode_split(manifest, "train", args.size)
    val = decode_split(manifest, "val", args.size)
    print(f"train per class {manifest.counts('train')}; val per class {manifest.counts('val')}")
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")

    base = {
        "data": data_cfg.model_dump(),
        "backbone": args.backbone,
        "image_size": args.size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_epochs": 1,
        "label_smoothing": 0.0,
        "mixup_alpha": 0.0,
        "device": "cpu",
    }
    runs = []
    for seed in args.seeds:
        for arm in args.arms:
            values = {**base, **ARMS[arm], "epochs": args.epochs, "seed": seed}
            config = build_config(values)
            t = time.perf_counter()
            tick = lambda rec: print(  # noqa: E731
                f"  {arm} seed {seed} epoch {rec['epoch']} stage {rec['stage']} UAR {rec['uar']:.3f} "
                f"WAR {rec['war']:.3f} ({rec['seconds']:.0f} s)",
                flush=True,
            )
            result = fit(config, train, val, manifest.num_classes, on_epoch=tick)
            h = result.history
            best = h[result.best_epoch]
            run = {
                "arm": arm,
                "seed": seed,
                "last_uar": h[-1]["uar"],
                "last_war": h[-1]["war"],
                "best_uar": best["uar"],
                "best_war": best["war"],
                "best_epoch": result.best_epoch,
                "per_epoch": [(r["stage"], round(r["uar"], 4), round(r["war"], 4)) for r in h],
                "seconds": time.perf_counter() - t,
            }
            runs.append(run)
            print(
                f"seed {seed} {arm:18s} last UAR {run['last_uar']:.4f} WAR {run['last_war']:.4f} | "
                f"best-epoch UAR {run['best_uar']:.4f} WAR {run['best_war']:.4f} (epoch {result.best_epoch}) "
                f"| {run['seconds']:.0f} s",
                flush=True,
            )
            print("    per epoch (stage, UAR, WAR):", run["per_epoch"], flush=True)
            if args.out:  # after every run, so a long benchmark cut short keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                raw = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
                args.out.write_text(json.dumps(raw, indent=1))

    keys = ("last_uar", "last_war", "best_uar", "best_war")
    print(f"\nmean [95% t-interval] over seeds {args.seeds}, validation split ({len(val.labels)} images)")
    print("| arm | last UAR | last WAR | best-epoch UAR | its WAR |\n|---|---|---|---|---|")
    for arm in args.arms:
        rs = [r for r in runs if r["arm"] == arm]
        print(f"| {arm} | " + " | ".join(_interval([r[k] for r in rs]) for k in keys) + " |")
    if "plain_ce" in args.arms:
        for arm in (a for a in args.arms if a != "plain_ce"):
            print(f"\npaired difference {arm} minus plain_ce (same seed), mean [95% t-interval]:")
            diffs = {}
            for k in keys:
                by_seed = {r["seed"]: r[k] for r in runs if r["arm"] == "plain_ce"}
                diffs[k] = [
                    r[k] - by_seed[r["seed"]] for r in runs if r["arm"] == arm and r["seed"] in by_seed
                ]
            print("| " + " | ".join(k for k in keys) + " |\n|---|---|---|---|")
            print("| " + " | ".join(_interval(diffs[k], signed=True) for k in keys) + " |")
            for k in keys:
                print(f"  {k}: {_verdict(diffs[k], arm)}")
    quiet.end()


# two-sided 97.5% quantiles of Student's t for 1..9 degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _ci(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = _T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def _interval(values: list[float], signed: bool = False) -> str:
    mean, low, high = _ci(values)
    f = "{:+.4f}" if signed else "{:.4f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def _verdict(diffs: list[float], arm: str) -> str:
    mean, low, high = _ci(diffs)
    if low > 0:
        return f"{arm} higher by {mean:.4f} (interval excludes 0)"
    if high < 0:
        return f"plain_ce higher by {-mean:.4f} (interval excludes 0)"
    return f"no difference shown (mean {mean:+.4f}, interval includes 0)"


if __name__ == "__main__":
    main()
