"""Classification metrics for FER: UAR, WAR, macro F1, per-class scores, confusion matrix.

UAR (unweighted average recall) is the mean of per-class recalls, the headline FER metric on
imbalanced data; WAR (weighted average recall) is plain accuracy. A class absent from the
targets has undefined recall: it is left out of UAR (and reported as NaN per class) rather than
counted as 0 or 1.

Valence/arousal regression (AffectNet): CCC, Lin's concordance correlation coefficient
2 cov / (var_x + var_y + (mean_x - mean_y)^2), per dimension, and the RMSE over both, each on the
labelled entries only (NaN targets are unlabelled).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets, preds, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of samples of true class i predicted as class j."""
    targets = np.asarray(targets, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if targets.shape != preds.shape:
        raise ValueError(f"targets and preds differ in shape: {targets.shape} vs {preds.shape}")
    flat = targets * num_classes + preds
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (NaN where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    # F1 = 2 tp / (2 tp + fp + fn) stays defined when precision is (no predictions, some support).
    f1 = _safe_div(2 * tp, support + predicted)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def summarize(targets, preds, num_classes: int) -> dict:
    """All headline metrics at once. Macro averages skip classes absent from both sides."""
    cm = confusion_matrix(targets, preds, num_classes)
    pc = per_class(cm)
    present = pc["support"] > 0
    total = cm.sum()
    return {
        "uar": float(np.nanmean(pc["recall"][present])) if present.any() else float("nan"),
        "war": float(np.trace(cm) / total) if total else float("nan"),
        "macro_f1": float(np.nanmean(pc["f1"])) if np.isfinite(pc["f1"]).any() else float("nan"),
        "per_class": {k: v.tolist() for k, v in pc.items()},
        "confusion_matrix": cm.tolist(),
    }


def uar(targets, preds, num_classes: int) -> float:
    return summarize(targets, preds, num_classes)["uar"]


def war(targets, preds, num_classes: int) -> float:
    return summarize(targets, preds, num_classes)["war"]


def macro_f1(targets, preds, num_classes: int) -> float:
    return summarize(targets, preds, num_classes)["macro_f1"]


def ccc(pred, target) -> float:
    """Lin's concordance correlation coefficient over the entries whose target is not NaN
    (population moments); NaN with fewer than two such entries or when both sides are constant
    and equal (0 / 0)."""
    pred, target = np.asarray(pred, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    known = ~np.isnan(target)
    if known.sum() < 2:
        return float("nan")
    x, y = pred[known], target[known]
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    den = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return float(2 * cov / den) if den > 0 else float("nan")


def va_scores(pred, target) -> dict:
    """(N, 2) predicted and true (valence, arousal), NaN targets unlabelled -> CCC per
    dimension, the RMSE over every labelled entry, and how many samples had a label."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"expected (N, 2) predictions and targets, got {pred.shape} and {target.shape}")
    known = ~np.isnan(target)
    err = (pred - np.where(known, target, 0.0))[known]
    return {
        "va_ccc_valence": ccc(pred[:, 0], target[:, 0]),
        "va_ccc_arousal": ccc(pred[:, 1], target[:, 1]),
        "va_rmse": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
        "va_labelled": int(known.any(axis=1).sum()),
    }
