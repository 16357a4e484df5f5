"""Percentile bootstrap 95% intervals for UAR, WAR and macro F1, paired across predictors.

Every predictor is scored on the same resamples, so the interval of a difference (ensemble minus
best single model, calibrated minus uncalibrated) accounts for the images they share.
"""

from __future__ import annotations

import numpy as np

METRICS = ("uar", "war", "macro_f1")


def _metrics_from_cms(cm: np.ndarray) -> dict[str, np.ndarray]:
    """cm (B, K, K) -> per-resample uar, war, macro_f1 (B,), with the same rules as metrics.py."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    support = cm.sum(axis=2).astype(np.float64)
    predicted = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        uar = np.nanmean(recall, axis=1)
        macro_f1 = np.nanmean(f1, axis=1)
    war = tp.sum(1) / cm.sum(axis=(1, 2))
    return {"uar": uar, "war": war, "macro_f1": macro_f1}


def resample_metrics(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """idx (B, N) resample indices -> per-resample metrics of one prediction vector."""
    b, k = idx.shape[0], num_classes
    t, p = labels[idx], preds[idx]  # (B, N)
    flat = (np.arange(b)[:, None] * k + t) * k + p
    cm = np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k)
    return _metrics_from_cms(cm)


def bootstrap(
    labels,
    preds: dict[str, np.ndarray],
    num_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    pairs: list[tuple[str, str]] = (),
) -> dict:
    """{"intervals": {name: {metric: [low, high]}}, "deltas": {"a-b": {metric: {value, low, high}}}}."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    samples = {name: resample_metrics(labels, np.asarray(p), num_classes, idx) for name, p in preds.items()}
    full = {
        name: resample_metrics(labels, np.asarray(p), num_classes, np.arange(n)[None, :])
        for name, p in preds.items()
    }
    intervals = {name: {m: _percentiles(s[m]) for m in METRICS} for name, s in samples.items()}
    deltas = {}
    for a, b in pairs:
        deltas[f"{a} - {b}"] = {
            m: {
                "value": float(full[a][m][0] - full[b][m][0]),
                **dict(zip(("low", "high"), _percentiles(samples[a][m] - samples[b][m]))),
            }
            for m in METRICS
        }
    return {"n_boot": n_boot, "seed": seed, "intervals": intervals, "deltas": deltas}


def _percentiles(x: np.ndarray) -> list[float]:
    lo, hi = np.nanpercentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]
