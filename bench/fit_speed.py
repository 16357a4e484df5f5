"""How long ``fit`` takes: test_resnet at 32 px, 1,280 random train images and 320 validation
images, batch 64, 3 epochs, the CPU. Prints the seconds and each epoch's training loss (which
must not change between two versions of the code that claim the same results).

    PYTHONPATH=. python bench/fit_speed.py
    # two versions side by side: run it from each checkout, alternating
    git worktree add /tmp/old REV && (cd /tmp/old && PYTHONPATH=. python /path/to/bench/fit_speed.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quiet  # noqa: E402

from fersearch.config import build_config  # noqa: E402
from fersearch.data.cache import SplitArrays  # noqa: E402
from fersearch.train import fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    quiet.add_argument(ap)
    args = ap.parse_args()
    quiet.start(args.allow_load)
    rng = np.random.default_rng(0)

    def split(n: int) -> SplitArrays:
        images = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        return SplitArrays(images, rng.integers(0, 7, n), [str(i) for i in range(n)])

    train, val = split(1280), split(320)
    config = build_config(
        {"data": {"root": "."}, "backbone": "test_resnet", "image_size": 32, "epochs": args.epochs}
        | {"batch_size": 64, "device": "cpu", "seed": 0}
    )
    t0 = time.perf_counter()
    result = fit(config, train, val, 7)
    seconds = time.perf_counter() - t0
    losses = [round(h["train_loss"], 6) for h in result.history]
    print(f"fit, {args.epochs} epochs: {seconds:.2f} s on {torch.get_num_threads()} threads; losses {losses}")
    quiet.end()


if __name__ == "__main__":
    main()
