"""RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/<stem>_aligned.jpg.

Label file lines look like ``train_00001.jpg 5`` with labels 1..7 in the order below. The
official file name really is misspelt "patition". RAF-DB compound ships the same file with
labels 1..11 (see ``rafdb_compound``); the two are told apart by the labels used.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import parse_label, read_lines

CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
DESCRIPTION = "EmoLabel/list_patition_label.txt (labels 1-7) with Image/aligned/*_aligned.jpg"


def looks_compound(root: Path) -> bool:
    """Whether the partition file uses the compound labels: at least three distinct values of
    8..11. A basic file with a stray typo (one label 9) stays basic, so its reader reports the
    bad line instead of the whole file silently becoming an 11-class dataset."""
    try:
        tokens = (root / LABEL_FILE).read_text(encoding="utf-8-sig").split()
    except OSError:
        return False
    return len({t for t in tokens[1::2] if t in {"8", "9", "10", "11"}}) >= 3


def detect(root: Path) -> bool:
    return (root / LABEL_FILE).is_file() and not looks_compound(root)


def read_partition(root: Path, format_name: str, class_names: tuple[str, ...]) -> Manifest:
    label_file = root / LABEL_FILE
    if not label_file.is_file():
        raise DataError(f"RAF-DB label file {str(label_file)!r} not found")
    image_dir = "Image/aligned/"  # plain strings: Path joins dominate on 100k-line files
    k = len(class_names)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for lineno, line in read_lines(label_file):
        parts = line.split()
        where = f"{label_file}:{lineno}"
        if len(parts) != 2:
            raise DataError(f"{where}: expected '<name>.jpg <label 1-{k}>', got {line!r}")
        name, label = parts[0], parse_label(parts[1], 1, k, where)
        split = name.split("_", 1)[0]
        if split not in splits:
            raise DataError(f"{where}: image name {name!r} starts with neither 'train_' nor 'test_'")
        stem = name.rsplit(".", 1)[0]
        splits[split].append((f"{image_dir}{stem}_aligned.jpg", label - 1))
    if not splits["train"]:
        raise DataError(f"{label_file} lists no training images")
    return Manifest(root=root, format=format_name, class_names=class_names, splits=splits)


def read(root: Path) -> Manifest:
    return read_partition(root, "rafdb", CLASS_NAMES)
