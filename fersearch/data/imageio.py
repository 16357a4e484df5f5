"""Open one sample as RGB pixels: image files, FER2013-style pixel rows, face and context crops.

Every failure to read a sample (missing file, truncated JPEG, not an image, a pixel row of the
wrong length) raises ``Unreadable`` with a short reason, which the cache counts and lists.
"""

from __future__ import annotations

import csv
import math
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .manifest import Box, Clip

FACE_MARGIN = 0.1  # a face box is widened by this fraction of its side before cropping


class Unreadable(Exception):
    """A sample that cannot be decoded; the message is the reason ("missing", "truncated ...")."""


def source_file(ref: str) -> str:
    """The file a sample reference lives in (``fer2013.csv#12`` -> ``fer2013.csv``)."""
    return ref.split("#", 1)[0]


def open_rgb(root: Path, ref: str, min_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB. ``min_side`` lets JPEG decoding skip detail the caller will discard
    (PIL's draft mode decodes at 1/2, 1/4 or 1/8 scale directly from the DCT)."""
    if "#" in ref:
        return _pixel_row(root / source_file(ref), int(ref.split("#", 1)[1]))
    path = root / ref
    try:
        with Image.open(path) as im:
            if min_side is not None and im.format == "JPEG":
                im.draft("RGB", (min_side, min_side))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise Unreadable("missing") from None
    except UnidentifiedImageError:
        raise Unreadable("not an image") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise Unreadable(f"unreadable ({str(exc)[:60]})") from None


@lru_cache(maxsize=2)
def _pixel_table(path: str, mtime_ns: int) -> tuple[str, ...]:
    """All pixel strings of a FER2013-style CSV, read once per build (mtime in the key, so an
    edited file is re-read)."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        col = header.index("pixels")
        return tuple(row[col] if len(row) > col else "" for row in reader if row)


def release_pixel_tables() -> None:
    _pixel_table.cache_clear()


def _pixel_row(path: Path, row: int) -> np.ndarray:
    try:
        table = _pixel_table(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        raise Unreadable("missing") from None
    if not 0 <= row < len(table):
        raise Unreadable(f"row {row} not in {path.name}")
    try:
        values = np.array(table[row].split(), dtype=np.float32)
    except ValueError:
        raise Unreadable("pixels are not numbers") from None
    side = math.isqrt(len(values))
    if side == 0 or side * side != len(values) or values.min() < 0 or values.max() > 255:
        raise Unreadable(f"{len(values)} pixel values do not form a square 8-bit image")
    grey = values.reshape(side, side).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img)
    shrink = img.shape[0] > size or img.shape[1] > size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_square(img: np.ndarray, box: Box, margin: float = FACE_MARGIN) -> np.ndarray:
    """The square around a face box (x, y, w, h), widened by ``margin``; parts outside the image
    repeat its border rather than adding black bars a model could key on."""
    x, y, w, h = box
    side = max(w, h) * (1 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    height, width = img.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - width, y0 + s - height)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return img[y0 : y0 + s, x0 : x0 + s]


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Fit the whole image in a square keeping its aspect (context views: posture matters)."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def load_image(root: Path, ref: str, size: int, box: Box | None) -> np.ndarray:
    """One sample at (size, size, 3): cropped to its face box when it has one."""
    img = open_rgb(root, ref, min_side=None if box is not None else size)
    if box is not None:
        img = crop_square(img, box)
    return resize(img, size)


def frame_indices(available: int, frames: int) -> list[int]:
    """``frames`` indices at the centres of equal segments of a clip (the usual test-time pick);
    a short clip repeats its last frame."""
    if available >= frames:
        tick = available / frames
        return [int(tick / 2 + tick * k) for k in range(frames)]
    return list(range(available)) + [available - 1] * (frames - available)


def load_clip(root: Path, clip: Clip, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, size, size, 3) face views and (T, size, size, 3) context views of one clip."""
    if not clip.frames:
        raise Unreadable("missing (no frames)")
    faces, contexts = [], []
    for i in frame_indices(len(clip.frames), frames):
        img = open_rgb(root, clip.frames[i])
        box = clip.face_boxes[i] if i < len(clip.face_boxes) else None
        faces.append(resize(crop_square(img, box) if box is not None else img, size))
        body = img
        if clip.body_box is not None:
            bx, by, bw, bh = (int(round(v)) for v in clip.body_box)
            body = img[max(0, by) : by + bh, max(0, bx) : bx + bw]
            if body.size == 0:
                body = img
        contexts.append(letterbox(body, size))
    return np.stack(faces), np.stack(contexts)
