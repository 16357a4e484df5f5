"""Procedural synthetic facial-expression dataset, written in RAF-DB basic's official layout.

Faces are drawn with OpenCV from a few dozen shapes. Expressions come from FACS action units
(AUs): each emotion activates its prototypical AUs (Ekman & Friesen's EMFACS combinations) at a
per-image intensity, so weak expressions sit close to neutral and neighbouring emotions share
AUs (Fear/Surprise share 1+2+5+26, Sadness/Neutral differ by a few pixels at low intensity).
Identity, pose, lighting, occlusion and camera nuisances are deliberately larger than a weak
expression, so a model must learn the AU geometry rather than a shortcut.

Layout written under ``out`` (same as the real RAF-DB basic release)::

    EmoLabel/list_patition_label.txt    train_00001.jpg 5 / test_0001.jpg 3  (labels 1..7)
    EmoLabel/au_intensities.csv          image,label,<AU_NAMES>,intensity
    Image/aligned/train_00001_aligned.jpg
    synthetic.json                       generator parameters (marks the folder as synthetic)
    preview.png                          contact sheet, one row per class (when asked)

Every image is rendered from its own generator seeded by (seed, split, index), so output is
byte-identical for a seed whatever the order in which images are produced.

``difficulty`` (``Difficulty``, ``DIFFICULTIES``) scales the expression against the nuisances:
``standard`` (the default) is this generator's original output, ``easy`` gives tiny models on a
CPU something they can learn in a few epochs (so that tuning shows), ``hard`` is harsher still.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import InvalidArgument

GENERATOR = "fersearch.data.synthetic"
GENERATOR_VERSION = 1

EMOTIONS = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAFDB_TRAIN_COUNTS = (1290, 281, 717, 4772, 1982, 705, 2524)
RAFDB_TEST_COUNTS = (329, 74, 160, 1185, 478, 162, 680)
AU_NAMES = (
    "AU1_inner_brow_raise",
    "AU2_outer_brow_raise",
    "AU4_brow_lower",
    "AU5_upper_lid_raise",
    "AU6_cheek_raise",
    "AU7_lid_tighten",
    "AU9_nose_wrinkle",
    "AU10_upper_lip_raise",
    "AU12_lip_corner_pull",
    "AU15_lip_corner_depress",
    "AU20_lip_stretch",
    "AU23_lip_tighten",
    "AU25_lips_part",
    "AU26_jaw_drop",
)
_AU_SHORT = tuple(name.split("_")[0] for name in AU_NAMES)

SPLITS = ("train", "test")
_SPLIT_ID = {"train": 1, "test": 2}
_DIGITS = {"train": 5, "test": 4}  # RAF-DB numbers train_00001 and test_0001
MIN_PER_CLASS = 2
MIN_IMAGES = 2 * MIN_PER_CLASS * len(EMOTIONS)
MIN_SIZE, MAX_SIZE = 32, 1024
LABEL_FILE = "EmoLabel/list_patition_label.txt"  # sic: the official file name
AU_FILE = "EmoLabel/au_intensities.csv"
IMAGE_DIR = "Image/aligned"
MARKER = "synthetic.json"
PREVIEW = "preview.png"

# Stream tags keep the per-image generators independent (SeedSequence pads short entropy with
# zeros, so every key has the same length and a non-zero tag).
_ORDER, _FACE = 1, 2

# Emotion -> {AU: (weight, probability present)}. The first AU is the defining one and is always
# present; the others appear with their probability, as in real (non-posed) expressions.
_PROTOTYPES: dict[str, dict[str, tuple[float, float]]] = {
    "Surprise": {
        "AU1": (1.0, 1.0),
        "AU2": (1.0, 0.95),
        "AU5": (0.8, 0.85),
        "AU25": (0.7, 0.9),
        "AU26": (0.9, 0.85),
    },
    "Fear": {
        "AU5": (1.0, 1.0),
        "AU1": (0.9, 0.95),
        "AU2": (0.6, 0.8),
        "AU4": (0.6, 0.9),
        "AU20": (0.9, 0.9),
        "AU25": (0.7, 0.9),
        "AU26": (0.5, 0.7),
    },
    "Disgust": {
        "AU9": (1.0, 1.0),
        "AU10": (0.9, 0.9),
        "AU15": (0.5, 0.6),
        "AU4": (0.4, 0.5),
        "AU7": (0.3, 0.4),
        "AU25": (0.3, 0.4),
    },
    "Happiness": {"AU12": (1.0, 1.0), "AU6": (0.9, 0.9), "AU25": (0.7, 0.7), "AU26": (0.3, 0.3)},
    "Sadness": {"AU15": (0.9, 1.0), "AU1": (0.9, 0.95), "AU4": (0.7, 0.9)},
    "Anger": {
        "AU4": (1.0, 1.0),
        "AU7": (0.9, 0.9),
        "AU23": (0.9, 0.8),
        "AU5": (0.6, 0.6),
        "AU10": (0.3, 0.3),
        "AU25": (0.4, 0.3),
        "AU26": (0.3, 0.25),
    },
    "Neutral": {},
}
_AU_NOISE_P, _AU_NOISE_MAX = 0.3, 0.18  # unrelated AUs twitch a little, neutral faces included


@dataclass(frozen=True)
class Difficulty:
    """How far the expression stands out from the nuisances (``generate(difficulty=...)``).

    ``standard`` is the generator as it always was: with it every draw and every pixel is the
    same as before the knob existed. ``easy`` is for CPU-scale experiments (tiny models, few
    epochs, 32-64 px), where standard faces leave every recipe near chance and tuning cannot
    show: strong, exaggerated expressions, little pose, no occluders, a clean camera.
    """

    intensity_beta: tuple[float, float] = (1.8, 1.2)  # expression intensity ~ Beta(a, b) ...
    intensity_floor: float = 0.0  # ... mapped onto [floor, 1]
    au_gain: float = 1.0  # drawn AU displacement x gain (the AU labels stay in [0, 1])
    twitch: float = 1.0  # scales the unrelated-AU noise
    pose: float = 1.0  # scales face shift, roll and yaw
    accessories: bool = True  # glasses and fringes over the brows
    occlusion_p: float = 0.15  # sunglasses, hands, masks, objects
    clutter: int = 3  # at most this many background objects
    lighting: float = 1.0  # scales the lighting ramp across the face
    degrade: float = 1.0  # scales the grey-scale, low-resolution and blur probabilities
    noise: float = 8.0  # sensor noise, max standard deviation in grey levels


DIFFICULTIES = {
    "easy": Difficulty(
        intensity_beta=(3.0, 1.0),
        intensity_floor=0.7,
        au_gain=1.5,  # at most 1.6: AU20 > 1.67 would invert the mouth-opening profile
        twitch=0.5,
        pose=0.3,
        accessories=False,
        occlusion_p=0.0,
        clutter=0,
        lighting=0.3,
        degrade=0.0,
        noise=2.0,
    ),
    "standard": Difficulty(),
    "hard": Difficulty(
        intensity_beta=(1.2, 1.8),
        pose=1.4,
        occlusion_p=0.3,
        clutter=5,
        lighting=1.3,
        degrade=1.5,
        noise=12.0,
    ),
}
STANDARD = DIFFICULTIES["standard"]

_SKIN = np.array(
    [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 95), (141, 85, 54), (90, 56, 37)],
    float,
)
_HAIR = np.array(
    [(25, 20, 20), (60, 40, 30), (105, 70, 45), (200, 165, 105), (150, 70, 35), (150, 150, 150)],
    float,
)
_IRIS = np.array([(60, 40, 25), (100, 70, 40), (70, 110, 150), (80, 110, 70), (40, 30, 25)], float)
_HAIR_STYLES = ("bald", "short", "long", "bangs", "side")


@dataclass
class SynthSummary:
    root: Path
    counts: dict[str, list[int]]  # split -> per-class counts, class order = EMOTIONS
    size: int
    seed: int
    preview: Path | None


# --------------------------------------------------------------------------------------------
# Split sizes


def split_counts(n: int | None) -> dict[str, list[int]]:
    """Per-class image counts for each split: RAF-DB's, or scaled to ``n`` images in total."""
    if n is None:
        return {"train": list(RAFDB_TRAIN_COUNTS), "test": list(RAFDB_TEST_COUNTS)}
    full = sum(RAFDB_TRAIN_COUNTS) + sum(RAFDB_TEST_COUNTS)
    n_test = max(MIN_PER_CLASS * len(EMOTIONS), math.floor(n * sum(RAFDB_TEST_COUNTS) / full + 0.5))
    return {
        "train": _largest_remainder(RAFDB_TRAIN_COUNTS, n - n_test),
        "test": _largest_remainder(RAFDB_TEST_COUNTS, n_test),
    }


