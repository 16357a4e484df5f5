"""Data: readers for official layouts, validation splits, decoding, synthetic faces."""

from ..errors import DataError
from .formats import list_formats, read_dataset
from .manifest import Manifest
from .splits import kfold_manifest, with_validation

__all__ = ["Manifest", "list_formats", "load_manifest", "read_dataset", "with_validation"]


def load_manifest(cfg) -> Manifest:
    """Read the dataset a DataConfig names, with its persisted validation split, or with fold
    ``cfg.fold`` of a stratified k-fold as validation when ``cfg.folds`` is set."""
    manifest = read_dataset(cfg.root, cfg.format)
    frames = cfg.frames
    if frames > 1 and manifest.clips is None:
        raise DataError(
            f"frames={frames} needs a clip dataset (the raer layout); {cfg.root!r} is {manifest.format}, "
            f"whose samples are single images: leave frames at 1"
        )
    manifest.crop, manifest.frames = cfg.crop, frames
    if cfg.folds:
        return kfold_manifest(manifest, cfg.folds, cfg.fold, cfg.split_seed)
    return with_validation(manifest, cfg.val_fraction, cfg.split_seed)
