"""Data: readers for official layouts, validation splits, decoding, synthetic faces."""

from .formats import list_formats, read_dataset
from .manifest import Manifest
from .splits import with_validation

__all__ = ["Manifest", "list_formats", "load_manifest", "read_dataset", "with_validation"]


def load_manifest(cfg) -> Manifest:
    """Read the dataset a DataConfig names, with its persisted validation split."""
    return with_validation(read_dataset(cfg.root, cfg.format), cfg.val_fraction, cfg.split_seed)
