"""--cv FOLDS: a stratified k-fold estimate of the final recipe (seed 004).

The recipe is fixed before any fold is trained: the selected members' configs, each trained for
the epoch count its validation run chose, the TTA view set, the member weights and the
calibration offsets. Train and validation are pooled (test is never touched) and split into K
stratified folds; each fold is predicted by members trained on the other K-1. The spread across
folds says how much the headline number could move with a different split of the same data.
The recipe's choices were made on the validation images that are now part of the pool, so the
estimate is mildly optimistic; the report says so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..data.cache import SplitArrays
from ..data.manifest import Manifest
from ..data.splits import stratified_kfold as fold_of_each
from ..ensemble import tta
from ..ensemble.probs import apply_bias, combine
from ..errors import InvalidArgument
from ..metrics import summarize
from ..models import preprocess_for
from .retrain import MemberStore, split_arrays, train_member
from .select import MemberSpec


def stratified_kfold(labels, k: int, seed: int = 0) -> list[np.ndarray]:
    """K disjoint, stratified index arrays covering every sample: the folds of
    ``fersearch.data.splits.stratified_kfold``, with errors worded for ``--cv``."""
    labels = np.asarray(labels)
    if k < 2:
        raise InvalidArgument(f"--cv needs at least 2 folds (got {k})")
    if k > len(labels):
        raise InvalidArgument(f"--cv {k} needs at least {k} images; the pool has {len(labels)}")
    fold = fold_of_each(labels, k, seed)
    return [np.flatnonzero(fold == f) for f in range(k)]


def cross_validate(
    specs: list[MemberSpec],  # selected members, epochs already fixed
    weights: list[float],
    bias: np.ndarray,
    view_set: str,
    manifest: Manifest,
    folds: int,
    root,
    seed: int = 0,
    on_fold: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    n_cls = manifest.num_classes
    views = tta.view_set(view_set)
    pools = {}
    for spec in specs:
        size = preprocess_for(spec.config)["image_size"]
        if size not in pools:
            pools[size] = SplitArrays.concat(
                split_arrays(manifest, "train", size), split_arrays(manifest, "val", size)
            )
    labels = next(iter(pools.values())).labels
    fold_idx = stratified_kfold(labels, folds, seed)
    results = []
    for f, held_idx in enumerate(fold_idx):
        train_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
        store = MemberStore(root, f"cv{f + 1}of{folds}")
        member_probs = []
        for spec in specs:
            pool = pools[preprocess_for(spec.config)["image_size"]]
            m = train_member(
                spec,
                store,
                pool.subset(train_idx),
                pool.subset(held_idx),
                n_cls,
                "last",
                views,
                on_epoch,
                class_names=list(manifest.class_names),
            )
            member_probs.append(m.predictions("held_views").mean(0))
        raw = combine(np.stack(member_probs), weights)
        y = labels[held_idx]
        row = {"fold": f + 1, "n": int(len(held_idx))}
        for name, probs in (("uncalibrated", raw), ("calibrated", apply_bias(raw, bias))):
            m = summarize(y, probs.argmax(1), n_cls)
            row[name] = {k: m[k] for k in ("uar", "war", "macro_f1")}
        results.append(row)
        if on_fold is not None:
            on_fold(f + 1, folds)
    summary = {}
    for name in ("uncalibrated", "calibrated"):
        summary[name] = {
            k: {
                "mean": float(np.mean([r[name][k] for r in results])),
                "std": float(np.std([r[name][k] for r in results], ddof=1)),
            }
            for k in ("uar", "war", "macro_f1")
        }
    return {"folds": folds, "seed": seed, "per_fold": results, "summary": summary}
