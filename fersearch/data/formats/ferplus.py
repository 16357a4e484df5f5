"""FERPlus: fer2013new.csv's ten vote counts per FER2013 image, joined row by row with fer2013.csv.

``fer2013new.csv`` columns: Usage, Image name, neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, NF. Labels follow the FERPlus authors' "majority" mode
(``majority_label``); rows with an empty image name (faces FERPlus removed) are dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from ..manifest import Manifest
from ._common import open_text
from .fer2013 import USAGE, find_csv, read_rows

CLASS_NAMES = ("Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt")
VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
VOTES_NAMES = ("fer2013new.csv", "FERPlus/fer2013new.csv")
DESCRIPTION = "fer2013new.csv (vote counts) beside fer2013.csv (pixels)"


def find_votes(root: Path) -> Path | None:
    for name in VOTES_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def detect(root: Path) -> bool:
    return find_votes(root) is not None and find_csv(root) is not None


def majority_label(votes: Sequence[float]) -> int | None:
    """The FERPlus majority rule over the ten vote counts; None means the image is dropped.

    As in the authors' reference code: a class with a single vote is treated as noise and
    zeroed; the top class must then hold more than half of the remaining votes; a top class of
    'unknown' or 'NF' (not a face), a tie-free majority failing, or no votes left drops it.
    Ties for the top go to the first column, as numpy's argmax does there.
    """
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    top = max(kept)
    if total <= 0 or top <= 0.5 * total:
        return None
    idx = kept.index(top)
    return idx if idx < len(CLASS_NAMES) else None


def read(root: Path) -> Manifest:
    votes_path, pixels_path = find_votes(root), find_csv(root)
    if votes_path is None or pixels_path is None:
        raise DataError(f"FERPlus needs both files under {str(root)!r}: {DESCRIPTION}")
    fer_rows = read_rows(pixels_path)
    ref_base = str(pixels_path.relative_to(root))
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    no_name = no_majority = 0
    with open_text(votes_path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in header]
        if missing:
            raise DataError(f"{votes_path}:1: header lacks column(s) {', '.join(missing)}; got {header}")
        iu, iname = header.index("Usage"), header.index("Image name")
        ivotes = [header.index(c) for c in VOTE_COLUMNS]
        rows = [(n, row) for n, row in enumerate(reader, start=2) if row]
    if len(rows) != len(fer_rows):
        raise DataError(
            f"{votes_path} has {len(rows)} rows but {pixels_path} has {len(fer_rows)}; FERPlus is "
            f"joined row by row, so both must be the unmodified official files"
        )
    for i, (lineno, row) in enumerate(rows):
        where = f"{votes_path}:{lineno}"
        if len(row) <= max(iu, iname, *ivotes):
            raise DataError(f"{where}: expected {len(header)} columns as in the header, got {len(row)}")
        if not row[iname].strip():
            no_name += 1
            continue
        try:
            votes = [float(row[j]) for j in ivotes]
        except (ValueError, IndexError):
            raise DataError(f"{where}: vote counts must be numbers, got {row[2:]}") from None
        if any(v < 0 for v in votes):
            raise DataError(f"{where}: negative vote count in {row[2:]}")
        label = majority_label(votes)
        if label is None:
            no_majority += 1
            continue
        split = USAGE.get(row[iu].strip())
        if split is None:
            raise DataError(f"{where}: Usage {row[iu]!r} is not one of {', '.join(USAGE)}")
        splits[split].append((f"{ref_base}#{i}", label))
    notes = [
        f"dropped {no_name} rows with an empty image name",
        f"dropped {no_majority} images without a FERPlus majority (or unknown / not a face)",
    ]
    if not splits["train"]:
        raise DataError(f"{votes_path} leaves no Training image after the majority rule")
    return Manifest(
        root=root,
        format="ferplus",
        class_names=CLASS_NAMES,
        splits={k: v for k, v in splits.items() if v},
        notes=notes,
    )
