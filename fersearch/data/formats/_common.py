"""Helpers every reader shares: label checks that name file and line, class-folder listing."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def parse_label(text: str, low: int, high: int, where: str) -> int:
    """An integer label in [low, high], or a DataError naming ``where`` (file:line)."""
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{where}: label {text!r} is not an integer (valid: {low}..{high})") from None
    if not low <= value <= high:
        raise DataError(f"{where}: label {value} is out of range {low}..{high}")
    return value


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a text label file with their 1-based line numbers."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


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
