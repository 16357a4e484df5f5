"""Open one sample as RGB pixels: image files, FER2013-style pixel rows, face and context crops.

Every failure to read a sample (missing file, truncated JPEG, not an image, a pixel row of the
wrong length, an image over ``MAX_PIXELS``) raises ``Unreadable`` with a short reason, which the
cache counts and lists; one bad file never costs the others.

Every image mode PIL opens comes out as 8-bit RGB. PIL's own ``convert("RGB")`` clips 16-bit,
32-bit integer and float pixels instead of scaling them (a 16-bit PNG turned all white, a float
TIFF all black), so those modes are scaled here (see ``to_8bit``).

A photo's EXIF orientation is applied, as OpenCV's ``imread`` and every photo viewer do: a phone
picture taken sideways comes out upright, and face boxes refer to the upright image.
"""

from __future__ import annotations

import csv
import math
import os
import re
import stat
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .manifest import Box, Clip

FACE_MARGIN = 0.1  # a face box is widened by this fraction of its side before cropping
# Images with more pixels are refused before their pixels are decoded: a 74-byte PNG can declare
# 40000x40000 (4.8 GB as RGB). 50 megapixels is 150 MB as RGB, beyond any camera photo of a face
# worth training on; a larger JPEG is first decoded at 1/2, 1/4 or 1/8 scale (``draft``) when
# that brings it under the limit.
MAX_PIXELS = 50_000_000
# The formats read (PIL's names; MPO: a camera's multi-picture JPEG, PPM: also PGM). PIL knows
# forty; an EPS file named .jpg would make it run Ghostscript, and the rarer parsers are the least
# hardened, so anything else is "not an image".
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "WEBP", "TIFF", "GIF", "PPM")
_JPEG_SCALES = (1, 2, 4, 8)  # what libjpeg can decode directly from the DCT
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})  # scaled by to_8bit
# Unsigned 16-bit value -> 8 bits, rounded (v * 255 / 65535): 64 KB, no per-image float copy.
_LUT16 = np.round(np.arange(65536) * (255 / 65535)).astype(np.uint8)

# PIL warns from 89 megapixels and raises from 179; fersearch refuses from MAX_PIXELS itself (with
# a reason per file), so PIL's warning would only repeat it, once per file, on stderr.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@lru_cache(maxsize=1)
def _formats() -> tuple[str, ...]:
    """IMAGE_FORMATS this PIL has (naming one whose plugin is not loaded yet is a KeyError)."""
    Image.init()
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


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
    return np.asarray(open_image(root / ref, min_side=min_side), dtype=np.uint8)


