"""A stratified, seeded validation split carved from train and persisted beside the data.

Datasets such as RAF-DB ship only train and test. Selection and pruning need a validation split
that never touches test, and every worker and finalize must see the same one: the first process
writes it to ``<root>/fersearch_splits/`` (atomically) and everyone after reads it back.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .manifest import Manifest


def stratified_holdout(labels: list[int], fraction: float, seed: int) -> list[int]:
    """Indices of a validation subset with each class's share rounded, at least 1 per class
    that has 2 or more samples."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    picked: list[int] = []
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        picked.extend(idx[:k].tolist())
    return sorted(picked)


def split_file(root: Path, fraction: float, seed: int) -> Path:
    return root / "fersearch_splits" / f"val_f{fraction:g}_s{seed}.json"


def with_validation(manifest: Manifest, fraction: float, seed: int) -> Manifest:
    """Return a manifest with train, val and test. A dataset with its own val split keeps it."""
    if manifest.splits.get("val"):
        return manifest
    train = manifest.splits["train"]
    path = split_file(manifest.root, fraction, seed)
    if path.exists():
        val_names = set(json.loads(path.read_text())["val"])
    else:
        idx = stratified_holdout([label for _, label in train], fraction, seed)
        val_names = {train[i][0] for i in idx}
        _write_atomic(path, {"fraction": fraction, "seed": seed, "val": sorted(val_names)})
    known = {name for name, _ in train}
    if not val_names <= known:
        raise DataError(
            f"the persisted validation split {str(path)!r} names images that are not in the "
            f"training list any more; the dataset changed: delete that file to carve a new split"
        )
    splits = dict(manifest.splits)
    splits["train"] = [s for s in train if s[0] not in val_names]
    splits["val"] = [s for s in train if s[0] in val_names]
    return manifest.derive(splits)


def stratified_kfold(labels: list[int], k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) per sample; each class is dealt round-robin over the folds after a
    seeded shuffle, so every fold's class counts differ by at most one."""
    labels_arr = np.asarray(labels)
    if k < 2:
        raise DataError(f"k-fold needs k >= 2 folds, got {k}")
    counts = np.bincount(labels_arr) if len(labels_arr) else np.zeros(0, int)
    if len(labels_arr) < k:
        raise DataError(f"cannot split {len(labels_arr)} samples into {k} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels_arr), dtype=np.int64)
    offset = 0  # rotate the starting fold per class so small classes do not all land in fold 0
    for cls in np.flatnonzero(counts):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


def kfold_manifest(manifest: Manifest, k: int, fold: int, seed: int = 0) -> Manifest:
    """Fold ``fold`` of a stratified k-fold over train (+ the dataset's own val, if any):
    that fold becomes val, the others train; test is untouched (it never joins selection)."""
    if not 0 <= fold < k:
        raise DataError(f"fold must be in 0..{k - 1}, got {fold}")
    pool = list(manifest.splits.get("train", [])) + list(manifest.splits.get("val", []))
    assign = stratified_kfold([label for _, label in pool], k, seed)
    splits = dict(manifest.splits)
    splits["train"] = [s for s, f in zip(pool, assign) if f != fold]
    splits["val"] = [s for s, f in zip(pool, assign) if f == fold]
    return manifest.derive(splits)


def _write_atomic(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1)
        # os.replace is atomic: two processes racing both write the same deterministic split.
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(
            f"cannot persist the validation split at {str(path)!r} ({exc.strerror}); "
            f"make the dataset directory writable"
        ) from None
