"""Per-class bias calibration for UAR (seed 001's "per-emotion confidence thresholds").

The ensemble predicts argmax_k(log p_k + b_k). The offsets b are tuned on validation by
coordinate ascent: one class at a time, try every offset on a grid with the others fixed, keep
the one with the highest validation UAR (ties: stay put, else the offset nearest 0), until a full
round changes nothing. A model trained on imbalanced data under-predicts rare classes; raising
their offsets trades a little WAR for recall where UAR counts it.

Because the offsets are chosen on validation, validation UAR after calibration is optimistic;
``crossfit_gain`` estimates the gain honestly by fitting on one half of validation and scoring
the other.
"""

from __future__ import annotations

import numpy as np

from ..ensemble.probs import apply_bias, log_probs
from ..metrics import summarize

GRID = np.round(np.arange(-3.0, 3.0001, 0.05), 4)


def _uar_batch(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """UAR of each row of preds (G, N) against labels (N,), vectorised over G."""
    g = preds.shape[0]
    flat = (np.arange(g)[:, None] * k + labels[None, :]) * k + preds
    cm = np.bincount(flat.ravel(), minlength=g * k * k).reshape(g, k, k)
    support = cm.sum(axis=2)
    present = support[0] > 0
    recall = np.diagonal(cm, axis1=1, axis2=2)[:, present] / support[:, present]
    return recall.mean(axis=1)


def fit_bias(probs: np.ndarray, labels: np.ndarray, num_classes: int, max_rounds: int = 20) -> np.ndarray:
    """Offsets (K,) that maximise validation UAR; zero-mean (adding a constant changes nothing)."""
    labels = np.asarray(labels, dtype=np.int64)
    z = log_probs(probs)
    bias = np.zeros(num_classes)
    current = summarize(labels, z.argmax(1), num_classes)["uar"]
    for _ in range(max_rounds):
        changed = False
        for c in range(num_classes):
            trial = z[None, :, :] + bias[None, None, :]  # (G, N, K)
            trial = np.repeat(trial, len(GRID), axis=0)
            trial[:, :, c] = z[None, :, c] + GRID[:, None]
            uars = _uar_batch(labels, trial.argmax(2), num_classes)
            best = uars.max()
            if best > current + 1e-12:
                ties = np.flatnonzero(uars >= best - 1e-12)
                bias[c] = GRID[ties[np.argmin(np.abs(GRID[ties]))]]
                current, changed = float(best), True
        if not changed:
            break
    return bias - bias.mean()


def stratified_halves(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A boolean mask picking a seeded half of each class: the two halves of a cross-fit."""
    rng = np.random.default_rng(seed)
    half = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        half[idx[: len(idx) // 2]] = True
    return half


def crossfit_gain(probs: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0) -> dict[str, float]:
    """Validation UAR without and with calibration, each half's offsets fitted on the other half."""
    labels = np.asarray(labels, dtype=np.int64)
    half = stratified_halves(labels, seed)
    preds = probs.argmax(1).copy()
    for fit_on in (half, ~half):
        if fit_on.sum() == 0 or (~fit_on).sum() == 0:
            continue
        b = fit_bias(probs[fit_on], labels[fit_on], num_classes)
        preds[~fit_on] = apply_bias(probs[~fit_on], b).argmax(1)
    before = summarize(labels, probs.argmax(1), num_classes)["uar"]
    after = summarize(labels, preds, num_classes)["uar"]
    return {"uar_before": before, "uar_after": after, "gain": after - before}
