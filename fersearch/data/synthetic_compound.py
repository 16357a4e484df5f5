"""Synthetic compound expressions (RAF-CE's 14 classes) with action-unit labels, in RAF-CE's layout.

A compound class is the union of its two basic emotions' action units: "Happily Surprised" draws
Happiness's and Surprise's AUs, each at its own intensity, and keeps the stronger of the two per
AU. Faces are drawn with the primitives of ``synthetic`` (same identities, lighting, occlusion).
AU labels written to disk are the AUs drawn above ``AU_PRESENT`` intensity.

Layout written under ``out`` (read back by ``formats.rafce``)::

    RAFCE_emolabel.txt     0001.jpg 3          (labels 0..13)
    RAFCE_partition.txt    0001.jpg 0          (0 train, 1 test, 2 val)
    RAFCE_AUlabel.txt      0001.jpg 1+2+12+25  (or null)
    aligned/0001.jpg
    synthetic.json
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument
from . import synthetic as S
from .formats.rafce import AU_FILE, CLASS_NAMES, EMO_FILE, PART_FILE

GENERATOR = "fersearch.data.synthetic_compound"
AU_PRESENT = 0.25
# RAF-CE's class order, each as its two basic emotions (synthetic.EMOTIONS names).
COMPONENTS = tuple(
    tuple({"Happily": "Happiness", "Sadly": "Sadness", "Fearfully": "Fear", "Angrily": "Anger",
           "Disgustedly": "Disgust", "Surprised": "Surprise", "Disgusted": "Disgust", "Fearful": "Fear",
           "Angry": "Anger", "Sad": "Sadness"}[w] for w in name.split())
    for name in CLASS_NAMES
)  # fmt: skip
# Relative class frequencies (compound expressions in the wild: happy and sad blends dominate).
WEIGHTS = (9, 4, 2, 3, 2, 4, 2, 6, 2, 3, 8, 3, 2, 2)
SPLIT_SHARE = ((0, 0.7), (2, 0.1), (1, 0.2))  # partition code, share: train, val, test
MIN_IMAGES = 3 * len(CLASS_NAMES)


def compound_aus(rng, label: int) -> tuple[np.ndarray, float]:
    """AU intensities (synthetic.AU_NAMES order) of compound class ``label`` and its intensity."""
    parts = [S._sample_expression(rng, S.EMOTIONS.index(e)) for e in COMPONENTS[label]]
    au = np.maximum(parts[0][0], parts[1][0])
    return au, max(parts[0][1], parts[1][1])


def render_with_aus(au: np.ndarray, size: int, rng) -> np.ndarray:
    """A face showing the given AU intensities (synthetic.render_face with the AUs supplied)."""
    idt = S._sample_identity(rng)
    a = dict(zip(S._AU_SHORT, au.tolist()))
    img = S._background(rng, size)
    pose = rng.standard_normal(4)
    half_h = 0.4 * size * rng.uniform(0.9, 1.08)
    p = S._Painter(
        img,
        cx=size * (0.5 + 0.025 * pose[0]),
        cy=size * (0.5 + 0.025 * pose[1]),
        half_w=half_h * idt.aspect,
        half_h=half_h,
        roll_deg=min(max(6 * pose[2], -15), 15),
        yaw=min(max(0.15 * pose[3], -0.35), 0.35),
    )
    gaze = (rng.uniform(-0.3, 0.3), rng.uniform(-0.01, 0.01))
    S._draw_body(p, idt)
    S._draw_head(p, idt, a)
    S._draw_eyes(p, idt, a, gaze, 0.0)
    S._draw_nose(p, idt, a)
    S._draw_mouth(p, idt, a)
    S._draw_brows(p, idt, a)
    S._draw_hair(p, idt, rng)
    if idt.glasses:
        S._draw_glasses(p, idt, dark=False)
    if rng.random() < 0.1:
        S._draw_occlusion(p, idt, rng)
    p.flush()
    return S._camera(img, rng)


def class_counts(n: int) -> list[int]:
    w = np.asarray(WEIGHTS, float)
    counts = np.maximum(3, np.floor(w / w.sum() * n)).astype(int)
    counts[np.argmax(w)] += n - counts.sum()
    return counts.tolist()


def generate_compound(
    out: str | Path,
    *,
    n: int = 1400,
    size: int = 100,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[int]]:
    """Write ``n`` compound-expression faces in RAF-CE's layout; returns per-split class counts."""
    if not isinstance(n, int) or n < MIN_IMAGES:
        raise InvalidArgument(f"n must be an integer >= {MIN_IMAGES} (3 per class) for compound14; got {n!r}")
    S._validate(None, size, seed, 0.0)
    root = S._prepare_out(Path(out))
    for name in (EMO_FILE, PART_FILE, AU_FILE):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / "aligned", ignore_errors=True)  # a previous synthetic run's images
    params = {"generator": S.GENERATOR, "variant": GENERATOR, "seed": seed, "n": n, "size": size}
    S._write_marker(root, params, complete=False)
    images = root / "aligned"
    images.mkdir(parents=True, exist_ok=True)
    order_rng = np.random.default_rng([seed, 14, 1])
    labels = order_rng.permutation(np.repeat(np.arange(len(CLASS_NAMES)), class_counts(n)))
    # Stratified partition: each class split 70/10/20 so every split sees every class.
    part = np.zeros(n, int)
    for k in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == k)
        cuts = np.cumsum([round(len(idx) * share) for _, share in SPLIT_SHARE])[:-1]
        for (code, _), chunk in zip(SPLIT_SHARE, np.split(idx, np.minimum(cuts, len(idx)))):
            part[chunk] = code
    emo, parts, aus = [], [], []
    counts = {"train": [0] * 14, "val": [0] * 14, "test": [0] * 14}
    for i, label in enumerate(labels.tolist()):
        rng = np.random.default_rng([seed, 14, 2, i])
        au, _ = compound_aus(rng, label)
        img = render_with_aus(au, size, rng)
        name = f"{i + 1:04d}.jpg"
        (images / name).write_bytes(S._jpeg(img, int(rng.integers(60, 96))))
        present = [S._AU_SHORT[j][2:] for j in np.flatnonzero(au > AU_PRESENT)]
        emo.append(f"{name} {label}\n")
        parts.append(f"{name} {part[i]}\n")
        aus.append(f"{name} {'+'.join(present) if present else 'null'}\n")
        counts[{0: "train", 1: "test", 2: "val"}[int(part[i])]][label] += 1
        if progress is not None:
            progress(i + 1, n)
    (root / EMO_FILE).write_text("".join(emo))
    (root / PART_FILE).write_text("".join(parts))
    (root / AU_FILE).write_text("".join(aus))
    S._write_marker(root, {**params, "counts": counts, "classes": list(CLASS_NAMES)}, complete=True)
    return counts
