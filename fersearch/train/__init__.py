"""Training: augmentation on the device, mixing, losses, schedule, and the fit loop."""

from .evaluate import predict_probs
from .loop import FitResult, TrainingDiverged, fit

__all__ = ["FitResult", "TrainingDiverged", "fit", "predict_probs"]
