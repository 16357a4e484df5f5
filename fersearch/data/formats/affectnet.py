"""AffectNet, both public layouts, in 8-class (``affectnet``) and 7-class (``affectnet7``) modes.

CSV layout (the original release)::

    training.csv, validation.csv     (at the root or in Manually_Annotated_file_lists/)
        subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
        expression,valence,arousal
    Manually_Annotated_Images/<subDirectory_filePath>   (or the path relative to the root)

Images are full photos: each is cropped to its face box by the cache.

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
        splits, boxes = {}, {}
        image_root = Path(IMAGE_DIR) if (root / IMAGE_DIR).is_dir() else Path(".")
        rows = []
        for split, file in CSV_FILES.items():
            if (csv_dir / file).is_file():
                splits[split] = []
                rows += [(ref, (split, *value), where) for ref, value, where in _read_csv(csv_dir / file)]
        # one image in both files would be trained on and tested on: an error, as any conflict
        for ref, (split, code, box), where in unique(rows, "split, expression and face box"):
            if not _keep(code, num_classes, dropped):
                continue
            if box is None:
                raise DataError(
                    f"{where}: face box is not four numbers (face_x, face_y, face_width, face_height)"
                )
            ref = str(image_root / ref)
            if box[2] > 0 and box[3] > 0:
                boxes[ref] = box
            splits[split].append((ref, code))
    elif _is_npy_layout(root):
        splits = {
            split: _read_npy(root, folder, num_classes, dropped)
            for split, folder in NPY_SETS.items()
            if (root / folder / "annotations").is_dir()
        }
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
        notes=notes,
    )


def _keep(code: int, num_classes: int, dropped: dict[str, int]) -> bool:
    if code < num_classes:
        return True
    key = DROPPED.get(code, "Contempt (7-class mode)")
    dropped[key] = dropped.get(key, 0) + 1
    return False


def _read_csv(path: Path) -> list[tuple[str, tuple, str]]:
    """(image path, (expression code, face box or None), "file:line") for every row."""
    rows = []
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in COLUMNS if c not in col]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}; got {header[:9]}")
        last = max(col[c] for c in COLUMNS)
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
            rows.append((row[col["subDirectory_filePath"]].strip(), (code, box), where))
    return rows


def _read_npy(root: Path, folder: str, k: int, dropped: dict) -> list[tuple[str, int]]:
    items = []
    for ann in sorted((root / folder / "annotations").glob("*_exp.npy")):
        where = str(ann)
        try:
            value = np.load(ann, allow_pickle=False)  # never unpickle: plain arrays only
        except (ValueError, OSError) as exc:
            raise DataError(f"{where}: cannot read the expression ({exc})") from None
        v = np.asarray(value).reshape(-1)[0]
        text = str(int(v)) if np.issubdtype(type(v), np.number) and float(v).is_integer() else str(v)
        code = parse_label(text.strip(), 0, 10, where)
        if _keep(code, k, dropped):
            stem = ann.name[: -len("_exp.npy")]
            items.append((f"{folder}/images/{stem}.jpg", code))
    return items
