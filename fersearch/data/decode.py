"""Decode a split's images once into one uint8 array kept in memory for every trial.

A worker runs many trials on the same data; decoding JPEGs per trial would dominate small runs,
so each (dataset, split, size) is decoded once per process and reused. Missing or unreadable
images are skipped and listed, never a crash, unless nothing at all can be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .manifest import Manifest

log = logging.getLogger(__name__)


@dataclass
class SplitArrays:
    images: np.ndarray  # (N, size, size, 3) uint8, RGB
    labels: np.ndarray  # (N,) int64
    paths: list[str]
    skipped: list[str] = field(default_factory=list)


_MEMO: dict[tuple, SplitArrays] = {}


def _load_one(path: Path, size: int) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def decode_split(
    manifest: Manifest,
    split: str,
    size: int,
    progress: Callable[[int, int], None] | None = None,
) -> SplitArrays:
    items = manifest.splits.get(split, [])
    if not items:
        raise DataError(f"split {split!r} of {str(manifest.root)!r} is empty")
    key = (str(manifest.root.resolve()), split, size, hash(tuple(items)))
    if key in _MEMO:
        return _MEMO[key]

    images = np.empty((len(items), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(items), dtype=bool)
    # PIL releases the GIL while decoding, so a few threads give a near-linear speed-up.
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = pool.map(lambda it: _load_one(manifest.root / it[0], size), items)
        for i, arr in enumerate(arrays):
            if arr is not None:
                images[i] = arr
                ok[i] = True
            if progress is not None and (i % 64 == 0 or i == len(items) - 1):
                progress(i + 1, len(items))
    skipped = [items[i][0] for i in np.flatnonzero(~ok)]
    if not ok.any():
        raise DataError(
            f"none of the {len(items)} {split} images of {str(manifest.root)!r} could be read "
            f"(first: {items[0][0]!r}); check the dataset was unpacked completely"
        )
    if skipped:
        log.warning(
            "%d %s images missing or unreadable, skipped: %s%s",
            len(skipped),
            split,
            ", ".join(skipped[:5]),
            " ..." if len(skipped) > 5 else "",
        )
    labels = np.array([label for _, label in items], dtype=np.int64)
    out = SplitArrays(
        images=images[ok] if skipped else images,
        labels=labels[ok],
        paths=[items[i][0] for i in np.flatnonzero(ok)],
        skipped=skipped,
    )
    _MEMO[key] = out
    return out
