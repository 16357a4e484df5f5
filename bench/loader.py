"""Training-loader throughput: decode-once cache vs decoding source JPEGs every epoch.

Measures, side by side in one run, images/s through ``fersearch.data.loader.TrainLoader`` with
the ``basic`` albumentations pipeline (strength 1) at 112 and 224 px, num_workers 0 and 2 (and,
with ``--pipelines device``, the same recipe batched in torch, ``augment_on: device``):

- cache: batches gathered from the memory-mapped uint8 cache (``data/cache.py``);
- jpeg:  the same loader, but every image is opened, decoded (PIL) and resized (OpenCV area)
         from its source JPEG each time it is used, as a plain per-epoch ImageFolder-style
         pipeline does.

Each configuration is measured ``--rounds`` times (3), alternating cache and jpeg so that both
arms see the same machine load; the medians are reported and every round printed.

Then the time from a new trial's start to its first batch with a warm cache, in a fresh process
(read the manifest and validation split, fingerprint the sources, map the cache, build the
loader, produce one augmented batch), on the whole dataset (20,000 images by default).

    PYTHONPATH=. python bench/loader.py --data /tmp/raf20k      # dataset built once if missing

The dataset is in RAF-DB's layout: ``--n`` image files (20,000) that are hard links to ``--unique``
distinct synthetic faces (``fersearch synth`` at 256 px, so every JPEG is 256 x 256, larger than
both training sizes). Links keep set-up minutes short on a 2-core machine; every file is still
opened and decoded on its own, so the costs measured are those of 20,000 files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fersearch.data import read_dataset, with_validation  # noqa: E402
from fersearch.data.cache import load_split  # noqa: E402
from fersearch.data.loader import TrainLoader  # noqa: E402


class JpegSource:
    """Array-like over source JPEGs: indexing decodes and resizes (no cache at all)."""

    def __init__(self, root: Path, refs: list[str], size: int):
        self.root, self.refs, self.size = root, refs, size
        self.shape = (len(refs), size, size, 3)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, idx) -> np.ndarray:
        out = np.empty((len(idx), self.size, self.size, 3), np.uint8)
        for k, i in enumerate(np.asarray(idx).tolist()):
            with Image.open(self.root / self.refs[i]) as im:
                rgb = np.asarray(im.convert("RGB"))
            out[k] = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return out


def device_throughput(images, batches: int, batch_size: int) -> float:
    """``augment_on: device``: gather a batch, then the basic recipe batched in torch (here on
    the CPU: the device this machine has), as the training loop's get_batch does."""
    import torch

    from fersearch.train.augment import basic_on_device

    gen = torch.Generator().manual_seed(0)
    order = np.random.default_rng(0).permutation(len(images))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    n = 0
    for step in range(batches + 2):
        if step == 2:  # after two warm-up batches
            t0 = time.perf_counter()
        idx = np.sort(order[step * batch_size : (step + 1) * batch_size])
        x = basic_on_device(torch.from_numpy(np.asarray(images[idx])), mean, std, 1.0, gen)
        n += len(x) if step >= 2 else 0
    return n / (time.perf_counter() - t0)


def throughput(
    images, labels, workers: int, batches: int, batch_size: int, pipeline: str, prefetch: int = 0
) -> float:
    if pipeline == "device":
        return device_throughput(images, batches, batch_size) if workers == 0 else float("nan")
    loader = TrainLoader(
        images, labels, batch_size, pipeline=pipeline, strength=1.0, num_workers=workers, seed=0,
        prefetch=prefetch,
    )  # fmt: skip
    try:
        it = iter(loader.epoch(0))
        for _ in range(2):  # warm-up: worker start-up, albumentations set-up, first pages
            next(it)
        t0 = time.perf_counter()
        n = 0
        for _ in range(batches):
            x, _, _ = next(it)
            n += len(x)
        return n / (time.perf_counter() - t0)
    finally:
        loader.close()


FIRST_BATCH = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[3])
import albumentations  # noqa: F401  (a worker imports its libraries once, before its first trial)
from fersearch.data import read_dataset, with_validation
from fersearch.data.decode import decode_split
from fersearch.data.loader import TrainLoader
t_import = time.perf_counter()

def trial(manifest=None):
    t = time.perf_counter()
    m = manifest or with_validation(read_dataset(sys.argv[1]), 0.1, 0)
    arrays = decode_split(m, "train", int(sys.argv[2]))
    t_map = time.perf_counter()
    loader = TrainLoader(arrays.images, arrays.labels, 64, pipeline="basic", num_workers=0, seed=0)
    x, y, _ = next(iter(loader.epoch(0)))
    return m, len(arrays.labels), t_map - t, time.perf_counter() - t

m, n, map_s, first = trial()
_, _, _, second = trial(m)  # the next trial of the same worker: dataset already loaded
print(json.dumps({"n": n, "imports": t_import - t0, "manifest_and_map": map_s,
                  "trial_start_to_first_batch": first, "next_trial": second}))
