"""Training: augmentation on the device, sampling, losses, mixing, schedules, the fit loop."""

from .evaluate import predict_probs
from .interrupt import GracefulStop
from .loop import FitResult, TrainingDiverged, TrainingInterrupted, fit

__all__ = ["FitResult", "GracefulStop", "TrainingDiverged", "TrainingInterrupted", "fit", "predict_probs"]
