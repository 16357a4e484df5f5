"""RAF-DB compound: the basic layout (EmoLabel/list_patition_label.txt, Image/aligned/) with
labels 1..11 naming the compound classes below, in the official order. ``--format auto`` picks it
when the file uses at least three distinct labels of 8..11 (see ``rafdb.looks_compound``)."""

from __future__ import annotations

from pathlib import Path

from ..manifest import Manifest
from .rafdb import LABEL_FILE, looks_compound, read_partition

CLASS_NAMES = (
    "Happily Surprised",
    "Happily Disgusted",
    "Sadly Fearful",
    "Sadly Angry",
    "Sadly Surprised",
    "Sadly Disgusted",
    "Fearfully Angry",
    "Fearfully Surprised",
    "Angrily Surprised",
    "Angrily Disgusted",
    "Disgustedly Surprised",
)
DESCRIPTION = "EmoLabel/list_patition_label.txt (labels 1-11) with Image/aligned/*_aligned.jpg"


def detect(root: Path) -> bool:
    return (root / LABEL_FILE).is_file() and looks_compound(root)


def read(root: Path) -> Manifest:
    return read_partition(root, "rafdb_compound", CLASS_NAMES)


DESCRIPTION_ORIGINAL = "as rafdb_compound, with Image/original/*.jpg cropped by Annotation/boundingbox/"


def read_original(root: Path) -> Manifest:
    return read_partition(root, "rafdb_compound_original", CLASS_NAMES, original=True)
