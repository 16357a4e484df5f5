"""AffectNet, both public layouts, in 8-class (``affectnet``) and 7-class (``affectnet7``) modes.

CSV layout (the original release)::

    training.csv, validation.csv     (at the root or in Manually_Annotated_file_lists/)
        subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
        expression,valence,arousal
    Manually_Annotated_Images/<subDirectory_filePath>   (or the path relative to the root)

Images are full photos: each is cropped to its face box by the cache.

Valence and arousal (``valence``, ``arousal`` columns; ``<id>_val.npy`` and ``<id>_aro.npy`` in
the later layout) become ``Manifest.va_targets`` when any image has them. A value outside
[-1, 1] (the release writes -2 for "no value", on None/Uncertain/No-Face images) or one that is
not a number is unlabelled (NaN): the VA head learns nothing from it and it is not scored.

Images + annotations layout (the later release, faces already cropped)::

    train_set/images/<id>.jpg   train_set/annotations/<id>_exp.npy
    val_set/images/<id>.jpg     val_set/annotations/<id>_exp.npy

Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt;
8 None, 9 Uncertain, 10 No-Face are dropped (counted in the manifest notes); the 7-class mode also
drops Contempt. AffectNet's official validation set is the usual *test* set, so it becomes
``test`` here and validation is carved from train.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..manifest import Box, Manifest
from ._common import open_text, parse_label, unique

CLASS_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
DROPPED = {8: "None", 9: "Uncertain", 10: "No-Face"}
CSV_FILES = {"train": "training.csv", "test": "validation.csv"}
CSV_DIRS = (".", "Manually_Annotated_file_lists")
IMAGE_DIR = "Manually_Annotated_Images"
NPY_SETS = {"train": "train_set", "test": "val_set"}
DESCRIPTION = (
    "training.csv + validation.csv (face boxes, expression 0-10), or "
    "train_set|val_set/images/<id>.jpg + annotations/<id>_exp.npy"
)
DESCRIPTION7 = "AffectNet without Contempt (7 classes); choose it with --format affectnet7"
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
VA_COLUMNS = ("valence", "arousal")  # optional: read when the header has both
VA_FILES = ("_val.npy", "_aro.npy")  # the later layout: beside <id>_exp.npy


def _csv_dir(root: Path) -> Path | None:
    for d in CSV_DIRS:
        if (root / d / CSV_FILES["train"]).is_file():
            return root / d
    return None


def _is_npy_layout(root: Path) -> bool:
    return (root / NPY_SETS["train"] / "annotations").is_dir()


def detect(root: Path) -> bool:
    return _csv_dir(root) is not None or _is_npy_layout(root)


def read(root: Path) -> Manifest:
    return _read(root, num_classes=8)


def read7(root: Path) -> Manifest:
    return _read(root, num_classes=7)


def _read(root: Path, num_classes: int) -> Manifest:
    name = "affectnet" if num_classes == 8 else "affectnet7"
    dropped: dict[str, int] = {}
    boxes: dict[str, Box] | None = None
    if (csv_dir := _csv_dir(root)) is not None:
        splits, boxes, va = {}, {}, {}
        image_root = Path(IMAGE_DIR) if (root / IMAGE_DIR).is_dir() else Path(".")
        rows = []
        for split, file in CSV_FILES.items():
            if (csv_dir / file).is_file():
                splits[split] = []
                rows += [(ref, (split, *value), where) for ref, value, where in _read_csv(csv_dir / file)]
        # one image in both files would be trained on and tested on: an error, as any conflict
        for ref, (split, code, box, va_pair), where in unique(rows, "split, expression, face box and VA"):
            if not _keep(code, num_classes, dropped):
                continue
            if box is None:
                raise DataError(
                    f"{where}: face box is not four numbers (face_x, face_y, face_width, face_height)"
                )
            ref = str(image_root / ref)
            if box[2] > 0 and box[3] > 0:
                boxes[ref] = box
            if va_pair is not None:
                va[ref] = va_pair
            splits[split].append((ref, code))
    elif _is_npy_layout(root):
        splits, va = {}, {}
        for split, folder in NPY_SETS.items():
            if (root / folder / "annotations").is_dir():
                splits[split] = _read_npy(root, folder, num_classes, dropped, va)
    else:
        raise DataError(f"{str(root)!r} is not an AffectNet layout ({DESCRIPTION})")
    if not splits.get("train"):
        raise DataError(f"AffectNet at {str(root)!r} has no usable training images")
    notes = [f"dropped {n} images labelled {k}" for k, n in sorted(dropped.items())]
    return Manifest(
        root=root,
        format=name,
        class_names=CLASS_NAMES[:num_classes],
        splits=splits,
        boxes=boxes,
        va_targets=_va_targets(va, {ref for items in splits.values() for ref, _ in items}),
        notes=notes,
    )


def _va_targets(va: dict[str, tuple[float, float]], kept: set[str]) -> dict | None:
    """The kept images' (valence, arousal) with a missing value as NaN; None when no kept image
    has a single value (the dataset has no VA labels to learn from)."""
    out = {ref: tuple(math.nan if x is None else x for x in pair) for ref, pair in va.items() if ref in kept}
    labelled = any(not math.isnan(x) for pair in out.values() for x in pair)
    return out if labelled else None


def _va_value(text: str) -> float | None:
    """A valence or arousal value in [-1, 1]; None for anything else (-2 is "no value")."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if -1.0 <= value <= 1.0 else None  # (NaN fails both comparisons)


