"""Per-image cost of the ``basic`` augmentation, part by part: albumentations' Compose (one call
per image) against the batch path (``fersearch.data.fast_basic``), next to what the JPEG arm of
``bench/loader.py`` pays per image to decode and resize a source JPEG.

    PYTHONPATH=. python bench/augment_profile.py --sources /tmp/lb256-unique/Image/aligned

Every figure is ms per image over a batch of 64 distinct images (so the caches see a real batch,
not one image again and again), the best of ``--repeat`` runs; "averaged" parts count the images
a transform does not fire on as 0, so they add up to the whole.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from fersearch.data import fast_basic as fb  # noqa: E402
from fersearch.data.augment import build_pipeline  # noqa: E402


def best(fn, repeat: int, per: int) -> float:
    """Best-of-``repeat`` time of ``fn()`` in ms, divided by ``per``."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out) * 1e3 / per


def decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def profile(files: list[Path], size: int, repeat: int) -> dict[str, float]:
    import albumentations as A
    import albumentations.augmentations.pixel.functional as fpixel

    batch = np.stack([decode(p, size) for p in files])
    n = len(batch)
    pipe = build_pipeline("basic", size, 1.0)
    flip, affine, jitter = pipe.transforms
    r: dict[str, float] = {}
    r["jpeg decode + resize (the JPEG arm's extra work)"] = best(
        lambda: [decode(p, size) for p in files], repeat, n
    )
    idx = np.random.default_rng(0).permutation(n)
    r["gather from the uint8 array"] = best(lambda: batch[idx], repeat, n)

    def compose_all(p):
        def run():
            p.set_random_seed(0)
            for img in batch:
                p(image=img)

        return run

    r["before: albumentations Compose, whole basic"] = best(compose_all(pipe), repeat, n)
    r["before:   empty Compose call"] = best(compose_all(A.Compose([])), repeat, n)
    for t in (flip, affine, jitter):  # each alone, firing on every image
        always = copy.deepcopy(t)
        always.p = 1.0
        r[f"before:   Compose[{type(t).__name__} p=1]"] = best(compose_all(A.Compose([always])), repeat, n)
    m = fb.affine_matrices(*(np.array([v]) for v in (5, -3, 1.03, 0.98, 7.0, 0.0, 0.0)), size, size)[0]
    r["before:     Affine.apply alone (warp)"] = best(
        lambda: [affine.apply(img, matrix=m, output_shape=(size, size)) for img in batch], repeat, n
    )
    for name, fn, f in (
        ("brightness", fpixel.adjust_brightness_torchvision, 1.05),
        ("contrast", fpixel.adjust_contrast_torchvision, 1.05),
        ("saturation", fpixel.adjust_saturation_torchvision, 1.05),
        ("hue", fpixel.adjust_hue_torchvision, 0.03),
    ):
        r[f"before:     ColorJitter {name} alone"] = best(lambda: [fn(img, f) for img in batch], repeat, n)

    fast = fb.FastBasic(pipe)
    r["after: batch path, whole basic"] = best(lambda: fast(batch.copy(), 0), repeat, n)
    # where its time goes, with the draws of seed 0..repeat-1
    parts = dict.fromkeys(("flip", "affine warp", "brightness", "contrast", "saturation", "hue"), 0.0)
    names = ("brightness", "contrast", "saturation", "hue")
    ops = (fb.brightness, fb.contrast, fb.saturation, fb.hue)
    for rep in range(repeat):
        d = fast.draw(np.random.default_rng(rep), n, size, size)
        for i in range(n):
            img = batch[i]
            t = time.perf_counter()
            if d.flip[i]:
                img = cv2.flip(img, 1)
            parts["flip"] += time.perf_counter() - t
            t = time.perf_counter()
            if d.affine[i]:
                img = cv2.warpAffine(
                    img, d.matrix[i][:2], (size, size), flags=fast.interpolation, borderMode=fast.border_mode
                )
            parts["affine warp"] += time.perf_counter() - t
            if d.jitter[i]:
                for part in d.order[i]:
                    t = time.perf_counter()
                    img = ops[part](img, float(d.factors[i][part]))
                    parts[names[part]] += time.perf_counter() - t
    for k, v in parts.items():
        r[f"after:   {k} (averaged)"] = v * 1e3 / (n * repeat)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", type=Path, required=True, help="a folder of source JPEGs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    files = sorted(args.sources.glob("*.jpg"))[:64]
    print(f"{len(files)} JPEGs from {args.sources}; load average {os.getloadavg()[0]:.1f}; ms per image")
    for size in args.sizes:
        print(f"\n{size} px")
        for k, v in profile(files, size, args.repeat).items():
            print(f"  {k:<52} {v:7.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
