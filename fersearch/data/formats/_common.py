"""Helpers every reader shares: label files read as UTF-8 with errors that name file, line and
byte; repeated lines checked; label checks that name file and line; class-folder listing."""

from __future__ import annotations

import codecs
import logging
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ...errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_SHOWN = 5  # repeated lines named in a warning


def parse_label(text: str, low: int, high: int, where: str) -> int:
    """An integer label in [low, high], or a DataError naming ``where`` (file:line)."""
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{where}: label {text!r} is not an integer (valid: {low}..{high})") from None
    if not low <= value <= high:
        raise DataError(f"{where}: label {value} is out of range {low}..{high}")
    return value


def read_text(path: Path) -> str:
    """A whole label file as text: UTF-8, with or without a byte-order mark. Anything else (a
    Latin-1 or UTF-16 export, a binary file) is a DataError naming the line and byte offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start
        raise _not_utf8(path, at, data[at], data.count(b"\n", 0, at)) from None


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text file opened for ``csv`` (BOM dropped, newlines untranslated), streamed. A byte
    that is not UTF-8, wherever reading meets it, is a DataError naming its line and offset."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with fh:
        try:
            yield fh
        except UnicodeDecodeError:
            raise _locate_not_utf8(path) from None


def _locate_not_utf8(path: Path) -> DataError:
    """The first byte of ``path`` that is not UTF-8, found in 1 MB chunks (the file can be large)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = newlines = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if offset == 0 and chunk.startswith(codecs.BOM_UTF8):
                chunk, offset = chunk[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                pending = len(exc.object) - len(chunk)  # bytes of a sequence begun in the last chunk
                at = exc.start - pending
                return _not_utf8(
                    path, offset + at, exc.object[exc.start], newlines + chunk.count(b"\n", 0, max(at, 0))
                )
            if not chunk:
                return DataError(f"{path}: not UTF-8 text; re-save it as UTF-8")
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def _not_utf8(path: Path, offset: int, byte: int, newlines: int) -> DataError:
    return DataError(
        f"{path}:{newlines + 1}: byte {offset} (0x{byte:02x}) is not UTF-8; label files must be UTF-8 "
        f"text: re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW` for a Latin-1 file)"
    )


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a text label file with their 1-based line numbers."""
    text = read_text(path)
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def unique(
    entries: Iterable[tuple[Hashable, Any, str]], what: str = "label"
) -> list[tuple[Hashable, Any, str]]:
    """``(key, value, where)`` entries with each key once, in order (``where``: "file:line").

    A key listed again with the same value is dropped, with one warning for them all; listed
    again with a different value it is a DataError naming both lines: an image with two labels
    (or two splits) would be trained on twice, or land in validation as well as train.
    """
    first: dict[Hashable, tuple[Any, str]] = {}
    kept, repeats = [], []
    for key, value, where in entries:
        seen = first.get(key)
        if seen is None:
            first[key] = (value, where)
            kept.append((key, value, where))
        elif seen[0] == value:
            repeats.append(f"{where} repeats {seen[1]}")
        else:
            raise DataError(
                f"{seen[1]} and {where} both list {key!r}, with different {what}s ({seen[0]} and "
                f"{value}); each image may be listed once: delete or correct one of the two lines"
            )
    if repeats:
        log.warning(
            "dropped %d repeated line(s) listing an image again with the same %s: %s%s",
            len(repeats),
            what,
            "; ".join(repeats[:_SHOWN]),
            " ..." if len(repeats) > _SHOWN else "",
        )
    return kept


def class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_class_folders(root: Path, split: str, class_names: tuple[str, ...]) -> list[tuple[str, int]]:
    """(relpath, label) for every image under ``root/split/<class>/``; an unknown class folder is
    an error naming it, since its images would otherwise be silently ignored."""
    split_dir = root / split
    index = {name: i for i, name in enumerate(class_names)}
    items: list[tuple[str, int]] = []
    for name in class_dirs(split_dir):
        if name not in index:
            raise DataError(
                f"{str(split_dir / name)!r} is a class folder that {split}/ has but the training "
                f"classes do not ({', '.join(class_names)}); rename or remove it"
            )
        for path in sorted((split_dir / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                items.append((str(path.relative_to(root)), index[name]))
    return items
