"""Training augmentation pipelines (albumentations) by name, with one searchable strength knob,
progressive strength over training phases. (Test-time augmentation views are finalize's:
``fersearch.ensemble.tta``.)

Pipelines work on uint8 RGB images of the cached size and return the same size: normalisation
(mean/std from the backbone's pretrained config) happens afterwards on the device, in
``train.augment.to_input``, for training and evaluation alike.

Strength scales every magnitude linearly; 1.0 is the documented recipe, 0 is (nearly) identity:

- ``basic``: horizontal flip, small affine (±5 % shift, ±5 % scale, ±10° rotation), ColorJitter
  (brightness, contrast, saturation 0.1, hue 0.05 at strength 1: seed 000's values).
- ``strong``: random resized crop, affine, brightness/contrast, hue/saturation, one of Gaussian
  noise / Gaussian blur / motion blur, coarse dropout (seed 004's albumentations list).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InvalidArgument, one_of
from .fast_basic import FastBasic, supports
from .views import split_views

# albumentations checks PyPI for a newer version on import; workers run offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PIPELINES = ("none", "basic", "strong")


@dataclass(frozen=True)
class BasicRecipe:
    """The ``basic`` recipe's numbers at strength 1 (seed 000's values), defined once: the
    albumentations pipeline below, its fast path (fast_basic.py, read from that pipeline) and the
    on-device version (train/augment.basic_on_device) all take them from here."""

    flip_p: float = 0.5
    shift: float = 0.05  # a fraction of the side, each way
    scale: float = 0.05
    rotate_deg: float = 10.0
    affine_p: float = 0.8
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.05  # a fraction of a turn
    jitter_p: float = 0.8


BASIC = BasicRecipe()


def build_pipeline(name: str, size: int, strength: float = 1.0, seed: int | None = None, views: int = 1):
    """An albumentations Compose for ``name`` at ``strength`` (>= 0) on size x size images.

    ``views`` > 1 adds targets ``view1`` .. ``view{V-1}`` that get exactly the same transform as
    ``image`` (the frames and context crops of one sample, see ``data.views``)."""
    import albumentations as A

    if name not in PIPELINES:
        raise InvalidArgument(f"unknown augmentation pipeline: {one_of(name, PIPELINES)}")
    if not strength >= 0:
        raise InvalidArgument(f"augmentation strength must be >= 0, got {strength!r}")
    s = float(strength)
    if name == "none":
        ops = []
    elif name == "basic":
        r = BASIC
        ops = [
            A.HorizontalFlip(p=r.flip_p),
            A.Affine(
                translate_percent=(-r.shift * s, r.shift * s),
                scale=(1 - r.scale * s, 1 + r.scale * s),
                rotate=(-r.rotate_deg * s, r.rotate_deg * s),
                border_mode=cv2.BORDER_REFLECT_101,
                p=min(1.0, r.affine_p * s),
            ),
            A.ColorJitter(
                brightness=r.brightness * s,
                contrast=r.contrast * s,
                saturation=r.saturation * s,
                hue=min(0.5, r.hue * s),
                p=min(1.0, r.jitter_p * s),
            ),
        ]
    else:  # strong
        ops = [
            A.RandomResizedCrop(
                size=(size, size), scale=(max(0.05, 1 - 0.3 * s), 1.0), ratio=(0.9, 1.1), p=min(1.0, 0.7 * s)
            ),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-0.08 * s, 0.08 * s),
                scale=(1 - 0.1 * s, 1 + 0.1 * s),
                rotate=(-15 * s, 15 * s),
                shear=(-5 * s, 5 * s),
                border_mode=cv2.BORDER_REFLECT_101,
                p=min(1.0, 0.7 * s),
            ),
            A.RandomBrightnessContrast(
                brightness_limit=0.25 * s, contrast_limit=0.25 * s, p=min(1.0, 0.7 * s)
            ),
            A.HueSaturationValue(
                hue_shift_limit=10 * s, sat_shift_limit=20 * s, val_shift_limit=10 * s, p=min(1.0, 0.5 * s)
            ),
            A.OneOf(
                [
                    A.GaussNoise(std_range=(0.02 * s, 0.08 * s)),
                    A.GaussianBlur(blur_limit=(3, 5)),
                    A.MotionBlur(blur_limit=(3, 7)),
                ],
                p=min(1.0, 0.3 * s),
            ),
            A.CoarseDropout(
                num_holes_range=(1, max(1, round(3 * s))),
                hole_height_range=(0.05, max(0.06, 0.2 * min(s, 2))),
                hole_width_range=(0.05, max(0.06, 0.2 * min(s, 2))),
                fill="random_uniform",
                p=min(1.0, 0.5 * s),
            ),
        ]
    if s == 0:
        ops = [op for op in ops if isinstance(op, A.HorizontalFlip)]
    extra = {f"view{i}": "image" for i in range(1, views)}
    return A.Compose(ops, seed=seed, additional_targets=extra or None)


def augment_packed(pipe, sample: np.ndarray) -> np.ndarray:
    """Apply ``pipe`` (built with ``views`` = the sample's view count) to one packed sample."""
    if sample.shape[-1] == 3:
        return pipe(image=sample)["image"]
    first, *rest = split_views(sample)
    out = pipe(image=first, **{f"view{i}": v for i, v in enumerate(rest, start=1)})
    return np.concatenate([out["image"], *(out[f"view{i}"] for i in range(1, len(rest) + 1))], axis=-1)


def batch_augmenter(name: str, size: int, strength: float = 1.0, views: int = 1):
    """``f(batch, seed)``: augments a (B, size, size, 3V) uint8 batch in place, every sample with
    its own draw from a generator seeded by ``seed``.

    ``basic`` runs through ``fast_basic.FastBasic``, built from (and checked against) the
    albumentations Compose of ``build_pipeline``: the same transforms, ranges and OpenCV calls,
    without albumentations' per-call overhead. Other pipelines call the Compose per sample."""
    pipe = build_pipeline(name, size, strength, views=views)
    if name == "basic" and supports(pipe):
        return FastBasic(pipe)

    def run(batch: np.ndarray, seed: int) -> np.ndarray:
        pipe.set_random_seed(seed)
        for i in range(len(batch)):
            batch[i] = augment_packed(pipe, batch[i])
        return batch

    return run


def progressive_strength(epoch: int, epochs: int, phases: int, start: float, end: float) -> float:
    """Strength for ``epoch``: training is cut into ``phases`` equal phases and the strength
    steps linearly from ``start`` (first phase) to ``end`` (last), as in seed 001's 5 phases."""
    if phases <= 1 or epochs <= 1:
        return float(end)
    phase = min(phases - 1, epoch * phases // epochs)
    return float(start + (end - start) * phase / (phases - 1))


def eval_transform(preprocess: dict):
    """The evaluation transform, from the backbone's data config: resize to its input size and
    normalise with its mean/std (for images that do not come from the cache)."""
    import albumentations as A

    size = int(preprocess["image_size"])
    return A.Compose(
        [
            A.Resize(size, size, interpolation=cv2.INTER_AREA),
            A.Normalize(mean=preprocess["mean"], std=preprocess["std"], max_pixel_value=255.0),
        ]
    )
