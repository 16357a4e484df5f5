"""RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/<stem>_aligned.jpg.

Label file lines look like ``train_00001.jpg 5`` with labels 1..7 in the order below. The
official file name really is misspelt "patition". RAF-DB compound ships the same file with
labels 1..11 (see ``rafdb_compound``); the two are told apart by the labels used.

The ``*_original`` formats (named with ``--format``, never auto-detected) read the uncropped
``Image/original/<stem>.jpg`` instead, with the face box of
``Annotation/boundingbox/<stem>_boundingbox.txt`` (``x1 y1 x2 y2``: top-left and bottom-right
corners in pixels), so the cache crops the face itself (``crop: face``, with a margin) or keeps
the whole photo (``crop: full``). An image without a box file is used whole.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Box, Manifest
from ._common import parse_label, read_lines, read_text, unique

CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
DESCRIPTION = "EmoLabel/list_patition_label.txt (labels 1-7) with Image/aligned/*_aligned.jpg"
DESCRIPTION_ORIGINAL = (
    "EmoLabel/list_patition_label.txt (labels 1-7) with Image/original/*.jpg cropped by "
    "Annotation/boundingbox/*_boundingbox.txt"
)
BOX_DIR = Path("Annotation") / "boundingbox"


def looks_compound(root: Path) -> bool:
    """Whether the partition file uses the compound labels: at least three distinct values of
    8..11. A basic file with a stray typo (one label 9) stays basic, so its reader reports the
    bad line instead of the whole file silently becoming an 11-class dataset."""
    try:
        # errors="replace": detection must not fail; the reader names a byte that is not UTF-8
        tokens = (root / LABEL_FILE).read_text(encoding="utf-8-sig", errors="replace").split()
    except OSError:
        return False
    return len({t for t in tokens[1::2] if t in {"8", "9", "10", "11"}}) >= 3


def detect(root: Path) -> bool:
    return (root / LABEL_FILE).is_file() and not looks_compound(root)


def read_box(path: Path) -> Box | None:
    """A RAF-DB bounding-box file (``x1 y1 x2 y2``) as (x, y, w, h); None if absent or empty."""
    if not path.is_file():
        return None
    text = read_text(path).split()
    if not text:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text[:4])
    except ValueError:
        raise DataError(f"{path}: expected 'x1 y1 x2 y2' (four numbers), got {' '.join(text)!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{path}: expected 'x1 y1 x2 y2' with x2 > x1 and y2 > y1, got {' '.join(text)!r}")
    return (x1, y1, x2 - x1, y2 - y1)


def read_partition(
    root: Path, format_name: str, class_names: tuple[str, ...], original: bool = False
) -> Manifest:
    label_file = root / LABEL_FILE
    if not label_file.is_file():
        raise DataError(f"RAF-DB label file {str(label_file)!r} not found")
    if original and not (root / "Image" / "original").is_dir():
        raise DataError(
            f"{str(root / 'Image' / 'original')!r} not found: the {format_name} format reads RAF-DB's "
            f"uncropped originals; use --format {format_name.removesuffix('_original')} for Image/aligned"
        )
    # plain strings: Path joins dominate on 100k-line files
    image_dir = "Image/original/" if original else "Image/aligned/"
    boxes: dict[str, Box] = {}
    k = len(class_names)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    entries, names = [], {}
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
        # keyed by the file read: train_1.jpg and train_1.png name one aligned image
        ref = f"{image_dir}{name}" if original else f"{image_dir}{stem}_aligned.jpg"
        names.setdefault(ref, (split, stem))
        entries.append((ref, label, where))
    for ref, label, _ in unique(entries):
        split, stem = names[ref]
        if original:
            box = read_box(root / BOX_DIR / f"{stem}_boundingbox.txt")
            if box is not None:
                boxes[ref] = box
        splits[split].append((ref, label - 1))
    if not splits["train"]:
        raise DataError(f"{label_file} lists no training images")
    return Manifest(
        root=root,
        format=format_name,
        class_names=class_names,
        splits=splits,
        boxes=boxes if original else None,
    )


def read(root: Path) -> Manifest:
    return read_partition(root, "rafdb", CLASS_NAMES)


def read_original(root: Path) -> Manifest:
    return read_partition(root, "rafdb_original", CLASS_NAMES, original=True)
