r"""Training throughput with the CPU loader's background thread (``prefetch``) against without.

With ``num_workers: 0`` the loader builds each augmented batch in the trial process. Without the
thread (``prefetch: 0``) the trainer waits for every batch, then the loader waits for the step;
with it (``prefetch: 2``, the default) the next batches are built while the step runs. This
trains real timm models with ``fersearch.train.fit`` on synthetic faces (one epoch per
measurement, rounds alternating the two settings so both see the same machine load) and prints
training images/s, counted from the end of the first step to the end of the last.

    PYTHONPATH=. python bench/prefetch.py
    PYTHONPATH=. python bench/prefetch.py --torch-threads 1 --backbones test_resnet --sizes 112 224
    PYTHONPATH=. python bench/prefetch.py --device cuda --backbones resnet18 resnet50 --sizes 224

The overlap can only pay where the step leaves a core free: on a GPU worker the step runs on the
device; on a CPU-only machine torch's own threads take every core unless ``--torch-threads``
leaves one to the loader. ``--device-step-ms`` measures the loader alone against a stand-in for
a device step: the trainer waits that long per batch without using the CPU (as it waits for a
GPU), which is what the thread overlaps with.

    PYTHONPATH=. python bench/prefetch.py --device-step-ms 10 25 50 100 --sizes 112 224
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fersearch.config import build_config  # noqa: E402
from fersearch.data import read_dataset, with_validation  # noqa: E402
from fersearch.data.cache import load_split  # noqa: E402
from fersearch.data.loader import TrainLoader  # noqa: E402
from fersearch.train import fit  # noqa: E402


def train_rate(config: dict, train, val, classes: int) -> float:
    """Training images/s of one epoch, from the end of the first step to the end of the last."""
    marks: list[float] = []
    fit(build_config(config), train, val, classes, on_batch=lambda *_: marks.append(time.perf_counter()))
    return config["batch_size"] * (len(marks) - 1) / (marks[-1] - marks[0])


def stand_in_rate(train, augment: str, step_ms: float, prefetch: int, batch: int) -> float:
    """Loader images/s when each batch is followed by ``step_ms`` of waiting that leaves the CPU
    free (a device step), from the end of the first step to the end of the last."""
    loader = TrainLoader(train.images, train.labels, batch, pipeline=augment, prefetch=prefetch)
    marks = []
    try:
        for _ in loader.epoch(0):
            time.sleep(step_ms / 1000)
            marks.append(time.perf_counter())
    finally:
        loader.close()
    return batch * (len(marks) - 1) / (marks[-1] - marks[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/fersearch-bench-prefetch"))
    ap.add_argument("--n", type=int, default=1500, help="synthetic images (train + test)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[112])
    ap.add_argument("--backbones", nargs="+", default=["test_resnet", "resnet18"])
    ap.add_argument("--augment", nargs="+", default=["basic", "strong"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument(
        "--device-step-ms", type=float, nargs="+", help="loader alone, against a stand-in device step"
    )
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    if not (args.data / "EmoLabel").is_dir():
        from fersearch.data.synthetic import generate

        print(f"generating {args.n} synthetic faces in {args.data} ...", flush=True)
        generate(args.data, n=args.n, size=max(256, *args.sizes), seed=0)
    manifest = with_validation(read_dataset(args.data), 0.1, 0)
    classes = len(manifest.class_names)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ", end="")
    print(f"{torch.get_num_threads()} torch threads, device {args.device}")
    print(f"batch {args.batch_size}, one epoch per measurement, {args.rounds} alternating rounds, medians")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    if args.device_step_ms:
        stand_in(args, manifest)
        return
    head = ("backbone", "augment", "size", "prefetch 0", "prefetch 2", "ratio")
    print("{:>12} {:>8} {:>5} {:>11} {:>11} {:>6}   rounds, img/s without / with".format(*head))
    for size in args.sizes:
        train, val = (load_split(manifest, split, size) for split in ("train", "val"))
        for backbone in args.backbones:
            for augment in args.augment:
                base = dict(
                    data={"root": str(args.data)}, backbone=backbone, image_size=size, augment=augment,
                    epochs=1, warmup_epochs=0, batch_size=args.batch_size, device=args.device, seed=0,
                )  # fmt: skip
                compare(
                    f"{backbone:>12} {augment:>8} {size:>5}",
                    lambda prefetch: train_rate({**base, "prefetch": prefetch}, train, val, classes),
                    args.rounds,
                )
        print(f"  ({len(train.labels)} train images at {size} px)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def compare(cells: str, rate: Callable[[int], float], rounds: int) -> None:
    """``rate(prefetch)`` for prefetch 0 and 2, alternated ``rounds`` times; prints the medians,
    their ratio and every round after ``cells``."""
    rates: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(rounds):
        for prefetch in (0, 2):
            rates[prefetch].append(rate(prefetch))
    off, on = statistics.median(rates[0]), statistics.median(rates[2])
    each = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(rates[0], rates[2]))
    print(f"{cells} {off:>11.0f} {on:>11.0f} {on / off:>5.2f}x   {each}", flush=True)


def stand_in(args, manifest) -> None:
    head = ("step ms", "augment", "size", "prefetch 0", "prefetch 2", "ratio")
    print("{:>8} {:>8} {:>5} {:>11} {:>11} {:>6}   rounds, img/s without / with".format(*head))
    for size in args.sizes:
        train = load_split(manifest, "train", size)
        for augment in args.augment:
            for step_ms in args.device_step_ms:
                compare(
                    f"{step_ms:>8.0f} {augment:>8} {size:>5}",
                    lambda prefetch: stand_in_rate(train, augment, step_ms, prefetch, args.batch_size),
                    args.rounds,
                )
        print(f"  ({len(train.labels)} train images at {size} px)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
