"""Valence/arousal on test (issue #19 item 5): the figures of the members that have a VA head,
when the test split carries VA labels (AffectNet). Read in finalize's test stage, after every
choice was sealed, like the class probabilities.

Each VA member predicts on the plain test images (no TTA: the views were chosen for the
classifier); the ensemble's VA is the members' mean weighted by their ensemble weights
(renormalised over the VA members; the plain mean when none of them has weight)."""

from __future__ import annotations

import math

import numpy as np

from ..data.decode import SplitArrays
from ..data.views import packed_split
from ..metrics import va_scores
from ..models import preprocess_for
from ..runtime import resolve_device
from ..train.evaluate import predict_outputs
from .retrain import TrainedMember


def va_on_test(
    members: list[TrainedMember], weights: np.ndarray, test_sets: dict[int, SplitArrays], n_cls: int
) -> dict | None:
    """{"ensemble": scores, "members": [{"id", **scores}], "labelled", "n"} for the members
    (the deployed ones, with their weights) that have a VA head; None when none has one or the
    test split has no VA labels."""
    chosen = [(m, float(w)) for m, w in zip(members, weights) if m.config.va_head]
    targets = next(iter(test_sets.values())).va if test_sets else None
    if not chosen or targets is None:
        return None
    preds, rows = [], []
    for m, w in chosen:
        model = m.load_model(n_cls).to(resolve_device(m.config.device))
        test = test_sets[preprocess_for(m.config)["image_size"]]
        _, va = predict_outputs(
            model,
            packed_split(test, m.config.fusion != "none"),
            model.preprocess,
            next(model.parameters()).device,
        )
        preds.append(va)
        rows.append({"id": m.id, "weight": w, **_finite(va_scores(va, targets))})
    w = np.array([w for _, w in chosen], np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    ensemble = np.tensordot(w, np.stack(preds), axes=1)  # (N, 2)
    scores = _finite(va_scores(ensemble, targets))
    return {"ensemble": scores, "members": rows, "labelled": scores["va_labelled"], "n": len(targets)}


def _finite(scores: dict) -> dict:
    """NaN (an undefined CCC) as None: report.json stays strict JSON, and the tables say n/a."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in scores.items()}
