"""RAF-CE (compound expressions with action units).

Files at the dataset root::

    RAFCE_emolabel.txt     <image> <label 0-13>         (14 compound classes, order below)
    RAFCE_partition.txt    <image> <0 train|1 test|2 val>
    RAFCE_AUlabel.txt      <image> <AUs, e.g. 1+2+25+26, L12, or null>
    aligned/<image>        (also accepted: Image/aligned/, images/; '<stem>_aligned.jpg' names)

AU labels become multi-label targets in the manifest (``au_names``, ``au_targets``): one 0/1
column per AU number seen in the file; a side prefix (L12, R12) counts as the AU itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import parse_label, read_lines, unique

CLASS_NAMES = (
    "Happily Surprised",
    "Happily Disgusted",
    "Sadly Fearful",
    "Sadly Angry",
    "Sadly Surprised",
    "Sadly Disgusted",
    "Fearfully Angry",
    "Fearfully Surprised",
    "Fearfully Disgusted",
    "Angrily Surprised",
    "Angrily Disgusted",
    "Disgustedly Surprised",
    "Happily Fearful",
    "Happily Sad",
)
EMO_FILE, PART_FILE, AU_FILE = "RAFCE_emolabel.txt", "RAFCE_partition.txt", "RAFCE_AUlabel.txt"
IMAGE_DIRS = ("aligned", "Image/aligned", "images", "Image")
DESCRIPTION = f"{EMO_FILE} (labels 0-13), {PART_FILE}, {AU_FILE} and aligned/"
_SPLIT = {0: "train", 1: "test", 2: "val"}
_AU_TOKEN = re.compile(r"^[LR]?(\d+)[A-Za-z]?$")


def detect(root: Path) -> bool:
    return (root / EMO_FILE).is_file() and (root / PART_FILE).is_file()


def _two_columns(path: Path, parse, what: str) -> dict[str, object]:
    """image -> parse(value, where) for every line; an image listed twice must say the same."""
    out = []
    for lineno, line in read_lines(path):
        parts = line.split(None, 1)
        where = f"{path}:{lineno}"
        if len(parts) != 2:
            raise DataError(f"{where}: expected '<image> <value>', got {line!r}")
        out.append((parts[0], parse(parts[1].strip(), where), where))
    return {name: value for name, value, _ in unique(out, what)}


def _parse_aus(text: str, where: str) -> tuple[int, ...]:
    """The AU numbers, sorted (a tuple: compared and shown as such when an image is listed twice)."""
    if text.lower() in {"null", "none", "-", "0"}:
        return ()
    aus = set()
    for token in re.split(r"[+,\s]+", text.strip()):
        m = _AU_TOKEN.match(token)
        if not m:
            raise DataError(f"{where}: cannot read action unit {token!r} (expected e.g. 1+2+25, L12)")
        aus.add(int(m.group(1)))
    return tuple(sorted(aus))


def _image_ref(root: Path, name: str) -> tuple[Path, bool]:
    """The image folder and whether files carry the '_aligned' suffix, from the first image."""
    stem = name.rsplit(".", 1)[0]
    for folder in IMAGE_DIRS:
        if (root / folder / name).is_file():
            return Path(folder), False
        if (root / folder / f"{stem}_aligned.jpg").is_file():
            return Path(folder), True
    existing = [f for f in IMAGE_DIRS if (root / f).is_dir()]
    return Path(existing[0] if existing else IMAGE_DIRS[0]), False


def read(root: Path) -> Manifest:
    emo_file, part_file = root / EMO_FILE, root / PART_FILE
    labels = _two_columns(emo_file, lambda v, where: parse_label(v, 0, len(CLASS_NAMES) - 1, where), "label")
    parts = _two_columns(part_file, lambda v, where: parse_label(v, 0, 2, where), "partition")
    aus: dict[str, tuple[int, ...]] = {}
    if (root / AU_FILE).is_file():
        aus = _two_columns(root / AU_FILE, _parse_aus, "action-unit label")
    missing_part = [n for n in labels if n not in parts]
    if missing_part:
        raise DataError(
            f"{len(missing_part)} images of {emo_file} have no line in {part_file} "
            f"(first: {missing_part[0]!r}); the two files must list the same images"
        )
    if not labels:
        raise DataError(f"{emo_file} lists no images")
    folder, aligned = _image_ref(root, next(iter(labels)))
    au_numbers = sorted(set().union(*aus.values())) if aus else []
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    targets: dict[str, tuple[int, ...]] = {}
    for name, label in labels.items():
        file = f"{name.rsplit('.', 1)[0]}_aligned.jpg" if aligned else name
        ref = str(folder / file)
        splits[_SPLIT[parts[name]]].append((ref, label))
        if name in aus:
            targets[ref] = tuple(int(a in aus[name]) for a in au_numbers)
    if not splits["train"]:
        raise DataError(f"{part_file} puts no image in the training partition (0)")
    return Manifest(
        root=root,
        format="rafce",
        class_names=CLASS_NAMES,
        splits={k: v for k, v in splits.items() if v},
        au_names=tuple(f"AU{a}" for a in au_numbers) if au_numbers else None,
        au_targets=targets or None,
    )
