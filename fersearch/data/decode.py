"""Decode a split once per host (the on-disk cache) and once per process (an in-memory memo).

A worker runs many trials on the same data: the first trial on a host builds the cache (see
``cache.py``), every later trial and every other worker maps it, and within one process the
mapped arrays are memoised so a worker keeps its dataset loaded across trials. Missing or
unreadable images are skipped and listed, never a crash, unless nothing at all can be read.
"""

from __future__ import annotations

from collections.abc import Callable

from .cache import SplitArrays, load_split
from .manifest import Manifest

__all__ = ["SplitArrays", "clear_memo", "decode_split"]

_MEMO: dict[tuple, SplitArrays] = {}


def decode_split(
    manifest: Manifest,
    split: str,
    size: int,
    progress: Callable[[int, int], None] | None = None,
    crop: str | None = None,
    frames: int | None = None,
) -> SplitArrays:
    """``crop`` and ``frames`` default to the manifest's (its study's DataConfig)."""
    crop = crop or manifest.crop
    frames = frames or manifest.frames
    key = (
        str(manifest.root.resolve()),
        split,
        size,
        crop,
        frames,
        hash(tuple(manifest.splits.get(split, []))),
    )
    if key in _MEMO:
        return _MEMO[key]
    out = load_split(manifest, split, size, crop=crop, frames=frames, progress=progress)
    _MEMO[key] = out
    return out


def clear_memo() -> None:
    _MEMO.clear()
