"""Dataset readers, one module per official on-disk layout, behind one registry.

A reader is ``read(root) -> Manifest``; ``detect(root) -> bool`` says whether a directory looks
like its layout, so ``--format auto`` can pick one and say which. Detection tries the formats in
registration order, most specific first (FERPlus before FER2013, CAER-S before ImageFolder);
a format registered with ``auto=False`` is only used when named (AffectNet's 7-class mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ...errors import DataError
from ...registry import Registry
from ..imageio import source_file
from ..manifest import Manifest
from ..vocabulary import canonical_names
from . import affectnet, caers, fer2013, ferplus, imagefolder, raer, rafce, rafdb, rafdb_compound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Manifest]
    auto: bool = True  # False: never chosen by --format auto, only by name


_FORMATS = Registry("data format", error=DataError)


def register_format(fmt: Format) -> Format:
    return _FORMATS.register(fmt.name)(fmt)


def list_formats() -> list[str]:
    return _FORMATS.names()


def get_format(name: str) -> Format:
    return _FORMATS.get(name)


register_format(Format("ferplus", ferplus.DESCRIPTION, ferplus.detect, ferplus.read))
register_format(Format("fer2013", fer2013.DESCRIPTION, fer2013.detect, fer2013.read))
register_format(
    Format("rafdb_compound", rafdb_compound.DESCRIPTION, rafdb_compound.detect, rafdb_compound.read)
)
register_format(Format("rafdb", rafdb.DESCRIPTION, rafdb.detect, rafdb.read))
register_format(
    Format("rafdb_original", rafdb.DESCRIPTION_ORIGINAL, rafdb.detect, rafdb.read_original, auto=False)
)
register_format(
    Format(
        "rafdb_compound_original",
        rafdb_compound.DESCRIPTION_ORIGINAL,
        rafdb_compound.detect,
        rafdb_compound.read_original,
        auto=False,
    )
)
register_format(Format("rafce", rafce.DESCRIPTION, rafce.detect, rafce.read))
register_format(Format("affectnet", affectnet.DESCRIPTION, affectnet.detect, affectnet.read))
register_format(Format("affectnet7", affectnet.DESCRIPTION7, affectnet.detect, affectnet.read7, auto=False))
register_format(Format("raer", raer.DESCRIPTION, raer.detect, raer.read))
register_format(Format("caers", caers.DESCRIPTION, caers.detect, caers.read))
register_format(Format("imagefolder", imagefolder.DESCRIPTION, imagefolder.detect, imagefolder.read))


def detect_format(root: Path) -> str | None:
    """The name of the first layout that recognises ``root``, or None."""
    for fmt in _FORMATS.values():  # in registration order
        if fmt.auto and fmt.detect(root):
            return fmt.name
    return None


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
        return _checked(get_format(format).read(root))
    name = detect_format(root)
    if name is not None:
        log.info("%s: detected the %s layout (%s)", root, name, _FORMATS.get(name).description)
        return _checked(_FORMATS.get(name).read(root))
    seen = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]
    supported = "; ".join(f"{f.name}: {f.description}" for f in _FORMATS.values())
    raise DataError(
        f"{str(root)!r} is not a known dataset layout (it contains: {', '.join(seen) or 'nothing'}). "
        f"Supported layouts: {supported}. Name one with --format if detection is wrong"
    )


def _checked(manifest: Manifest) -> Manifest:
    return _one_name_per_emotion(_confined(manifest))


def _one_name_per_emotion(manifest: Manifest) -> Manifest:
    """Two classes that mean one emotion ("happy" and "Happiness" folders) cannot be told apart
    when a model is matched to the data by meaning (data/vocabulary.py)."""
    try:
        canonical_names(manifest.class_names)
    except ValueError as exc:
        raise DataError(
            f"{str(manifest.root)!r}: {exc}; one dataset may spell each emotion once: merge the two "
            f"classes or rename one"
        ) from None
    return manifest


def _confined(manifest: Manifest) -> Manifest:
    """Refuse a label file that names a file outside the dataset folder (an absolute path, a
    '..' step, a drive): a dataset is read from its own folder only. (A symbolic link inside the
    folder is the owner's choice and is followed.)"""
    for split, samples in manifest.splits.items():
        for ref, _ in samples:
            frames = manifest.clips[ref].frames if manifest.clips and ref in manifest.clips else ()
            for name in (source_file(ref), *frames):
                if _leaves_folder(name):
                    raise DataError(
                        f"{str(manifest.root)!r}: the {split} split lists {name!r}, which leads outside the "
                        f"dataset folder; its label files must name files inside it (relative paths, "
                        f"no '..')"
                    )
    return manifest


def _leaves_folder(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(PureWindowsPath(name).drive) or "\0" in name
