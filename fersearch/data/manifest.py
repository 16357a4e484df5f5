"""Manifest: what a dataset reader returns, independent of the on-disk layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Manifest:
    """A dataset as lists of (image path relative to root, 0-based label) per split."""

    root: Path
    format: str
    class_names: tuple[str, ...]
    splits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self, split: str) -> list[int]:
        out = [0] * self.num_classes
        for _, label in self.splits.get(split, []):
            out[label] += 1
        return out