def open_image(path: Path, min_side: int | None = None, max_side: int | None = None) -> Image.Image:
    """One image file as a loaded RGB PIL image, or ``Unreadable`` with the reason.

    Refused without decoding when it has more than ``MAX_PIXELS`` pixels (after JPEG drafting).
    ``min_side``: a JPEG may be decoded smaller, down to this shorter side. ``max_side``: the image
    is then shrunk by an integer box filter (``Image.reduce``) until its longer side is at most
    this, so a caller holding many images (a prediction batch) holds small ones.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise Unreadable("not a regular file")
        with Image.open(path, formats=_formats()) as im:
            _draft(im, min_side)
            _check_pixels(*im.size)
            turn = _orientation(im)
            rgb = _to_rgb(im)
            if turn is not None:  # as a camera or phone shows it: upright
                rgb = rgb.transpose(turn)
    except FileNotFoundError:
        raise Unreadable("missing") from None
    except Image.DecompressionBombError as exc:  # PIL's own hard limit, checked when opening
        raise Unreadable(_bomb_reason(exc)) from None
    except UnidentifiedImageError:
        raise Unreadable("not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:  # truncated or corrupt
        raise Unreadable(f"unreadable ({str(exc)[:60]})") from None
    if max_side is not None and max(rgb.size) > max_side:
        rgb = rgb.reduce(math.ceil(max(rgb.size) / max_side))
    return rgb


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header alone, or ``Unreadable``."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise Unreadable("not a regular file")
        with Image.open(path, formats=_formats()) as im:
            turn = _orientation(im)
            return im.size[::-1] if turn in _SIDEWAYS else im.size
    except FileNotFoundError:
        raise Unreadable("missing") from None
    except Image.DecompressionBombError as exc:
        raise Unreadable(_bomb_reason(exc)) from None
    except UnidentifiedImageError:
        raise Unreadable("not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Unreadable(f"unreadable ({str(exc)[:60]})") from None


# EXIF orientation (tag 0x0112) -> the transpose that makes the image upright, as
# PIL.ImageOps.exif_transpose does; 5-8 swap width and height.
_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS = {_TRANSPOSES[k] for k in (5, 6, 7, 8)}


def _orientation(im: Image.Image) -> Image.Transpose | None:
    try:
        return _TRANSPOSES.get(im.getexif().get(_ORIENTATION_TAG))
    except Exception:  # a malformed EXIF block: PIL raises many types; the pixels are still fine
        return None


def _bomb_reason(exc: Exception) -> str:
    pixels = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (1600000000 pixels) exceeds ..."
    return _too_large(int(pixels.group(1)) if pixels else None)


def _too_large(pixels: int | None, width: int | None = None, height: int | None = None) -> str:
    size = f"{width}x{height} = " if width is not None else ""
    got = f"{size}{pixels / 1e6:.0f} megapixels" if pixels is not None else "over 179 megapixels"
    return f"too large ({got}; the limit is {MAX_PIXELS / 1e6:g} megapixels: downscale it)"


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise Unreadable(_too_large(width * height, width, height))


def _draft(im: Image.Image, min_side: int | None) -> None:
    """Decode a JPEG at the smallest DCT scale that keeps ``min_side`` and fits ``MAX_PIXELS``."""
    if im.format != "JPEG":
        return
    w, h = im.size
    fits = next((s for s in _JPEG_SCALES if math.ceil(w / s) * math.ceil(h / s) <= MAX_PIXELS), None)
    if fits is None:
        return  # too large even at 1/8: _check_pixels refuses it
    hint = max((s for s in _JPEG_SCALES if min_side and min(w, h) // s >= min_side), default=1)
    scale = max(fits, hint)
    if scale > 1:
        im.draft("RGB", (max(1, w // scale), max(1, h // scale)))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _WIDE_MODES:
        grey = to_8bit(np.asarray(im))
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if im.mode == "RGB":
        im.load()
        return im.copy()  # the file closes with the ``with``; a copy outlives it
    return im.convert("RGB")


def to_8bit(a: np.ndarray) -> np.ndarray:
    """Greyscale pixels of any integer or float type as uint8, scaled, never clipped.

    - unsigned 16-bit (PIL's I;16 modes: 16-bit PNG and TIFF): by the type's range, 0..65535 ->
      0..255, so a 16-bit photo looks as its 8-bit version would;
    - 32-bit integer (PIL's mode I, also how it opens 16-bit PGM): by the 16-bit range when every
      value lies in 0..65535, else by the image's own min..max;
    - float (PIL's mode F: float TIFF): 0..1 -> 0..255 when every finite value lies in [0, 1]
      (the float-image convention), else by the image's own min..max; NaN and infinities become 0.
    An image of one value outside those ranges has no contrast to keep and becomes 0.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:
        return _LUT16[a]
    if a.dtype.kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 65535:
            return _LUT16[a]
        return _stretch(a, lo, hi)
    a = a.astype(np.float32, copy=False)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    if not finite.all():
        a = np.where(finite, a, np.nan)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    return _stretch(a, lo, hi)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(a - lo) / (hi - lo) * 255 in row blocks (no full-size float64 copy); NaN -> 0."""
    out = np.zeros(a.shape, np.uint8)
    if hi <= lo:
        return out
    k = 255.0 / (hi - lo)
    step = max(1, (1 << 22) // max(1, a.shape[-1]))
    for r in range(0, a.shape[0], step):
        block = (a[r : r + step].astype(np.float64) - lo) * k + 0.5
        out[r : r + step] = np.nan_to_num(block, nan=0.0)
    return out


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
    except OSError:
        raise Unreadable("missing") from None
    except ValueError as exc:  # not UTF-8, no pixels column: the reader names the line
        raise Unreadable(f"unreadable ({str(exc)[:60]})") from None
    if not 0 <= row < len(table):
        raise Unreadable(f"row {row} not in {path.name}")
    text = table[row]
    if len(text) > 4 * MAX_PIXELS:  # at least two characters a value: refuse before splitting
        raise Unreadable(
            f"too large (a pixel row of {len(text)} characters; the limit is {MAX_PIXELS / 1e6:g} megapixels)"
        )
    try:
        values = np.array(text.split(), dtype=np.float32)
    except ValueError:
        raise Unreadable("pixels are not numbers") from None
    if len(values) > MAX_PIXELS:
        raise Unreadable(_too_large(len(values)))
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
