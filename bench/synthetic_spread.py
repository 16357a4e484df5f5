"""How hard is the synthetic dataset? A tiny CNN trained briefly vs a tuned recipe.

The synthetic data must be hard enough that hyperparameters matter. This trains two recipes on
the same synthetic RAF-DB tree and prints validation UAR/WAR per epoch and at the end:

- "brief": timm's test_resnet, 1 epoch, default settings;
- "tuned": a larger budget with a tuned learning rate, warm-up, label smoothing and mixup.

    python bench/synthetic_spread.py --data /tmp/synth48 --n 4000 --size 48
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fersearch.config import DataConfig, build_config
from fersearch.data import load_manifest
from fersearch.data.decode import decode_split
from fersearch.data.synthetic import generate
from fersearch.train import fit

RECIPES = {
    "brief": {"backbone": "test_resnet", "epochs": 1, "lr": 1e-3, "warmup_epochs": 0},
    "tuned": {
        "backbone": "test_efficientnet",
        "epochs": 12,
        "lr": 3e-3,
        "warmup_epochs": 1,
        "label_smoothing": 0.1,
        "mixup_alpha": 0.2,
        "weight_decay": 0.05,
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="synthetic dataset dir (created if missing)")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--tuned-epochs", type=int, default=None, help="override the tuned recipe's epochs")
    args = ap.parse_args()

    if not (args.data / "synthetic.json").is_file():
        generate(args.data, n=args.n, size=args.size, seed=0)
    manifest = load_manifest(DataConfig(root=str(args.data)))
    train = decode_split(manifest, "train", args.size)
    val = decode_split(manifest, "val", args.size)
    print(f"data {args.data}: {len(train.labels)} train / {len(val.labels)} val at {args.size}px", flush=True)
    results = {}
    for name in args.recipes:
        recipe = dict(RECIPES[name])
        if name == "tuned" and args.tuned_epochs:
            recipe["epochs"] = args.tuned_epochs
        config = build_config(
            {"data": {"root": str(args.data)}, "image_size": args.size, "batch_size": 64, **recipe}
        )
        t0 = time.perf_counter()

        def show(rec, name=name):
            print(
                f"  {name} epoch {rec['epoch'] + 1}: val UAR {rec['uar']:.4f} WAR {rec['war']:.4f} "
                f"({rec['seconds']:.1f}s)",
                flush=True,
            )

        result = fit(config, train, val, manifest.num_classes, on_epoch=show)
        best = result.history[result.best_epoch]
        results[name] = (best["uar"], best["war"], time.perf_counter() - t0)
        print(
            f"{name}: best val UAR {best['uar']:.4f} WAR {best['war']:.4f} "
            f"in {results[name][2]:.0f}s ({recipe})",
            flush=True,
        )
    if len(results) == 2:
        print(f"spread (tuned - brief) val UAR: {results['tuned'][0] - results['brief'][0]:+.4f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