def _largest_remainder(base: tuple[int, ...], total: int) -> list[int]:
    """Scale ``base`` to sum exactly to ``total`` with at least MIN_PER_CLASS per class.

    Classes whose share falls below the floor are pinned to it and the rest is shared out
    proportionally among the others (repeated until stable), then rounded by largest remainder.
    """
    base_arr = np.asarray(base, float)
    pinned = np.zeros(len(base), bool)
    while True:
        free = total - MIN_PER_CLASS * pinned.sum()
        quota = np.where(pinned, MIN_PER_CLASS, base_arr * free / base_arr[~pinned].sum())
        low = ~pinned & (quota < MIN_PER_CLASS)
        if not low.any():
            break
        pinned |= low
    counts = np.floor(quota).astype(int)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist()


def _assign_labels(seed: int, split: str, counts: list[int], label_noise: float):
    """Shuffled true labels for a split and the labels written to disk after label noise.

    Noisy labels are a derangement of the true labels of a random subset, so each flipped label
    differs from the truth while the per-class counts on disk stay exactly ``counts``. (Sorted
    by class and rotated by the largest class's share, which is a derangement whenever no class
    holds more than half the subset; otherwise a few keep their label. A split needs
    ``label_noise * size >= 1.5`` for any flip at all.)
    """
    rng = np.random.default_rng([seed, _SPLIT_ID[split], _ORDER, 1])
    true = rng.permutation(np.repeat(np.arange(len(EMOTIONS)), counts))
    noisy = true.copy()
    k = int(math.floor(label_noise * len(true) + 0.5))
    if k >= 2:
        chosen = rng.choice(len(true), size=k, replace=False)
        chosen = chosen[np.argsort(true[chosen], kind="stable")]
        shift = int(np.bincount(true[chosen]).max())  # rotate by the largest class run
        noisy[chosen] = np.roll(true[chosen], shift)
    return true, noisy


# --------------------------------------------------------------------------------------------
# Sampling: identity and expression

# Face geometry per identity, drawn uniformly in [low, high]. Units: u in face half-widths,
# v in face half-heights (see _Painter). Ranges are wide on purpose: identity must vary more
# than a weak expression does.
_SHAPE = {
    "aspect": (0.68, 0.84),  # face half-width / half-height
    "taper": (0.1, 0.35),  # jaw narrowing
    "chin": (0.95, 1.05),  # chin length factor
    "eye_sep": (0.34, 0.44),
    "eye_w": (0.16, 0.22),
    "eye_h": (0.05, 0.075),  # upper lid height above the eye line
    "eye_lo": (0.03, 0.045),  # lower lid depth
    "eye_v": (-0.17, -0.1),
    "tilt": (-0.015, 0.025),  # outer eye corner higher (canthal tilt)
    "crease": (0.03, 0.06),
    "brow_v": (-0.36, -0.29),
    "brow_in": (0.1, 0.16),
    "brow_th": (0.03, 0.065),
    "arch": (0.01, 0.045),
    "nose_w": (0.12, 0.18),
    "nose_v": (0.2, 0.28),
    "mouth_v": (0.52, 0.6),
    "mouth_w": (0.24, 0.32),
    "lip_u": (0.03, 0.06),
    "lip_l": (0.04, 0.075),
    "rest_curve": (-0.03, 0.03),  # resting mouth corners: some neutral faces look sad or happy
    "age": (0.0, 1.0),  # depth of the resting nasolabial folds
}
_SHAPE_LOW = np.array([lo for lo, _ in _SHAPE.values()])
_SHAPE_SPAN = np.array([hi - lo for lo, hi in _SHAPE.values()])
_STYLE_CDF = np.cumsum([0.1, 0.3, 0.3, 0.15, 0.15])  # probabilities of _HAIR_STYLES


RGB = tuple[float, float, float]


