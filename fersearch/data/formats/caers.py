"""CAER-S: ``train/`` and ``test/`` with one folder per class (whole scenes, faces in context)."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import class_dirs, list_class_folders

CLASS_NAMES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
DESCRIPTION = f"train/ and test/ with the class folders {', '.join(CLASS_NAMES)}"


def detect(root: Path) -> bool:
    return (
        (root / "train").is_dir()
        and (root / "test").is_dir()
        and not (root / "val").is_dir()
        and set(class_dirs(root / "train")) == set(CLASS_NAMES)
    )


def read(root: Path) -> Manifest:
    if not detect(root):
        raise DataError(f"{str(root)!r} is not a CAER-S tree ({DESCRIPTION})")
    splits = {split: list_class_folders(root, split, CLASS_NAMES) for split in ("train", "test")}
    if not splits["train"]:
        raise DataError(f"{str(root / 'train')!r} holds no images")
    return Manifest(root=root, format="caers", class_names=CLASS_NAMES, splits=splits)
