"""RAER-style clip datasets (context-aware emotion recognition, as CLIP-CAER reads RAER).

::

    annotation/train.txt   <clip folder> <num_frames> <label 1..K>     (also test.txt, val.txt)
    annotation/classes.txt optional: one class name per line (default: RAER's five classes)
    bounding_box/face.json {"<clip folder>": {"<frame file>": [left, top, right, bottom]}}
    bounding_box/body.json {"<clip folder>": [left, top, right, bottom]}
    <clip folder>/<frame files, sorted = time order>

Each sample is a clip; the cache samples T frames from it and crops a face view (the frame's
face box) and a context view (the body box, else the whole frame) from each.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DataError
from ..manifest import Box, Clip, Manifest
from ._common import IMAGE_SUFFIXES, parse_label, read_lines, read_text, unique

CLASS_NAMES = ("Neutrality", "Enjoyment", "Confusion", "Fatigue", "Distraction")
ANNOTATION = Path("annotation")
FACE_JSON = Path("bounding_box") / "face.json"
BODY_JSON = Path("bounding_box") / "body.json"
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
DESCRIPTION = "annotation/train.txt (clip num_frames label) with bounding_box/face.json, body.json"


def detect(root: Path) -> bool:
    return (root / ANNOTATION / "train.txt").is_file() and (root / FACE_JSON).is_file()


def _ltrb(value, where: str) -> Box | None:
    if value is None:
        return None
    try:
        left, top, right, bottom = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a box must be [left, top, right, bottom], got {value!r}") from None
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(read_text(path))
    except ValueError as exc:
        raise DataError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{str(path)!r} must hold a JSON object keyed by clip folder")
    return data


def read(root: Path) -> Manifest:
    classes_file = root / ANNOTATION / "classes.txt"
    class_names = (
        tuple(line for _, line in read_lines(classes_file)) if classes_file.is_file() else CLASS_NAMES
    )
    faces, bodies = _load_json(root / FACE_JSON), _load_json(root / BODY_JSON)
    entries = []
    splits: dict[str, list[tuple[str, int]]] = {}
    for split, file in SPLIT_FILES.items():
        path = root / ANNOTATION / file
        if not path.is_file():
            continue
        splits[split] = []
        for lineno, line in read_lines(path):
            where = f"{path}:{lineno}"
            parts = line.split()
            if len(parts) != 3:
                raise DataError(f"{where}: expected '<clip folder> <num_frames> <label>', got {line!r}")
            ref, _, label_text = parts
            entries.append((ref, (split, parse_label(label_text, 1, len(class_names), where)), where))
    clips: dict[str, Clip] = {}
    # a clip in two annotation files would be trained on and tested on: an error, as any conflict
    for ref, (split, label), _ in unique(entries, "split and label"):
        folder = root / ref
        frames = (
            sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        face_map = faces.get(ref, {}) if isinstance(faces.get(ref), dict) else {}
        clips[ref] = Clip(
            frames=tuple(f"{ref}/{f}" for f in frames),
            face_boxes=tuple(_ltrb(face_map.get(f), f"{root / FACE_JSON}[{ref}][{f}]") for f in frames),
            body_box=_ltrb(bodies.get(ref), f"{root / BODY_JSON}[{ref}]"),
        )
        splits[split].append((ref, label - 1))
    if not splits.get("train"):
        raise DataError(f"{root / ANNOTATION / 'train.txt'} lists no clips")
    return Manifest(root=root, format="raer", class_names=class_names, splits=splits, clips=clips)
