"""Models: a timm backbone plus a classification head, built from a TrialConfig."""

from .factory import FERModel, create_model, list_backbones, preprocess_for, validate_backbone

__all__ = ["FERModel", "create_model", "list_backbones", "preprocess_for", "validate_backbone"]
