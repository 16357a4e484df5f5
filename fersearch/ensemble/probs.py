"""How an ensemble turns its members' probabilities into one answer: the weighted mean, then the
per-class calibration offsets. Finalize chooses the weights and offsets (finalize/weighting.py,
finalize/calibrate.py); prediction applies them with exactly these functions."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument


def combine(member_probs: np.ndarray, weights) -> np.ndarray:
    """(M, N, K) member probabilities, (M,) weights -> (N, K) weighted mean."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (member_probs.shape[0],) or w.sum() <= 0 or (w < 0).any():
        raise InvalidArgument(f"need {member_probs.shape[0]} non-negative weights, not all 0; got {w}")
    return np.tensordot(w / w.sum(), member_probs.astype(np.float64), axes=1).astype(np.float32)


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))


def apply_bias(probs: np.ndarray, bias) -> np.ndarray:
    """Calibrated probabilities softmax(log p + b); argmax is the calibrated prediction."""
    z = log_probs(probs) + np.asarray(bias, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