"""


def first_batch(root: Path, size: int, repeats: int = 3) -> list[dict]:
    out = []
    for _ in range(repeats):
        res = subprocess.run(
            [sys.executable, "-c", FIRST_BATCH, str(root), str(size), str(REPO)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def make_dataset(out: Path, n: int, unique: int, sources: Path | None, source_size: int = 256) -> None:
    """RAF-DB layout with ``n`` image files linked to distinct synthetic ``source_size`` px JPEGs."""
    if sources is None:
        from fersearch.data.synthetic import generate

        sources = out.parent / (out.name + "-unique")
        if not (sources / "EmoLabel").is_dir():
            print(f"generating {unique} synthetic {source_size} px faces in {sources} ...", flush=True)
            generate(sources, n=unique, size=source_size, seed=0, label_noise=0.0)
        sources = sources / "Image" / "aligned"
    files = sorted(sources.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEG in {sources}")
    images = out / "Image" / "aligned"
    images.mkdir(parents=True, exist_ok=True)
    n_test = n // 5
    lines = []
    for i in range(n):
        split, k = ("train", i + 1) if i < n - n_test else ("test", i - (n - n_test) + 1)
        name = f"{split}_{k:05d}"
        target = images / f"{name}_aligned.jpg"
        if not target.exists():
            os.link(files[i % len(files)], target)
        lines.append(f"{name}.jpg {i % 7 + 1}\n")
    (out / "EmoLabel").mkdir(exist_ok=True)
    (out / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/fersearch-bench-raf20k"))
    ap.add_argument("--n", type=int, default=20000, help="image files in the dataset")
    ap.add_argument("--unique", type=int, default=2000, help="distinct synthetic faces behind them")
    ap.add_argument("--sources", type=Path, help="use the JPEGs of this folder instead of generating")
    ap.add_argument("--subset", type=int, default=2000, help="train images used for the throughput runs")
    ap.add_argument("--batches", type=int, default=12, help="timed batches per configuration")
    ap.add_argument(
        "--rounds", type=int, default=3, help="cache/jpeg measurements alternated this many times; medians"
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument(
        "--pipelines", nargs="+", default=["basic"], help="also none (loading alone), device (torch)"
    )
    ap.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="the loader's thread with workers 0 (default 0: nothing consumes the batches here, so "
        "the thread has no step to overlap with; bench/prefetch.py measures it)",
    )
    ap.add_argument("--no-first-batch", action="store_true", help="skip the time-to-first-batch part")
    ap.add_argument("--source-size", type=int, default=256, help="side of the generated source JPEGs")
    args = ap.parse_args()

    if not (args.data / "EmoLabel").is_dir():
        make_dataset(args.data, args.n, args.unique, args.sources, args.source_size)
    manifest = with_validation(read_dataset(args.data), 0.1, 0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    distinct = len({(args.data / r).stat().st_ino for v in manifest.splits.values() for r, _ in v})
    total = sum(len(v) for v in manifest.splits.values())
    with Image.open(args.data / manifest.splits["train"][0][0]) as first:
        side = f"{first.width} x {first.height} px"
    print(f"dataset: {args.data} ({total} image files, {distinct} distinct JPEGs of {side})")

    sub = manifest.derive({"train": manifest.splits["train"][: args.subset]})
    print(f"\nthroughput: batch {args.batch_size}, {args.batches} timed batches, images/s, ", end="")
    print(f"median of {args.rounds} alternating cache/jpeg rounds" if args.rounds > 1 else "one round")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'pipeline':>8} {'size':>5} {'workers':>7} {'cache':>9} {'jpeg':>9} {'speed-up':>9}")
    rows = []
    bs = args.batch_size
    for size in args.sizes:
        t = time.perf_counter()
        cached = load_split(sub, "train", size)
        build = time.perf_counter() - t
        jpeg = JpegSource(sub.root, cached.paths, size)
        for pipeline in args.pipelines:
            for workers in (0,) if pipeline == "device" else (0, 2):
                cs, js = [], []
                run = (cached.labels, workers, args.batches, bs, pipeline, args.prefetch)
                for _ in range(args.rounds):  # interleaved, so both arms see the same load
                    for arr, out in ((cached.images, cs), (jpeg, js)):
                        out.append(throughput(arr, *run))
                c, j = float(np.median(cs)), float(np.median(js))
                rows.append((pipeline, size, workers, c, j))
                each = ", ".join(f"{a:.0f}/{b:.0f} ({a / b:.1f}x)" for a, b in zip(cs, js))
                each = f"   rounds: {each}" if args.rounds > 1 else ""
                row = f"{pipeline:>8} {size:>5} {workers:>7} {c:>9.0f} {j:>9.0f} {c / j:>8.1f}x"
                print(row + each, flush=True)
        print(f"      (cache of {len(cached.labels)} images at {size} px built or opened in {build:.1f} s)")

    if args.no_first_batch:
        return
    print("\ntime from a new trial's start to its first batch, warm cache, fresh process, full train split")
    for size in args.sizes:
        t = time.perf_counter()
        arrays = load_split(manifest, "train", size)  # warm it (builds once if needed)
        print(f"  {size} px: cache of {len(arrays.labels)} images ready ({time.perf_counter() - t:.1f} s)")
        runs = first_batch(args.data, size)
        all_runs = ", ".join(f"{r['trial_start_to_first_batch']:.2f}" for r in runs)
        best = min(runs, key=lambda r: r["trial_start_to_first_batch"])
        print(
            f"  {size} px: first trial of a fresh worker: start -> first batch "
            f"{best['trial_start_to_first_batch']:.2f} s (of which manifest + split + fingerprint + "
            f"map {best['manifest_and_map']:.2f} s); next trial in that worker "
            f"{best['next_trial']:.3f} s; process imports before any trial {best['imports']:.1f} s; "
            f"all runs: {all_runs} s"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
