"""ImageFolder: ``train/<class>/*.jpg`` plus ``val/`` and/or ``test/`` with the same classes.

Class names and order come from the sorted folder names of ``train/`` (torchvision's rule).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import class_dirs, list_class_folders

SPLITS = ("train", "val", "test")
DESCRIPTION = "train/ (and val/, test/) with one sub-folder of images per class"


def detect(root: Path) -> bool:
    train = root / "train"
    return (
        train.is_dir() and bool(class_dirs(train)) and ((root / "val").is_dir() or (root / "test").is_dir())
    )


def read(root: Path) -> Manifest:
    if not (root / "train").is_dir():
        raise DataError(f"{str(root)!r} has no train/ folder ({DESCRIPTION})")
    class_names = tuple(class_dirs(root / "train"))
    if len(class_names) < 2:
        raise DataError(f"{str(root / 'train')!r} must hold at least two class folders, got {class_names}")
    splits = {s: list_class_folders(root, s, class_names) for s in SPLITS if (root / s).is_dir()}
    if not splits["train"]:
        raise DataError(f"{str(root / 'train')!r} holds no images")
    return Manifest(root=root, format="imagefolder", class_names=class_names, splits=splits)
