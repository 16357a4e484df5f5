"""RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/<stem>_aligned.jpg.

Label file lines look like ``train_00001.jpg 5`` with labels 1..7 in the order below. The
official file name really is misspelt "patition".
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest

CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
DESCRIPTION = "EmoLabel/list_patition_label.txt with Image/aligned/*_aligned.jpg"


def detect(root: Path) -> bool:
    return (root / LABEL_FILE).is_file()


def read(root: Path) -> Manifest:
    label_file = root / LABEL_FILE
    if not label_file.is_file():
        raise DataError(f"RAF-DB label file {str(label_file)!r} not found ({DESCRIPTION})")
    image_dir = root / "Image" / "aligned"
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for lineno, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{label_file}:{lineno}: expected '<name>.jpg <label 1-7>', got {line!r}")
        name, label = parts[0], int(parts[1])
        if not 1 <= label <= len(CLASS_NAMES):
            raise DataError(f"{label_file}:{lineno}: label {label} is out of range 1..{len(CLASS_NAMES)}")
        split = name.split("_", 1)[0]
        if split not in splits:
            raise DataError(
                f"{label_file}:{lineno}: image name {name!r} starts with neither 'train_' nor 'test_'"
            )
        stem = name.rsplit(".", 1)[0]
        rel = (image_dir / f"{stem}_aligned.jpg").relative_to(root)
        splits[split].append((str(rel), label - 1))
    if not splits["train"]:
        raise DataError(f"{label_file} lists no training images")
    return Manifest(root=root, format="rafdb", class_names=CLASS_NAMES, splits=splits)
