"""What finalize's stages hand each other: the choices made on validation (steps 2-4) and the
test predictions read once afterwards (step 7). Small dataclasses, so the pipeline reads as its
steps and the report is built from them (report.build_report)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .weighting import Selection


@dataclass
class Choices:
    """Every choice finalize makes, all on validation."""

    view_set: str  # the TTA view set
    tta: dict  # {"chosen": ..., "candidates": {set: {"uar", "nll", "views"}}}
    val_labels: np.ndarray
    member_val: np.ndarray  # (M, Nval, K): each member on validation, over the chosen views
    selection: Selection  # the greedy weights and their scores
    decision: dict  # greedy or plain mean, and why
    weights: np.ndarray  # (M,) the weights shipped
    val_raw: np.ndarray  # (Nval, K) the weighted mean, uncalibrated
    bias: np.ndarray  # (K,) the calibration offsets shipped (zeros when not applied)
    fitted_bias: np.ndarray  # (K,) the offsets fitted, applied or not
    crossfit: dict  # the cross-fitted calibration gain that decided
    calibration_applied: bool

    @property
    def selected(self) -> list[int]:
        return [i for i, w in enumerate(self.weights) if w > 0]


@dataclass
class TestResults:
    """The test split, read once after every choice was sealed."""

    labels: np.ndarray
    member_test: np.ndarray  # (M, Ntest, K): every train-only member
    deployed_test: np.ndarray | None  # (S, Ntest, K): the train+val refits, when there are any
    deployed_raw: np.ndarray  # (Ntest, K): the deployed members' weighted mean, uncalibrated
    final: np.ndarray  # (Ntest, K): what the exported ensemble predicts
    va: dict | None = None  # valence/arousal CCC and RMSE (finalize/va.py), when there are any
