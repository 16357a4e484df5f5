"""Seed 002's 4-stage curriculum against plain cross-entropy, same epochs, several seeds.

    python bench/curriculum.py                       # defaults below: ~10-15 min on a 2-core CPU
    python bench/curriculum.py --n 6000 --size 64 --epochs 30 --seeds 0 1 2 3 4

Data: ``fersearch synth`` (procedural faces in RAF-DB's layout and class proportions, so Fear is
~2% and Happiness ~37% of train), a quarter of train held out as the validation split. Every arm
trains the same tiny timm backbone from scratch with the same data, epochs, batch size, LR and
seed; only the recipe differs:

  plain_ce     curriculum off: random sampler, unweighted CE, no logit adjustment,
               warm-up + cosine LR
  curriculum   the ``raer_4stage`` preset: the default 4-stage curriculum (caps 1.5/3/10/3,
               tau 0/0.5/1.2/0.8, random then class-weighted sampler) with a flat LR lowered by
               the cooldown milestones
  curriculum_cosine (--arms): the same stages on the warm-up + cosine LR of plain_ce

Reported per arm, mean and standard deviation over seeds, on the validation split: UAR and WAR
at the last epoch (no selection involved) and at the best-validation-UAR epoch (optimistic:
selected on the same split). The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from fersearch.config import DataConfig, build_config
from fersearch.data import load_manifest
from fersearch.data.decode import decode_split
from fersearch.data.synthetic import generate
from fersearch.presets import get_preset
from fersearch.train import fit

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
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["plain_ce", "curriculum"], choices=list(ARMS))
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="write the raw results as JSON here")
    args = ap.parse_args()

    data = args.data or Path(".fersearch/bench") / f"synth_n{args.n}_s{args.size}"
    if not (data / "synthetic.json").exists():
        t = time.perf_counter()
        generate(data, n=args.n, size=args.size, seed=0)
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

    print(f"\nmean ± sd over seeds {args.seeds}, validation split ({len(val.labels)} images)")
    print(f"{'arm':18s} {'last UAR':>16s} {'last WAR':>16s} {'best UAR':>16s} {'best WAR':>16s}")
    for arm in args.arms:
        rs = [r for r in runs if r["arm"] == arm]
        cells = []
        for key in ("last_uar", "last_war", "best_uar", "best_war"):
            vals = [r[key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
        print(f"{arm:18s} " + " ".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
