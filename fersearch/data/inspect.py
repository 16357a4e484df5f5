"""What `fersearch data inspect` reports: layout, classes, counts, imbalance, sizes, bad files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .formats import get_format, read_dataset
from .imageio import Unreadable, image_size, open_rgb
from .manifest import Manifest


@dataclass
class Inspection:
    root: Path
    format: str
    description: str
    class_names: tuple[str, ...]
    counts: dict[str, list[int]]  # split -> per-class counts
    imbalance: dict[str, float | None]  # split -> largest / smallest non-empty class
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    bad: dict[str, str] = field(default_factory=dict)  # reference -> missing / not an image / ...
    checked: int = 0
    au_names: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(c) for c in self.counts.values())


def imbalance_ratio(counts: list[int]) -> float | None:
    nonzero = [c for c in counts if c > 0]
    return max(nonzero) / min(nonzero) if nonzero else None


def _files(manifest: Manifest) -> list[str]:
    """Every file a sample needs, once (clip frames included; pixel rows are their own file)."""
    refs: list[str] = []
    for items in manifest.splits.values():
        for ref, _ in items:
            if manifest.clips is not None and ref in manifest.clips:
                refs.extend(manifest.clips[ref].frames or [ref + "/"])
            else:
                refs.append(ref)
    return list(dict.fromkeys(refs))


def _check(root: Path, ref: str) -> tuple[str, tuple[int, int] | None, str | None]:
    """Open and fully decode one file (at reduced JPEG scale: truncation still shows), with the
    same code and limits as the cache, so a file listed as readable here is one it can decode."""
    if ref.endswith("/"):
        return ref, None, "missing (clip has no frames)"
    try:
        if "#" in ref:
            img = open_rgb(root, ref)
            return ref, (img.shape[1], img.shape[0]), None
        size = image_size(root / ref)
        open_rgb(root, ref, min_side=32)
        return ref, size, None
    except Unreadable as exc:
        return ref, None, str(exc)


def inspect_dataset(
    root: str | Path, format: str = "auto", progress: Callable[[int, int], None] | None = None
) -> Inspection:
    manifest = read_dataset(root, format)
    counts = {split: manifest.counts(split) for split in manifest.splits}
    report = Inspection(
        root=manifest.root,
        format=manifest.format,
        description=get_format(manifest.format).description,
        class_names=manifest.class_names,
        counts=counts,
        imbalance={split: imbalance_ratio(c) for split, c in counts.items()},
        au_names=manifest.au_names,
        notes=list(manifest.notes),
    )
    files = _files(manifest)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (ref, size, problem) in enumerate(pool.map(lambda r: _check(manifest.root, r), files)):
            if problem is not None:
                report.bad[ref] = problem
            elif size is not None:
                report.sizes[size] += 1
            if progress is not None and (i % 64 == 0 or i == len(files) - 1):
                progress(i + 1, len(files))
    report.checked = len(files)
    return report
