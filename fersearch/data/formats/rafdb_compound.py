"""RAF-DB compound: the basic layout (EmoLabel/list_patition_label.txt, Image/aligned/) with
labels 1..11 naming the compound classes below, in the official order."""

from __future__ import annotations

from pathlib import Path

from ..manifest import Manifest
from . import rafdb

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
    # A partition file using labels above 7 can only be the compound release.
    return (root / rafdb.LABEL_FILE).is_file() and rafdb.max_label(root) > len(rafdb.CLASS_NAMES)


def read(root: Path) -> Manifest:
    return rafdb.read_partition(root, "rafdb_compound", CLASS_NAMES)
