"""Every view of a sample packed into one uint8 image: clip frames and context crops side by side
along the channel axis.

A clip sample has T frames; a context dataset adds a body/scene crop per frame. Packed as
(H, W, 3V) with V = T frames first, then T context views (V = T without context), all views of a
sample go through one augmentation call (the same flip, shift, crop and colour change for every
frame and its context) and one Mixup/CutMix, and ``FERModel`` unpacks them from the channel count.
A plain image is the case V = 1, unchanged.
"""

from __future__ import annotations

import numpy as np


def num_views(images: np.ndarray, context: np.ndarray | None) -> int:
    frames = images.shape[1] if len(images.shape) == 5 else 1
    return frames * (2 if context is not None else 1)


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """(B, T, H, W, 3) -> (B, H, W, 3T), frame-major channels; (B, H, W, C) unchanged."""
    if arr.ndim == 4:
        return arr
    b, t, h, w, c = arr.shape
    return np.ascontiguousarray(arr.transpose(0, 2, 3, 1, 4)).reshape(b, h, w, t * c)


def pack(images: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """(B, [T,] H, W, 3) uint8 images [+ context of the same shape] -> (B, H, W, 3V) uint8."""
    face = _channels_last(np.asarray(images))
    if context is None:
        return face
    return np.concatenate([face, _channels_last(np.asarray(context))], axis=-1)


def packed_split(arrays, use_context: bool) -> np.ndarray:
    """A whole split packed at once (evaluation sets in finalize): plain image splits are
    returned as they are, clip and context splits are materialised as (N, H, W, 3V)."""
    context = arrays.context if use_context else None
    if arrays.images.ndim == 4 and context is None:
        return arrays.images
    return pack(arrays.images, context)


def split_views(sample: np.ndarray) -> list[np.ndarray]:
    """One packed (H, W, 3V) sample -> its V (H, W, 3) views."""
    return [sample[..., i : i + 3] for i in range(0, sample.shape[-1], 3)]
