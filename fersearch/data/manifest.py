"""Manifest: what a dataset reader returns, independent of the on-disk layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .vocabulary import canonical_names

# A face box in source-image pixels: (x, y, width, height).
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Clip:
    """One video clip of a context dataset (RAER-style): its frames, and where face and body are.

    ``frames`` are image paths relative to the manifest root, in time order; ``face_boxes`` has
    one box (or None where no face was found) per frame; ``body_box`` is the clip's body/context
    box, None meaning the whole frame.
    """

    frames: tuple[str, ...]
    face_boxes: tuple[Box | None, ...]
    body_box: Box | None = None


@dataclass
class Manifest:
    """A dataset as lists of (sample reference relative to root, 0-based label) per split.

    A sample reference is an image path, a ``file.csv#row`` pixel row (FER2013/FERPlus), or a
    clip folder (context datasets, described in ``clips``). The optional fields default to None
    so readers that have nothing to add, and callers that do not care, are unaffected.
    """

    root: Path
    format: str
    class_names: tuple[str, ...]
    splits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # Multi-label action-unit targets (RAF-CE): reference -> 0/1 per AU, in au_names order.
    au_names: tuple[str, ...] | None = None
    au_targets: dict[str, tuple[int, ...]] | None = None
    # Valence and arousal in [-1, 1] (AffectNet): reference -> (valence, arousal), NaN where
    # unlabelled. None when the dataset has no usable value at all.
    va_targets: dict[str, tuple[float, float]] | None = None
    # Face boxes in source pixels (AffectNet's CSV): the cache crops each image to its box.
    boxes: dict[str, Box] | None = None
    # Clips (RAER-style): reference -> frames and boxes; the cache crops a face and a context view.
    clips: dict[str, Clip] | None = None
    # Reader remarks worth showing the user (rows dropped by a labelling rule, and why).
    notes: list[str] = field(default_factory=list)
    # How a study decodes the samples (its DataConfig's crop policy and frames per clip); the
    # cache reads them from here so every caller of decode_split decodes the same way.
    crop: str = "face"
    frames: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def canonical_names(self) -> tuple[str, ...]:
        """The classes by meaning (data/vocabulary.py), in label order: FER2013's "Angry" is
        Anger; ``class_names`` keeps the dataset's own spelling for display."""
        return canonical_names(self.class_names)

    def counts(self, split: str) -> list[int]:
        out = [0] * self.num_classes
        for _, label in self.splits.get(split, []):
            out[label] += 1
        return out

    def au_matrix(self, split: str) -> np.ndarray | None:
        """(N, A) uint8 AU targets of a split in sample order, or None without AU labels."""
        if self.au_names is None or self.au_targets is None:
            return None
        zero = (0,) * len(self.au_names)
        rows = [self.au_targets.get(ref, zero) for ref, _ in self.splits.get(split, [])]
        return np.asarray(rows, dtype=np.uint8).reshape(-1, len(self.au_names))

    def va_matrix(self, split: str) -> np.ndarray | None:
        """(N, 2) float32 valence/arousal of a split in sample order (NaN: unlabelled), or None."""
        if self.va_targets is None:
            return None
        return va_rows(self.va_targets, [ref for ref, _ in self.splits.get(split, [])])

    def derive(self, splits: dict[str, list[tuple[str, int]]]) -> Manifest:
        """The same dataset with other splits (validation carving, k-fold), extras carried over."""
        return Manifest(
            root=self.root,
            format=self.format,
            class_names=self.class_names,
            splits=splits,
            au_names=self.au_names,
            au_targets=self.au_targets,
            va_targets=self.va_targets,
            boxes=self.boxes,
            clips=self.clips,
            notes=list(self.notes),
            crop=self.crop,
            frames=self.frames,
        )


def va_rows(targets: dict[str, tuple[float, float]], refs: list[str]) -> np.ndarray:
    """(N, 2) float32 valence/arousal for ``refs``; NaN for a reference without a value."""
    nan = (float("nan"), float("nan"))
    return np.asarray([targets.get(ref, nan) for ref in refs], np.float32).reshape(len(refs), 2)