def _keep(code: int, num_classes: int, dropped: dict[str, int]) -> bool:
    if code < num_classes:
        return True
    key = DROPPED.get(code, "Contempt (7-class mode)")
    dropped[key] = dropped.get(key, 0) + 1
    return False


def _read_csv(path: Path) -> list[tuple[str, tuple, str]]:
    """(image path, (expression code, face box or None, (valence, arousal) or None),
    "file:line") for every row; a missing VA value is None inside the pair."""
    rows = []
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in COLUMNS if c not in col]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}; got {header[:9]}")
        has_va = all(c in col for c in VA_COLUMNS)
        last = max(col[c] for c in COLUMNS + (VA_COLUMNS if has_va else ()))
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path}:{lineno}"
            if len(row) <= last:
                raise DataError(f"{where}: expected {len(header)} columns as in the header, got {len(row)}")
            code = parse_label(row[col["expression"]], 0, 10, where)
            try:
                box: tuple[float, ...] | None = tuple(float(row[col[c]]) for c in COLUMNS[1:5])
            except ValueError:
                box = None  # an error only if the row is kept (see _read)
            va = tuple(_va_value(row[col[c]]) for c in VA_COLUMNS) if has_va else None
            rows.append((row[col["subDirectory_filePath"]].strip(), (code, box, va), where))
    return rows


def _read_npy(root: Path, folder: str, k: int, dropped: dict, va: dict) -> list[tuple[str, int]]:
    """The kept images of one set; their (valence, arousal) go into ``va`` when both files exist."""
    items = []
    for ann in sorted((root / folder / "annotations").glob("*_exp.npy")):
        code = parse_label(_npy_text(ann, "expression"), 0, 10, str(ann))
        if _keep(code, k, dropped):
            stem = ann.name[: -len("_exp.npy")]
            ref = f"{folder}/images/{stem}.jpg"
            items.append((ref, code))
            files = [ann.with_name(stem + suffix) for suffix in VA_FILES]
            if all(f.is_file() for f in files):
                va[ref] = tuple(_va_value(_npy_text(f, "valence/arousal")) for f in files)
    return items


def _npy_text(path: Path, what: str) -> str:
    """The first value of a one-value .npy file as text (the release stores strings)."""
    try:
        value = np.load(path, allow_pickle=False)  # never unpickle: plain arrays only
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc})") from None
    v = np.asarray(value).reshape(-1)[0]
    return (str(int(v)) if np.issubdtype(type(v), np.number) and float(v).is_integer() else str(v)).strip()