@dataclass
class _Identity:
    skin: RGB
    shade: RGB
    lip: RGB
    hair: RGB
    brow: RGB
    iris: RGB
    clothes: RGB
    style: str
    beard: bool
    glasses: bool
    aspect: float
    taper: float
    chin: float
    eye_sep: float
    eye_w: float
    eye_h: float
    eye_lo: float
    eye_v: float
    tilt: float
    crease: float
    brow_v: float
    brow_in: float
    brow_th: float
    arch: float
    nose_w: float
    nose_v: float
    mouth_v: float
    mouth_w: float
    lip_u: float
    lip_l: float
    rest_curve: float
    age: float


def _mix(a, b, t: float) -> RGB:
    """Blend RGB colours a -> b. Colours are plain tuples: numpy costs more at this size."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _scale(c, k: float) -> RGB:
    return (c[0] * k, c[1] * k, c[2] * k)


def _rgb(c: np.ndarray) -> RGB:
    r, g, b = c.tolist()
    return (min(max(r, 0.0), 255.0), min(max(g, 0.0), 255.0), min(max(b, 0.0), 255.0))


def _sample_identity(rng, d: Difficulty = STANDARD) -> _Identity:
    # Few big draws instead of many scalar ones: rng calls dominate the per-image cost.
    shape = dict(zip(_SHAPE, (_SHAPE_LOW + _SHAPE_SPAN * rng.random(len(_SHAPE))).tolist()))
    r = rng.random(8)
    jitter = rng.standard_normal((4, 3))
    t = r[0] * (len(_SKIN) - 1)  # a point along the skin-tone palette
    i = min(int(t), len(_SKIN) - 2)
    skin = _SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (t - i) + 6 * jitter[0]
    hair = _HAIR[int(r[1] * len(_HAIR))] * (0.8 + 0.4 * r[2]) + 8 * jitter[1]
    style = _HAIR_STYLES[int(np.searchsorted(_STYLE_CDF, r[5] * _STYLE_CDF[-1]))]
    if not d.accessories and style == "bangs":
        style = "short"
    return _Identity(
        skin=_rgb(skin),
        shade=_rgb(skin * (0.78, 0.7, 0.68)),
        lip=_rgb(skin * (0.9, 0.6, 0.6) + 8 * jitter[2]),
        hair=_rgb(hair),
        brow=_rgb(np.minimum(hair, 140) * (0.6 + 0.3 * r[3])),
        iris=_rgb(_IRIS[int(r[4] * len(_IRIS))] + 10 * jitter[3]),
        clothes=_rgb(rng.uniform(20, 235, 3)),
        style=style,
        beard=bool(r[6] < 0.08),
        glasses=bool(d.accessories and r[7] < 0.12),
        **shape,
    )


def _sample_expression(rng, label: int, d: Difficulty = STANDARD) -> tuple[np.ndarray, float]:
    """AU intensities (0..1, order AU_NAMES) and the global expression intensity."""
    au = np.zeros(len(AU_NAMES))
    proto = _PROTOTYPES[EMOTIONS[label]]
    intensity = 0.0
    if proto:
        # Skewed towards clear expressions but with a real tail of weak, ambiguous ones.
        # (floor 0: floor + (1 - floor) * x == x exactly, so standard draws are unchanged)
        x = float(rng.beta(*d.intensity_beta))
        intensity = min(max(d.intensity_floor + (1 - d.intensity_floor) * x, 0.03), 1.0)
        present, jitter = rng.random(len(proto)), rng.uniform(0.7, 1.2, len(proto))
        for i, (name, (weight, p)) in enumerate(proto.items()):
            if i == 0 or present[i] < p:
                au[_AU_SHORT.index(name)] = intensity * weight * jitter[i]
    twitch = rng.random(len(AU_NAMES)) < _AU_NOISE_P
    au += twitch * rng.uniform(0, _AU_NOISE_MAX * d.twitch, len(AU_NAMES))
    return np.clip(au, 0, 1), intensity


# --------------------------------------------------------------------------------------------
# Painter: face coordinates -> pixels, batched


def _ring(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


_RING16 = _ring(16)
_RING20 = _ring(20)
_RING40 = _ring(40)
_UPPER_HALF = np.linspace(np.pi, 2 * np.pi, 20)  # angles over the top of the head
_FOLD_S = np.linspace(0, 1, 8)[:, None]
_FOREHEAD_X = np.linspace(-1, 1, 9)
_NOSE_WING = (np.cos(np.linspace(-1.6, 1.6, 9)), np.sin(np.linspace(-1.6, 1.6, 9)))
_HAIRLINE_X = np.linspace(0.97, -0.97, 15)  # right to left, closing the hair outline

# Curve profiles are fixed; only their scalar weights vary per image (small numpy ops are the
# cost here, so shapes are precomputed and combined with one matrix product).
_EYE_X = np.linspace(-1, 1, 15)  # along the eye: -1 inner corner, +1 outer corner


def _lid_profiles(x):
    return (1 - x**2) ** 0.8 * (1 - 0.15 * x), (1 - x**2) ** 0.9


_EYE_UP, _EYE_LO = _lid_profiles(_EYE_X)
_BROW_S = np.linspace(0, 1, 12)  # along the brow: 0 inner end, 1 outer end
_BROW_BASIS = np.stack(
    [
        np.ones_like(_BROW_S),
        np.sin(np.pi * np.minimum(_BROW_S * 1.1, 1)),  # arch
        (1 - _BROW_S) ** 1.5,  # inner end (AU1)
        _BROW_S**1.2,  # outer end (AU2)
        (1 - _BROW_S) ** 2,  # inner end, knitting (AU4)
        1 - _BROW_S,  # inner half (AU9)
    ]
)
_BROW_TAPER = 1.15 - 0.6 * _BROW_S
_MOUTH_X = np.linspace(-1, 1, 21)  # along the mouth: corners at -1 and +1
_MOUTH_AX = np.abs(_MOUTH_X)
_MOUTH_PROFILE = (1 - _MOUTH_X**2) ** 0.45
_CUPID_BOW = np.exp(-(((_MOUTH_AX - 0.3) / 0.18) ** 2)) - 0.6 * np.exp(-((_MOUTH_X / 0.1) ** 2))


class _Painter:
    """Draws polygons given in face coordinates.

    u runs across the face (-1..1 cheek to cheek, viewer's left to right), v runs down (-1 crown,
    +1 chin). Yaw wraps u around a cylinder so features on the far side bunch up; z (depth) lets
    the nose swing further than the cheeks. Roll, scale and shift are one affine map.
    Shapes are queued and transformed in one numpy pass by ``flush`` (per-shape numpy calls
    would cost more than the drawing itself).
    """

    RADIUS = 1.35  # cylinder radius in u units; slightly wider than the face

    def __init__(self, img, cx, cy, half_w, half_h, roll_deg, yaw):
        self.img = img
        self.unit = img.shape[0] / 100.0  # line widths are given for a 100 px image
        self.hw, self.hh = half_w, half_h
        self.rot = complex(math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg)))
        self.centre = complex(cx, cy)
        self.yaw = yaw
        self.yaw_shift = self.RADIUS * math.sin(yaw) * 0.65  # keep the head roughly centred
        self._ops: list[tuple] = []

    def fill(self, u, v, colour, z=0.0):
        self._ops.append((u, v, z, colour, 0, True))

    def stroke(self, u, v, colour, width=1.0, z=0.0, closed=False):
        self._ops.append((u, v, z, colour, max(1, int(round(width * self.unit))), closed))

    def ellipse(self, cu, cv, ru, rv, colour, z=0.0):
        self.fill(cu + ru * _RING16[0], cv + rv * _RING16[1], colour, z)

    def circle_r(self, r_px: float) -> tuple[float, float]:
        """Radii in (u, v) units of a circle r_px pixels wide (u and v units differ)."""
        return r_px / self.hw, r_px / self.hh

    def px(self, u, v, z) -> np.ndarray:
        """Pixel positions as complex numbers x + iy (rotation is then one multiplication)."""
        r = self.RADIUS
        uc = np.minimum(np.maximum(u, -r), r)
        x = r * np.sin(np.arcsin(uc / r) + self.yaw) + (u - uc) + z * math.sin(self.yaw)
        return ((x - self.yaw_shift) * self.hw + 1j * self.hh * v) * self.rot + self.centre

    def flush(self):
        ops = self._ops
        if not ops:
            return
        lens = [len(op[0]) for op in ops]
        u = np.concatenate([op[0] for op in ops], dtype=float)
        v = np.concatenate([op[1] for op in ops], dtype=float)
        z = np.repeat([op[2] for op in ops], lens)
        xy = self.px(u, v, z).view(np.float64)  # interleaved x, y
        pts = np.rint(xy * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits
        start = 0
        for (_, _, _, colour, width, closed), n in zip(ops, lens):
            poly = [pts[start : start + n]]
            start += n
            if width == 0:
                cv2.fillPoly(self.img, poly, colour, cv2.LINE_AA, 4)
            else:
                cv2.polylines(self.img, poly, closed, colour, width, cv2.LINE_AA, 4)
        ops.clear()


# --------------------------------------------------------------------------------------------
# Drawing: background, body, head, features (canvas is RGB)


def _background(rng, size: int, d: Difficulty = STANDARD) -> np.ndarray:
    # A smooth 2x2 colour field upsampled: a gradient at the cost of one resize. Pulled half
    # way to grey, as indoor and outdoor backgrounds are rarely saturated.
    base = rng.uniform(20, 235, 3)
    corners = 0.5 * (base + base.mean()) + rng.normal(0, 35, (2, 2, 3))
    img = cv2.resize(np.minimum(np.maximum(corners, 0), 255).astype(np.uint8), (size, size))
    for _ in range(int(rng.integers(0, d.clutter + 1))):  # clutter: doors, posters, other people
        (x1, y1), (x2, y2) = (rng.uniform(-0.2, 1.2, (2, 2)) * size).astype(int).tolist()
        colour = tuple(rng.uniform(0, 255, 3).tolist())
        if rng.random() < 0.5:
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, -1)
        else:
            axes = (abs(x2 - x1) // 2 + 1, abs(y2 - y1) // 2 + 1)
            cv2.ellipse(img, (x1, y1), axes, 0, 0, 360, colour, -1)
    return img


def _draw_body(p: _Painter, idt: _Identity):
    """Shoulders, neck, ears and long hair: everything behind the face."""
    cos, sin = np.cos(_UPPER_HALF), np.sin(_UPPER_HALF)
    p.fill(np.append(2.6 * cos, [2.6, -2.6]), np.append(2.2 + 0.8 * sin, [3.5, 3.5]), idt.clothes)
    p.fill([-0.42, 0.42, 0.5, -0.5], [0.4, 0.4, 1.55, 1.55], _scale(idt.shade, 0.92))
    for side in (-1, 1):
        p.ellipse(side * 0.97, -0.03, 0.12, 0.17, idt.shade)
    if idt.style == "long":
        u = np.concatenate(([-1.22], 1.2 * cos, [1.22]))
        v = np.concatenate(([1.15], -0.05 + 1.1 * sin, [1.15]))
        p.fill(u, v, _scale(idt.hair, 0.85))


def _head_outline(idt: _Identity, jaw_drop: float) -> tuple[np.ndarray, np.ndarray]:
    """Face contour, starting at the right cheek and running down round the chin first."""
    u, v = _RING40
    low = np.maximum(v, 0)  # only the lower half narrows (jaw) and stretches (AU26)
    u = u * (1 - idt.taper * low**2)
    v = v + low * (idt.chin - 1 + 0.1 * jaw_drop)
    return u, v


def _draw_head(p: _Painter, idt: _Identity, a: dict[str, float]):
    u, v = _head_outline(idt, a["AU26"])
    p.fill(u, v, _mix(idt.skin, idt.shade, 0.55))  # rim in shade, lit centre: cheap roundness
    p.fill(u * 0.9, v * 0.94 - 0.02, idt.skin)
    cheek_v = 0.2 - 0.07 * a["AU6"]  # AU6 lifts and rounds the cheeks
    blush = _mix(idt.skin, idt.lip, 0.12 + 0.15 * a["AU6"])
    for side in (-1, 1):
        p.ellipse(side * 0.52, cheek_v, 0.2, 0.12, blush)
    if idt.beard:
        keep = v > 0.3  # the jaw line, right to left, closed under the lower lip
        lip_v = idt.mouth_v + 0.1 + 0.2 * a["AU26"]
        beard = _mix(idt.skin, idt.hair, 0.75)
        p.fill(np.append(u[keep], [-0.25, 0.25]), np.append(v[keep], [lip_v, lip_v]), beard)


def _lid_heights(idt: _Identity, a: dict[str, float], blink: float) -> tuple[float, float]:
    """Upper and lower lid heights (v units) after the eye AUs."""
    up = idt.eye_h * (1 + 0.9 * a["AU5"] - 0.35 * a["AU7"] - 0.25 * a["AU6"] - 0.2 * a["AU4"])
    lo = idt.eye_lo * (1 - 0.55 * a["AU7"] - 0.5 * a["AU6"] + 0.25 * a["AU5"])
    return max(up * (1 - blink), 0.004), max(lo, 0.006)


def _draw_eyes(p: _Painter, idt: _Identity, a: dict[str, float], gaze, blink: float):
    h_up, h_lo = _lid_heights(idt, a, blink)
    x, cv, w = _EYE_X, idt.eye_v, idt.eye_w
    upper = cv - h_up * _EYE_UP - idt.tilt * x
    lower = cv + h_lo * _EYE_LO - idt.tilt * x
    # Iris and pupil discs of both eyes at once: rows = (left iris, left pupil, right ...).
    ru, rv = p.circle_r(0.48 * w * p.hw)  # iris about half the eye width
    scale = np.array([1.0, 0.45, 1.0, 0.45])[:, None]
    sides = np.array([-1.0, -1.0, 1.0, 1.0])[:, None]
    xl = np.minimum(np.maximum(gaze[0] + sides * scale * (ru / w) * _RING16[0], -1), 1)  # eye-local x
    up_p, lo_p = _lid_profiles(xl)
    iv = cv + gaze[1] + scale * rv * _RING16[1]
    # Clip the discs to the lid opening, so the lids cover them like real eyelids.
    iv = np.minimum(np.maximum(iv, cv - h_up * up_p - idt.tilt * xl), cv + h_lo * lo_p - idt.tilt * xl)
    iu = sides * (idt.eye_sep + xl * w)
    lash = _mix(idt.brow, (10, 5, 5), 0.5)
    lid_line, crease_line = _mix(idt.skin, idt.shade, 0.8), _mix(idt.skin, idt.shade, 0.7)
    crease = upper - max(0.012, idt.crease * (1 - 0.6 * a["AU5"]))
    squint = max(a["AU6"], a["AU7"])
    outline_v = np.concatenate((upper, lower[::-1]))
    for k, side in enumerate((-1, 1)):
        cu = side * idt.eye_sep
        eu = cu + side * x * w
        p.fill(np.concatenate((eu, eu[::-1])), outline_v, (228, 222, 214))
        p.fill(iu[2 * k], iv[2 * k], idt.iris)
        p.fill(iu[2 * k + 1], iv[2 * k + 1], (15, 10, 10))
        p.stroke(eu, upper, lash, 1.3)
        p.stroke(eu[2:-2], lower[2:-2], lid_line, 1)
        p.stroke(eu[1:-2], crease[1:-2], crease_line, 1)
        if squint > 0.15:  # bulge under the tightened lower lid
            p.stroke(eu[3:-3], lower[3:-3] + 0.035, _mix(idt.skin, idt.shade, squint), 1)
        if a["AU6"] > 0.25:  # crow's feet at the outer corner
            ou = cu + side * 1.12 * w
            for dv in (-0.05, 0.0, 0.055):
                p.stroke([ou, ou + side * 0.09], [cv, cv + dv], _mix(idt.skin, idt.shade, a["AU6"]))


def _draw_brows(p: _Painter, idt: _Identity, a: dict[str, float]):
    a1, a2, a4, a9 = a["AU1"], a["AU2"], a["AU4"], a["AU9"]
    # AU1 lifts the inner end, AU2 the outer end; AU4 lowers and knits the brows, less so when
    # AU1 pulls against it (the oblique brow of sadness and fear). Weights for _BROW_BASIS:
    weights = [
        idt.brow_v - 0.03 * a2 + 0.07 * a4 * (1 - 0.7 * a1),
        -idt.arch,
        -0.11 * a1,
        -0.1 * a2,
        0.05 * a4 * (1 - a1),
        0.03 * a9,
    ]
    v = np.dot(weights, _BROW_BASIS)
    th = idt.brow_th * _BROW_TAPER
    outline_v = np.concatenate((v - th / 2, (v + th / 2)[::-1]))
    inner = idt.brow_in - 0.05 * a4
    u = inner + _BROW_S * (0.66 - inner)
    outline_u = np.concatenate((u, u[::-1]))
    for side in (-1, 1):
        p.fill(side * outline_u, outline_v, idt.brow)
    lift = max(a1, a2)
    if lift > 0.15:  # horizontal forehead lines
        x = _FOREHEAD_X * (0.3 + 0.2 * a2)
        for k in range(3):
            fv = idt.brow_v - 0.16 - 0.07 * k - 0.05 * lift + 0.04 * x**2
            p.stroke(x, fv, _mix(idt.skin, idt.shade, 0.8 * lift))
    if a4 > 0.15:  # vertical lines between the brows
        line = _mix(idt.skin, idt.shade, a4)
        for side in (-1, 1):
            p.stroke([side * 0.05, side * 0.06], [idt.brow_v - 0.04, idt.brow_v + 0.08], line)


def _draw_nose(p: _Painter, idt: _Identity, a: dict[str, float]):
    a9 = a["AU9"]
    nv = idt.nose_v - 0.035 * a9 - 0.02 * a["AU10"]  # AU9/AU10 lift the nose wings
    w = idt.nose_w * (1 + 0.25 * a9)
    line = _mix(idt.skin, idt.shade, 0.6)
    nostril = _mix(idt.shade, (20, 10, 10), 0.5)
    p.stroke([0.08, 0.09, 0.1], [idt.eye_v + 0.05, nv - 0.14, nv - 0.06], line, z=0.1)
    for side in (-1, 1):
        p.stroke(side * (w * 0.8 + 0.06 * _NOSE_WING[0]), nv + 0.05 * _NOSE_WING[1], line, z=0.15)
        p.ellipse(side * w * 0.42, nv + 0.025, 0.05, 0.022, nostril, z=0.2)
    if a9 > 0.15:  # wrinkles across the bridge
        for k in range(3):
            bv = idt.eye_v + 0.03 + 0.035 * k
            p.stroke([-0.09, 0, 0.09], [bv, bv - 0.01, bv], _mix(idt.skin, idt.shade, a9), z=0.1)


def _mouth_geometry(idt: _Identity, a: dict[str, float]):
    """Lip curves (v units) sampled across the mouth, plus the corner positions."""
    a10, a12, a15, a20 = a["AU10"], a["AU12"], a["AU15"], a["AU20"]
    a23, a25, a26 = a["AU23"], a["AU25"], a["AU26"]
    half = idt.mouth_w * (1 + 0.22 * a12 + 0.3 * a20 - 0.18 * a23 - 0.15 * a26)
    corner = idt.rest_curve - 0.12 * a12 + 0.1 * a15 + 0.03 * a20 - 0.02 * a10  # + is down
    x, ax = _MOUTH_X, _MOUTH_AX
    vm = idt.mouth_v + 0.03 * a26 - 0.015 * a10
    mid = vm + corner * ax ** (2 - 0.8 * a20)  # the line where the lips meet; AU20 flattens it
    bump = (1 - x**2) ** (0.5 - 0.3 * a20)  # opening profile: AU20 makes it rectangular
    gap_up = 0.03 * a25 + 0.06 * a10 + 0.03 * a26
    gap_lo = 0.04 * a25 + 0.24 * a26 + 0.03 * a20
    inner_up, inner_lo = mid - gap_up * bump, mid + gap_lo * bump
    thin = 1 - 0.6 * a23 - 0.2 * a20 - 0.15 * a12  # pressed or stretched lips look thinner
    outer_up = inner_up - idt.lip_u * thin * _MOUTH_PROFILE * (1 + 0.3 * _CUPID_BOW)
    outer_lo = inner_lo + idt.lip_l * thin * _MOUTH_PROFILE
    teeth = 0.012 + 0.05 * max(a10, a12, a20)  # retracted lips bare the teeth
    return x * half, mid, inner_up, inner_lo, outer_up, outer_lo, teeth, (half, vm + corner)


def _draw_mouth(p: _Painter, idt: _Identity, a: dict[str, float]):
    u, mid, inner_up, inner_lo, outer_up, outer_lo, teeth, (half, corner_v) = _mouth_geometry(idt, a)
    both_u = np.concatenate((u, u[::-1]))
    fold = 0.2 + 0.3 * idt.age + 0.6 * max(a["AU12"], a["AU9"], a["AU10"])
    nv = idt.nose_v - 0.035 * a["AU9"] - 0.02 * a["AU10"]
    s = _FOLD_S
    pts = (  # nasolabial folds deepen with smiling, disgust and upper-lip raise
        (1 - s) ** 2 * [idt.nose_w + 0.07, nv - 0.03]
        + 2 * s * (1 - s) * [half + 0.08 + 0.05 * a["AU12"], nv + 0.12]
        + s**2 * [half + 0.08, corner_v + 0.06]
    )
    for side in (-1, 1):
        p.stroke(side * pts[:, 0], pts[:, 1], _mix(idt.skin, idt.shade, min(fold, 1.0)))
    p.fill(both_u, np.concatenate((outer_up, outer_lo[::-1])), idt.lip)
    if (inner_lo - inner_up).max() > 0.012:
        p.fill(both_u, np.concatenate((inner_up, inner_lo[::-1])), (55, 18, 22))
        teeth_lo = np.minimum(inner_up + teeth, inner_lo)
        p.fill(both_u, np.concatenate((inner_up, teeth_lo[::-1])), (236, 230, 214))
        bottom = np.maximum(inner_lo - 0.5 * teeth, teeth_lo)
        p.fill(both_u, np.concatenate((bottom, inner_lo[::-1])), (205, 198, 185))
    else:
        p.stroke(u, mid, _mix(idt.lip, (40, 10, 10), 0.6), 1.2)
    if a["AU15"] > 0.2:  # lines below the depressed corners
        line = _mix(idt.skin, idt.shade, a["AU15"])
        for side in (-1, 1):
            p.stroke([side * half, side * (half + 0.03)], [corner_v + 0.02, corner_v + 0.1], line)
    if a["AU20"] > 0.2:  # stretched corners dimple
        line = _mix(idt.skin, idt.shade, a["AU20"])
        for side in (-1, 1):
            p.stroke([side * (half + 0.03)] * 2, [corner_v - 0.04, corner_v + 0.04], line)
    if idt.beard:  # moustache over the upper lip
        p.fill(1.1 * both_u, np.concatenate((outer_up - 0.01, outer_up[::-1] - 0.08)), idt.hair)


def _draw_hair(p: _Painter, idt: _Identity, rng):
    if idt.style == "bald":
        return
    x = _HAIRLINE_X
    if idt.style == "bangs":  # a fringe sometimes hides the brows: real occlusion of AU1/2/4
        line = idt.brow_v + rng.uniform(-0.12, 0.03) + 0.015 * np.sin(x * 40)
    elif idt.style == "side":
        line = -0.55 + (1 if rng.random() < 0.5 else -1) * 0.22 * x + 0.1 * x**2
    else:
        line = -0.6 + rng.uniform(-0.08, 0.06) + 0.18 * x**2
    u = np.concatenate((1.07 * np.cos(_UPPER_HALF), x))
    v = np.concatenate((-0.02 + 1.07 * np.sin(_UPPER_HALF), line))
    p.fill(u, v, idt.hair)


def _draw_glasses(p: _Painter, idt: _Identity, dark: bool):
    frame = (20, 20, 25) if dark else _scale(idt.hair, 0.5)
    ru, rv = idt.eye_w * 1.45, 0.11
    for side in (-1, 1):
        u = side * idt.eye_sep + ru * _RING20[0]
        v = idt.eye_v + 0.01 + rv * _RING20[1]
        if dark:
            p.fill(u, v, (25, 25, 30))
        p.stroke(u, v, frame, 1.3, closed=True)
        p.stroke([side * (idt.eye_sep + ru), side * 0.98], [idt.eye_v, idt.eye_v - 0.04], frame, 1.2)
    inner = idt.eye_sep - ru
    p.stroke([-inner, 0, inner], [idt.eye_v, idt.eye_v - 0.03, idt.eye_v], frame, 1.2)


def _draw_occlusion(p: _Painter, idt: _Identity, rng):
    """Cover part of the face: sunglasses, a hand, a mask, or an object from an image edge."""
    kind = int(rng.integers(4))
    if kind == 0:
        _draw_glasses(p, idt, dark=True)
    elif kind == 1:  # a hand over mouth, chin or cheek
        u0, v0 = rng.uniform(-0.8, 0.8), rng.uniform(0.45, 1.1)
        hand = _scale(idt.skin, rng.uniform(0.9, 1.05))
        angle = rng.uniform(-0.6, 0.6)
        for k in range(4):
            du = (k - 1.5) * 0.13
            tip_u, tip_v = u0 + du + 0.5 * math.sin(angle), v0 - 0.55 * math.cos(angle)
            p.stroke([u0 + du, tip_u], [v0, tip_v], hand, 9)
        p.ellipse(u0, v0 + 0.1, 0.38, 0.3, hand)
    elif kind == 2:  # face mask from the nose down
        colour = ((235, 235, 235), (150, 190, 220), (30, 30, 35))[int(rng.integers(3))]
        top = idt.nose_v - 0.12
        u, v = _head_outline(idt, 0.0)
        keep = v > top  # the jaw line, right to left, closed across the nose
        mu = np.append(u[keep] * 0.97, [-0.9, 0, 0.9])
        p.fill(mu, np.append(v[keep], [top, top - 0.05, top]), colour)
    else:  # an object entering from an image edge (microphone, shoulder, cup)
        size = p.img.shape[0]
        (depth, half), c = rng.uniform(0.15, 0.35, 2) * size, rng.uniform(0, size)  # c: along the edge
        box = (  # x1, y1, x2, y2 touching the left, right, top or bottom edge
            (0, c - half, depth, c + half),
            (size - depth, c - half, size, c + half),
            (c - half, 0, c + half, depth),
            (c - half, size - depth, c + half, size),
        )[int(rng.integers(4))]
        p.flush()  # the object is drawn in pixels, on top of everything queued so far
        x1, y1, x2, y2 = (int(b) for b in box)
        cv2.rectangle(p.img, (x1, y1), (x2, y2), tuple(rng.uniform(0, 255, 3).tolist()), -1)


# --------------------------------------------------------------------------------------------
# One image


def render_face(
    label: int, size: int, rng: np.random.Generator, difficulty: Difficulty = STANDARD
) -> tuple[np.ndarray, np.ndarray, float]:
    """Draw one face of class ``label`` (0-based, EMOTIONS order).

    Returns the RGB uint8 image (size x size x 3), its AU intensities (order AU_NAMES) and the
    global expression intensity (0 for Neutral).
    """
    d = difficulty
    idt = _sample_identity(rng, d)
    au, intensity = _sample_expression(rng, label, d)
    a = dict(zip(_AU_SHORT, (au * d.au_gain).tolist()))
    img = _background(rng, size, d)
    pose = rng.standard_normal(4)
    half_h = 0.4 * size * rng.uniform(0.9, 1.08)
    p = _Painter(
        img,
        cx=size * (0.5 + 0.025 * d.pose * pose[0]),
        cy=size * (0.5 + 0.025 * d.pose * pose[1]),
        half_w=half_h * idt.aspect,
        half_h=half_h,
        roll_deg=min(max(6 * d.pose * pose[2], -15), 15),
        yaw=min(max(0.15 * d.pose * pose[3], -0.35), 0.35),
    )
    gaze = (rng.uniform(-0.3, 0.3), rng.uniform(-0.01, 0.01))
    blink = rng.uniform(0.5, 0.9) if rng.random() < 0.03 else 0.0
    _draw_body(p, idt)
    _draw_head(p, idt, a)
    _draw_eyes(p, idt, a, gaze, blink)
    _draw_nose(p, idt, a)
    _draw_mouth(p, idt, a)
    _draw_brows(p, idt, a)
    _draw_hair(p, idt, rng)
    if idt.glasses:
        _draw_glasses(p, idt, dark=False)
    if rng.random() < d.occlusion_p:
        _draw_occlusion(p, idt, rng)
    p.flush()
    return _camera(img, rng, d), au, intensity


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    # Gaussian noise is the slowest step per image; slicing a fixed bank at a random offset is
    # as good for this purpose and 20x cheaper.
    return np.random.default_rng(0x5EED).standard_normal(1 << 20, dtype=np.float32)


def _camera(img: np.ndarray, rng, d: Difficulty = STANDARD) -> np.ndarray:
    """Lighting gradient, colour cast, grey-scale, low resolution, blur and sensor noise."""
    size = img.shape[0]
    r = rng.random(8)
    # Lighting and colour cast: a 2x2x3 gain map upsampled, i.e. a smooth ramp across the face.
    ramp = (0.8 * d.lighting * r[0]) * (rng.random((2, 2, 1)) - 0.5)
    gain = (0.7 + 0.5 * r[1]) * (1 + ramp) * (0.9 + 0.2 * rng.random(3))
    f = img * cv2.resize(gain.astype(np.float32), (size, size))
    if r[2] < 0.06 * d.degrade:
        f[:] = f.mean(axis=2, keepdims=True)
    if r[3] < 0.15 * d.degrade:  # a low-resolution source, upsampled
        small = max(8, int(size * (0.35 + 0.35 * r[4])))
        f = cv2.resize(cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    if r[5] < 0.4 * d.degrade:  # out of focus or motion-smoothed
        f = cv2.GaussianBlur(f, (0, 0), (0.4 + r[6]) * size / 100.0)
    bank, count = _noise_bank(), f.size
    if count < len(bank):
        start = int(rng.integers(0, len(bank) - count))
        noise = bank[start : start + count].reshape(f.shape)
    else:
        noise = rng.standard_normal(f.shape, dtype=np.float32)
    f += noise * np.float32(d.noise * r[7])
    np.maximum(f, 0, out=f)
    return np.minimum(f, 255, out=f).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


# --------------------------------------------------------------------------------------------
# Output folder, preview, entry point


def _validate(n, size, seed, label_noise) -> None:
    def is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if n is not None and (not is_int(n) or n < MIN_IMAGES):
        raise InvalidArgument(
            f"n must be None (full RAF-DB size, 15,339 images) or an integer >= {MIN_IMAGES} "
            f"(2 images per class in each split); got {n!r}. Pass a larger n or omit it."
        )
    if not is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidArgument(
            f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels; got {size!r}. "
            "RAF-DB's aligned images are 100 px: use --size 100."
        )
    if not is_int(seed) or seed < 0:
        raise InvalidArgument(f"seed must be a non-negative integer; got {seed!r}.")
    if isinstance(label_noise, bool) or not isinstance(label_noise, (int, float)):
        raise InvalidArgument(f"label_noise must be a number in [0, 1); got {label_noise!r}.")
    if not 0.0 <= label_noise < 1.0:
        raise InvalidArgument(
            f"label_noise must be in [0, 1) (the fraction of labels replaced by another class); "
            f"got {label_noise!r}. Use 0 for clean labels, e.g. 0.03 for RAF-DB-like noise."
        )


def _prepare_out(root: Path) -> Path:
    """Create ``root``, or empty a previous synthetic dataset there; refuse anything else."""
    if root.exists() and not root.is_dir():
        raise InvalidArgument(f"output path {root} is a file; choose a directory path instead.")
    if root.is_dir() and any(root.iterdir()):
        if not _is_synthetic(root):
            raise InvalidArgument(
                f"output directory {root} is not empty and is not a synthetic dataset written by "
                f"fersearch (no {MARKER} there); refusing to write into it. Choose an empty or new "
                "directory, or delete this one first."
            )
        for name in ("EmoLabel", "Image"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in (PREVIEW, MARKER):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _is_synthetic(root: Path) -> bool:
    try:
        meta = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _write_marker(root: Path, params: dict, complete: bool) -> None:
    # Written first (complete=false) so an interrupted run can still be overwritten next time.
    text = json.dumps({**params, "complete": complete}, indent=2, sort_keys=True)
    (root / MARKER).write_text(text + "\n")


def _write_preview(root: Path, picks: dict[int, list], size: int) -> Path:
    """Contact sheet: one row per class, samples sorted from weak to strong expression."""
    tile, per_row, label_w, top = int(np.clip(size, 64, 128)), 8, 110, 24
    row_h = tile + 14
    sheet = np.full((top + row_h * len(EMOTIONS), label_w + per_row * tile, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = "synthetic FER: weak -> strong expression (number = intensity)"
    cv2.putText(sheet, title, (6, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for label, samples in picks.items():
        y = top + label * row_h
        cv2.putText(sheet, EMOTIONS[label], (6, y + tile // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        samples = sorted(samples, key=lambda s: s[1])
        chosen = np.linspace(0, len(samples) - 1, min(per_row, len(samples))).round().astype(int)
        for col, k in enumerate(chosen):
            img, intensity = samples[k]
            x = label_w + col * tile
            sheet[y : y + tile, x : x + tile] = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
            cv2.putText(
                sheet, f"{intensity:.2f}", (x + 2, y + tile + 11), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA
            )
    path = root / PREVIEW
    cv2.imwrite(str(path), sheet[..., ::-1])
    return path


def generate(
    out: str | Path,
    *,
    n: int | None = None,
    size: int = 100,
    seed: int = 0,
    label_noise: float = 0.03,
    preview: bool = False,
    progress: Callable[[int, int], None] | None = None,
    difficulty: str = "standard",
) -> SynthSummary:
    """Write a synthetic FER dataset in RAF-DB basic's layout under ``out``.

    ``n=None`` writes RAF-DB's full size (12,271 train + 3,068 test); ``n=N`` scales both
    splits to N images in total, keeping RAF-DB's class and train:test proportions. A fraction
    ``label_noise`` of the labels on disk is swapped for a different class (counts unchanged).
    ``progress(done, total)`` is called after each image. ``difficulty``: one of DIFFICULTIES
    (see ``Difficulty``); ``standard`` writes exactly what this generator always wrote.
    """
    _validate(n, size, seed, label_noise)
    if difficulty not in DIFFICULTIES:
        raise InvalidArgument(
            f"difficulty must be one of {', '.join(DIFFICULTIES)}; got {difficulty!r}. Use easy for "
            "CPU-scale experiments with tiny models, standard for everything else."
        )
    d = DIFFICULTIES[difficulty]
    n, size, seed = (None if n is None else int(n)), int(size), int(seed)  # numpy ints -> JSON
    root = _prepare_out(Path(out))
    counts = split_counts(n)
    params = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "size": size,
        "label_noise": float(label_noise),
        "counts": counts,
        "emotions": list(EMOTIONS),
        "au_names": list(AU_NAMES),
        "note": "procedurally drawn faces, not real people; layout of RAF-DB basic",
    }
    if difficulty != "standard":  # absent = standard: a standard tree stays byte-identical
        params["difficulty"] = difficulty
    _write_marker(root, params, complete=False)
    images = root / IMAGE_DIR
    images.mkdir(parents=True)
    (root / "EmoLabel").mkdir(exist_ok=True)
    total, done = sum(map(sum, counts.values())), 0
    label_lines, au_rows = [], []
    picks: dict[int, list] = {k: [] for k in range(len(EMOTIONS))}
    for split in SPLITS:
        true, noisy = _assign_labels(seed, split, counts[split], float(label_noise))
        for i, (label, disk_label) in enumerate(zip(true.tolist(), noisy.tolist()), start=1):
            rng = np.random.default_rng([seed, _SPLIT_ID[split], _FACE, i])
            img, au, intensity = render_face(label, size, rng, d)
            quality = int(rng.integers(45, 96))
            name = f"{split}_{i:0{_DIGITS[split]}d}"
            (images / f"{name}_aligned.jpg").write_bytes(_jpeg(img, quality))
            label_lines.append(f"{name}.jpg {disk_label + 1}\n")
            au_rows.append([f"{name}.jpg", disk_label + 1, *(f"{x:.3f}" for x in au), f"{intensity:.3f}"])
            if preview and split == "train" and len(picks[label]) < 32:
                picks[label].append((img, intensity))
            done += 1
            if progress is not None:
                progress(done, total)
    (root / LABEL_FILE).write_text("".join(label_lines))
    with open(root / AU_FILE, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image", "label", *AU_NAMES, "intensity"])
        writer.writerows(au_rows)
    preview_path = _write_preview(root, picks, size) if preview else None
    _write_marker(root, params, complete=True)
    return SynthSummary(root=root, counts=counts, size=size, seed=seed, preview=preview_path)
