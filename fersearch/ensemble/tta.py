"""Test-time augmentation: deterministic views of uint8 image arrays, and named view sets.

A view maps an (N, S, S, 3) uint8 batch to another (N, S, S, 3) uint8 batch of the same size
(a flip, or a crop resized back to S), so every member sees exactly the input size it was
trained at. A view set is a list of views whose softmax outputs are averaged. Finalize scores
every member on every view of the largest set once, on validation, and keeps a set only if it
beats no TTA there (ties keep "none": fewer views, same answer, faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidArgument, one_of


@dataclass(frozen=True)
class View:
    """Crop a square of ``scale`` times the side at ``anchor``, resize back, optionally flip."""

    name: str
    scale: float = 1.0
    anchor: str = "center"  # center, tl, tr, bl, br
    flip: bool = False


def _geometry() -> list[tuple[str, float, str]]:
    # Eight framings: the full image, two centre zooms, and four corners and the centre at 0.9.
    return [
        ("full", 1.0, "center"),
        ("c90", 0.9, "center"),
        ("tl90", 0.9, "tl"),
        ("tr90", 0.9, "tr"),
        ("bl90", 0.9, "bl"),
        ("br90", 0.9, "br"),
        ("c80", 0.8, "center"),
        ("c95", 0.95, "center"),
    ]


ALL_VIEWS: tuple[View, ...] = tuple(
    View(f"{name}{'_flip' if flip else ''}", scale, anchor, flip)
    for flip in (False, True)
    for name, scale, anchor in _geometry()
)
_INDEX = {v.name: i for i, v in enumerate(ALL_VIEWS)}

# Candidate sets, in order of cost; each is a subset of ALL_VIEWS (at most 16 views).
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "none": ("full",),
    "flip": ("full", "full_flip"),
    "five_crop": ("c90", "tl90", "tr90", "bl90", "br90"),
    "flip_five_crop": ("c90", "tl90", "tr90", "bl90", "br90")
    + ("c90_flip", "tl90_flip", "tr90_flip", "bl90_flip", "br90_flip"),
    "flip_multi_crop16": tuple(v.name for v in ALL_VIEWS),
}


def view_set(name: str) -> list[View]:
    if name not in VIEW_SETS:
        raise InvalidArgument(f"unknown TTA view set: {one_of(name, VIEW_SETS)}")
    return [ALL_VIEWS[_INDEX[v]] for v in VIEW_SETS[name]]


def view_indices(name: str) -> list[int]:
    """Positions of a set's views in ALL_VIEWS (the order of saved per-view predictions)."""
    view_set(name)
    return [_INDEX[v] for v in VIEW_SETS[name]]


def apply_view(images: np.ndarray, view: View) -> np.ndarray:
    """(N, S, S, 3V) uint8 -> the same shape; every view of a packed clip/context sample alike."""
    if images.ndim != 4 or images.shape[-1] % 3 or images.dtype != np.uint8:
        raise InvalidArgument(
            f"TTA views take (N, S, S, 3V) uint8 arrays (V = 1 for images); got {images.shape} {images.dtype}"
        )
    out = images
    n, h, w, _ = images.shape
    if view.scale < 1.0:
        ch, cw = max(1, round(h * view.scale)), max(1, round(w * view.scale))
        top = {"center": (h - ch) // 2, "tl": 0, "tr": 0, "bl": h - ch, "br": h - ch}[view.anchor]
        left = {"center": (w - cw) // 2, "tl": 0, "bl": 0, "tr": w - cw, "br": w - cw}[view.anchor]
        crop = torch.from_numpy(np.ascontiguousarray(out[:, top : top + ch, left : left + cw]))
        x = crop.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        out = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if view.flip:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)
