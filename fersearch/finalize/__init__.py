"""finalize: retrain the top-K trials, ensemble them on validation, report once on test, export."""

from .pipeline import finalize

__all__ = ["finalize"]
