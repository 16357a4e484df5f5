"""Synthetic context clips in the RAER-style layout: a face plus a body/scene per frame.

Each sample is a short clip of a person in a scene. The face carries the main cue (a class-typed
expression drawn with ``synthetic``'s primitives, ramping up over the clip); the body's posture
carries a weak one (lean, slump and turn are drawn around a class-dependent mean with more noise
than signal), so a model that also reads the context view can do better than the face alone.

Layout written under ``out`` (read back by ``formats.raer``)::

    annotation/train.txt, test.txt   clips/train_0001 <frames> <label 1..5>
    annotation/classes.txt           the five class names
    bounding_box/face.json           {"clips/train_0001": {"000.jpg": [l, t, r, b], ...}}
    bounding_box/body.json           {"clips/train_0001": [l, t, r, b]}
    clips/train_0001/000.jpg ...
    synthetic.json
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InvalidArgument
from . import synthetic as S
from .formats.raer import CLASS_NAMES
from .synthetic_compound import render_with_aus

GENERATOR = "fersearch.data.synthetic_context"
# Class -> (basic emotion whose AUs the face shows, posture mean: lean, slump, turn).
_FACE = {"Neutrality": "Neutral", "Enjoyment": "Happiness", "Confusion": "Anger", "Fatigue": "Sadness",
         "Distraction": "Neutral"}  # fmt: skip
_POSTURE = {
    "Neutrality": (0.0, 0.0, 0.0),
    "Enjoyment": (-0.4, -0.3, 0.0),
    "Confusion": (0.5, 0.0, 0.3),
    "Fatigue": (0.0, 0.9, 0.0),
    "Distraction": (0.0, 0.0, 0.9),
}
_POSTURE_NOISE = 0.6
WEIGHTS = (5, 3, 2, 2, 3)  # RAER is imbalanced too
SPLIT_SHARE = {"train": 0.8, "test": 0.2}
MIN_CLIPS = 2 * len(CLASS_NAMES) * len(SPLIT_SHARE)


def _face_aus(rng, name: str) -> np.ndarray:
    au, _ = S._sample_expression(rng, S.EMOTIONS.index(_FACE[name]))
    if name == "Confusion":  # a knitted brow without the rest of anger
        keep = np.array([short in ("AU4", "AU7", "AU1") for short in S._AU_SHORT])
        au = au * keep * 0.7
    return au


def _draw_person(
    scene: np.ndarray, posture: np.ndarray, clothes, skin
) -> tuple[tuple[int, int], int, list[int]]:
    """Torso and arms; returns the head centre, the head radius and the body box [l, t, r, b]."""
    h, w = scene.shape[:2]
    lean, slump, turn = posture.tolist()
    cx = w * (0.5 + 0.08 * lean)
    shoulder_y = h * (0.5 + 0.08 * slump)
    half = w * 0.22 * (1 - 0.35 * min(abs(turn), 1.0))  # a turned torso looks narrower
    torso = np.array(
        [[cx - half, shoulder_y], [cx + half, shoulder_y], [cx + half * 0.9, h], [cx - half * 0.9, h]],
        np.int32,
    )
    cv2.fillPoly(scene, [torso], clothes, cv2.LINE_AA)
    arm = max(2, int(w * 0.06))
    for side in (-1, 1):
        elbow = (int(cx + side * half * 1.1), int(shoulder_y + h * (0.2 - 0.1 * (lean < -0.2))))
        hand = (
            int(cx + side * half * (0.6 - 0.3 * slump)),
            int(shoulder_y + h * (0.35 - 0.25 * (lean < -0.2))),
        )
        cv2.line(scene, (int(cx + side * half), int(shoulder_y)), elbow, clothes, arm, cv2.LINE_AA)
        cv2.line(scene, elbow, hand, skin, max(2, arm - 1), cv2.LINE_AA)
    radius = int(w * 0.16)
    head = (int(cx + w * 0.06 * turn), int(shoulder_y - radius * (1.05 - 0.35 * slump)))
    body = [int(cx - half * 1.2), int(head[1] - radius), int(cx + half * 1.2), h - 1]
    return head, radius, body


def _paste_face(scene: np.ndarray, face: np.ndarray, centre: tuple[int, int]) -> list[int]:
    """Blend a square face render into the scene through a soft oval; returns its box [l,t,r,b]."""
    s = face.shape[0]
    yy, xx = np.mgrid[0:s, 0:s]
    oval = (((xx - s / 2) / (s * 0.42)) ** 2 + ((yy - s / 2) / (s * 0.5)) ** 2) <= 1
    alpha = cv2.GaussianBlur(oval.astype(np.float32), (0, 0), s * 0.03)[..., None]
    x0, y0 = centre[0] - s // 2, centre[1] - s // 2
    H, W = scene.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
    if xb <= xa or yb <= ya:
        return [0, 0, 1, 1]
    region = scene[ya:yb, xa:xb].astype(np.float32)
    f = face[ya - y0 : yb - y0, xa - x0 : xb - x0].astype(np.float32)
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
    scene[ya:yb, xa:xb] = (a * f + (1 - a) * region).astype(np.uint8)
    return [xa, ya, xb, yb]


def render_clip(
    label: int, size: int, frames: int, rng
) -> tuple[list[np.ndarray], list[list[int]], list[int]]:
    """``frames`` scene images (2*size square) of class ``label``, their face boxes, the body box."""
    name = CLASS_NAMES[label]
    au = _face_aus(rng, name)
    posture = np.asarray(_POSTURE[name]) + _POSTURE_NOISE * rng.standard_normal(3)
    scene_side = 2 * size
    background = S._background(rng, scene_side)
    clothes = tuple(rng.uniform(20, 235, 3).tolist())
    skin = tuple(S._SKIN[int(rng.integers(len(S._SKIN)))].tolist())
    face_seed = int(rng.integers(1 << 31))
    images, boxes = [], []
    body = [0, 0, scene_side - 1, scene_side - 1]
    for t in range(frames):
        scene = background.copy()
        head, radius, body = _draw_person(scene, posture, clothes, skin)
        ramp = 0.5 + 0.5 * (t + 1) / frames  # the expression builds over the clip
        face = render_with_aus(au * ramp, 2 * radius + 2, np.random.default_rng(face_seed))
        jitter = rng.integers(-2, 3, 2)
        boxes.append(_paste_face(scene, face, (head[0] + int(jitter[0]), head[1] + int(jitter[1]))))
        images.append(scene)
    return images, boxes, body


def generate_context(
    out: str | Path,
    *,
    n: int = 400,
    size: int = 64,
    frames: int = 4,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[int]]:
    """Write ``n`` clips of ``frames`` frames in the RAER-style layout; returns per-split counts."""
    if not isinstance(n, int) or n < MIN_CLIPS:
        raise InvalidArgument(f"n must be an integer >= {MIN_CLIPS} clips for --context; got {n!r}")
    if not isinstance(frames, int) or not 1 <= frames <= 64:
        raise InvalidArgument(f"frames must be an integer from 1 to 64; got {frames!r}")
    S._validate(None, size, seed, 0.0)
    root = S._prepare_out(Path(out))
    for sub in ("annotation", "bounding_box", "clips"):
        shutil.rmtree(root / sub, ignore_errors=True)
    params = {
        "generator": S.GENERATOR,
        "variant": GENERATOR,
        "seed": seed,
        "n": n,
        "size": size,
        "frames": frames,
    }
    S._write_marker(root, params, complete=False)
    for sub in ("annotation", "bounding_box", "clips"):
        (root / sub).mkdir(parents=True)
    (root / "annotation" / "classes.txt").write_text("".join(c + "\n" for c in CLASS_NAMES))
    w = np.asarray(WEIGHTS, float)
    faces: dict[str, dict[str, list[int]]] = {}
    bodies: dict[str, list[int]] = {}
    counts: dict[str, list[int]] = {}
    done = 0
    n_test = max(2 * len(CLASS_NAMES), round(n * SPLIT_SHARE["test"]))
    for split_id, (split, total) in enumerate((("train", n - n_test), ("test", n_test)), start=1):
        per_class = np.maximum(2, np.floor(w / w.sum() * total)).astype(int)
        per_class[0] += total - per_class.sum()
        counts[split] = per_class.tolist()
        labels = np.random.default_rng([seed, 5, split_id]).permutation(
            np.repeat(np.arange(len(w)), per_class)
        )
        lines = []
        for i, label in enumerate(labels.tolist(), start=1):
            rng = np.random.default_rng([seed, 5, split_id, i])
            ref = f"clips/{split}_{i:04d}"
            images, boxes, body = render_clip(label, size, frames, rng)
            (root / ref).mkdir()
            faces[ref] = {}
            for t, (img, box) in enumerate(zip(images, boxes)):
                (root / ref / f"{t:03d}.jpg").write_bytes(S._jpeg(img, 90))
                faces[ref][f"{t:03d}.jpg"] = box
            bodies[ref] = body
            lines.append(f"{ref} {frames} {label + 1}\n")
            done += 1
            if progress is not None:
                progress(done, n)
        (root / "annotation" / f"{split}.txt").write_text("".join(lines))
    (root / "bounding_box" / "face.json").write_text(json.dumps(faces))
    (root / "bounding_box" / "body.json").write_text(json.dumps(bodies))
    S._write_marker(root, {**params, "counts": counts, "classes": list(CLASS_NAMES)}, complete=True)
    return counts
