"""FER2013: one CSV of 48x48 grey images, ``emotion,pixels,Usage``.

Images live inside the CSV, so samples are referenced as ``fer2013.csv#<row>`` (0-based data
row) and decoded from their pixel strings by the cache. Usage Training / PublicTest /
PrivateTest become train / val / test, the split everyone reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import open_text, parse_label

CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
CSV_NAMES = ("fer2013.csv", "fer2013/fer2013.csv")
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
DESCRIPTION = "fer2013.csv with columns emotion,pixels,Usage"


def find_csv(root: Path) -> Path | None:
    for name in CSV_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def detect(root: Path) -> bool:
    # (A FERPlus folder holds fer2013.csv too: the registry tries FERPlus first.)
    return find_csv(root) is not None


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows without the pixel strings (kept small; the cache decodes pixels later)."""
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        for needed in ("emotion", "pixels", "Usage"):
            if needed not in header:
                raise DataError(f"{path}:1: header lacks column {needed!r}; got {header}")
        ie, iu = header.index("emotion"), header.index("Usage")
        rows = []
        for n, row in enumerate(reader, start=2):
            if row and len(row) <= max(ie, iu):
                raise DataError(
                    f"{path}:{n}: expected {len(header)} columns as in the header, got {len(row)}"
                )
            if row:
                rows.append({"emotion": row[ie], "Usage": row[iu], "line": str(n)})
        return rows


def read(root: Path) -> Manifest:
    path = find_csv(root)
    if path is None:
        raise DataError(f"no fer2013.csv under {str(root)!r} ({DESCRIPTION})")
    ref_base = str(path.relative_to(root))
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for i, row in enumerate(read_rows(path)):
        where = f"{path}:{row['line']}"
        label = parse_label(row["emotion"], 0, len(CLASS_NAMES) - 1, where)
        split = USAGE.get(row["Usage"].strip())
        if split is None:
            raise DataError(f"{where}: Usage {row['Usage']!r} is not one of {', '.join(USAGE)}")
        splits[split].append((f"{ref_base}#{i}", label))
    if not splits["train"]:
        raise DataError(f"{path} has no Training rows")
    return Manifest(
        root=root, format="fer2013", class_names=CLASS_NAMES, splits={k: v for k, v in splits.items() if v}
    )
