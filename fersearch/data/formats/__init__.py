"""Dataset readers, one module per official on-disk layout, behind one registry.

A reader is ``read(root) -> Manifest``; ``detect(root) -> bool`` says whether a directory looks
like its layout, so ``--format auto`` can pick one and say which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError, one_of
from ..manifest import Manifest
from . import rafdb


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Manifest]


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    _FORMATS[fmt.name] = fmt
    return fmt


def list_formats() -> list[str]:
    return sorted(_FORMATS)


register_format(Format("rafdb", rafdb.DESCRIPTION, rafdb.detect, rafdb.read))


def read_dataset(root: str | Path, format: str = "auto") -> Manifest:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(
            f"data directory {str(root)!r} does not exist; pass the folder you unpacked the "
            f"dataset into, or create a synthetic one with `fersearch synth --out {root}`"
        )
    if not root.is_dir():
        raise DataError(f"data path {str(root)!r} is a file, not a directory")
    if format != "auto":
        if format not in _FORMATS:
            raise DataError(f"unknown data format: {one_of(format, list_formats())}")
        return _FORMATS[format].read(root)
    for fmt in _FORMATS.values():
        if fmt.detect(root):
            return fmt.read(root)
    seen = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]
    supported = "; ".join(f"{f.name}: {f.description}" for f in _FORMATS.values())
    raise DataError(
        f"{str(root)!r} is not a known dataset layout (it contains: {', '.join(seen) or 'nothing'}). "
        f"Supported layouts: {supported}"
    )
