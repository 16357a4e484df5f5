r"""Training throughput with the CPU loader's background thread (``prefetch``) against without.

With ``num_workers: 0`` the loader builds each augmented batch in the trial process. Without the
thread (``prefetch: 0``) the trainer waits for every batch, then the loader waits for the step;
with it (``prefetch: 2``, the default) the next batches are built while the step runs. This
trains real timm models with ``fersearch.train.fit`` on synthetic faces (one epoch per
measurement, rounds alternating the two settings so both see the same machine load) and prints
training images/s, counted from the end of the first step to the end of the last.

    PYTHONPATH=. python bench/prefetch.py
    PYTHONPATH=. python bench/prefetch.py --device cuda --backbones resnet18 resnet50 --size 224

The overlap can only pay where there is a free core or a device to overlap with: on a CPU-only
machine the training step already uses every core, on a GPU worker the step runs on the device.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fersearch.config import build_config  # noqa: E402
from fersearch.data import read_dataset, with_validation  # noqa: E402
from fersearch.data.cache import load_split  # noqa: E402
from fersearch.train import fit  # noqa: E402


def train_rate(config: dict, train, val, classes: int) -> float:
    """Training images/s of one epoch, from the end of the first step to the end of the last."""
    marks: list[float] = []
    fit(build_config(config), train, val, classes, on_batch=lambda *_: marks.append(time.perf_counter()))
    return config["batch_size"] * (len(marks) - 1) / (marks[-1] - marks[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/fersearch-bench-prefetch"))
    ap.add_argument("--n", type=int, default=1500, help="synthetic images (train + test)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--backbones", nargs="+", default=["test_resnet", "resnet18"])
    ap.add_argument("--augment", nargs="+", default=["basic", "strong"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    if not (args.data / "EmoLabel").is_dir():
        from fersearch.data.synthetic import generate

        print(f"generating {args.n} synthetic faces in {args.data} ...", flush=True)
        generate(args.data, n=args.n, size=max(128, args.size), seed=0)
    manifest = with_validation(read_dataset(args.data), 0.1, 0)
    train, val = (load_split(manifest, split, args.size) for split in ("train", "val"))
    classes = len(manifest.class_names)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ", end="")
    print(f"{torch.get_num_threads()} torch threads, device {args.device}")
    print(f"data: {len(train.labels)} train images at {args.size} px, batch {args.batch_size}, ", end="")
    print("one epoch per measurement")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    head = ("backbone", "augment", "prefetch 0", "prefetch 2", "ratio")
    print("{:>12} {:>8} {:>11} {:>11} {:>6}   rounds, img/s without / with".format(*head))
    for backbone in args.backbones:
        for augment in args.augment:
            base = dict(
                data={"root": str(args.data)}, backbone=backbone, image_size=args.size, augment=augment,
                epochs=1, warmup_epochs=0, batch_size=args.batch_size, device=args.device, seed=0,
            )  # fmt: skip
            rates: dict[int, list[float]] = {0: [], 2: []}
            for _ in range(args.rounds):
                for prefetch in (0, 2):
                    rates[prefetch].append(train_rate({**base, "prefetch": prefetch}, train, val, classes))
            off, on = statistics.median(rates[0]), statistics.median(rates[2])
            each = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(rates[0], rates[2]))
            row = f"{backbone:>12} {augment:>8} {off:>11.0f} {on:>11.0f} {on / off:>5.2f}x"
            print(f"{row}   {each}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
