"""Inference with an exported ensemble: images, folders, video files and a webcam -> CSV.

Every prediction goes through ``Ensemble.predict_pil``: the exact resize, TTA views, member
weights and calibration that finalize evaluated. Video frames are predicted one by one and also
smoothed over time with an exponential moving average of the probabilities (a single-frame
expression flickers; the smoothed column is what a demo should show). ``--detect-faces`` crops
the largest face found by OpenCV's bundled Haar cascade first, for photos that are not already
aligned face crops like the training data.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .data.imageio import Unreadable, open_image
from .ensemble import Ensemble
from .errors import DataError, InvalidArgument, ModelError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
HAAR_FILE = "haarcascade_frontalface_default.xml"


# ----------------------------------------------------------------------------- inputs


def collect_inputs(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """(images, videos). Folders are searched recursively, in sorted order."""
    images, videos = [], []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                ext = f.suffix.lower()
                (images if ext in IMAGE_EXTS else videos if ext in VIDEO_EXTS else []).append(f)
        elif p.is_file():
            ext = p.suffix.lower()
            if ext in IMAGE_EXTS:
                images.append(p)
            elif ext in VIDEO_EXTS:
                videos.append(p)
            else:
                raise InvalidArgument(
                    f"{str(p)!r} is neither an image nor a video by its extension; images: "
                    f"{', '.join(sorted(IMAGE_EXTS))}; videos: {', '.join(sorted(VIDEO_EXTS))}"
                )
        else:
            raise InvalidArgument(f"{str(p)!r} does not exist; give image files, video files or folders")
    if not images and not videos:
        raise InvalidArgument(
            f"no images or videos found in {', '.join(map(str, paths))} "
            f"(extensions searched: {', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))})"
        )
    return images, videos


# ----------------------------------------------------------------------------- faces


class FaceCropper:
    """Largest frontal face by OpenCV's bundled Haar cascade, with a margin, else the whole image."""

    def __init__(self, margin: float = 0.25, min_size: int = 24):
        import cv2

        haar_dir = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "")
        if not hasattr(cv2, "CascadeClassifier") or not (haar_dir / HAAR_FILE).is_file():
            raise ModelError(
                f"--detect-faces needs OpenCV's bundled Haar cascade ({HAAR_FILE} in "
                f"cv2.data.haarcascades), which this OpenCV {cv2.__version__} does not ship (OpenCV 5 "
                f"moved the cascades out of the main package). Install OpenCV 4: "
                f"`pip install 'opencv-python-headless<5'`, or give face crops and drop --detect-faces"
            )
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(str(haar_dir / HAAR_FILE))
        if self.cascade.empty():
            raise ModelError(f"OpenCV could not load {haar_dir / HAAR_FILE}")
        self.margin, self.min_size = margin, min_size

    def detect(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        grey = self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2GRAY)
        faces = self.cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size, self.min_size)
        )
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda b: b[2] * b[3])
        return x, y, w, h

    def crop(self, im: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
        rgb = np.asarray(im.convert("RGB"))
        box = self.detect(rgb)
        if box is None:
            return im, None
        x, y, w, h = box
        side = int(max(w, h) * (1 + 2 * self.margin))
        cx, cy = x + w // 2, y + h // 2
        left, top = max(0, cx - side // 2), max(0, cy - side // 2)
        right, bottom = min(rgb.shape[1], left + side), min(rgb.shape[0], top + side)
        return Image.fromarray(rgb[top:bottom, left:right]), box


# ----------------------------------------------------------------------------- predictions


@dataclass
class Row:
    source: str
    kind: str  # image | video | webcam
    probs: np.ndarray | None = None  # (K,) calibrated ensemble probabilities
    frame: int | None = None
    time_s: float | None = None
    face: tuple[int, int, int, int] | None = None
    smoothed: np.ndarray | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)


def _predict_batch(ens: Ensemble, images: list[Image.Image], cropper: FaceCropper | None):
    boxes = [None] * len(images)
    if cropper is not None:
        crops = [cropper.crop(im) for im in images]
        images, boxes = [c[0] for c in crops], [c[1] for c in crops]
    return ens.predict_pil(images), boxes


MAX_SIDE = 1024  # images are shrunk to this side on reading: a batch of 32 holds at most ~100 MB


def predict_images(
    ens: Ensemble, paths: list[Path], cropper: FaceCropper | None = None, batch_size: int = 32
) -> list[Row]:
    """One row per image; an unreadable file gets a row with its error instead of a crash."""
    rows: list[Row] = []
    for start in range(0, len(paths), batch_size):
        chunk, ims, ok_rows = paths[start : start + batch_size], [], []
        for p in chunk:
            try:
                # bounded: a huge or hostile file costs its own row, never the batch or memory
                ims.append(open_image(p, max_side=MAX_SIDE))
                row = Row(str(p), "image")
                ok_rows.append(row)
            except Unreadable as exc:
                row = Row(str(p), "image", error=f"unreadable image: {exc}")
            rows.append(row)
        if ims:
            probs, boxes = _predict_batch(ens, ims, cropper)
            for row, p, box in zip(ok_rows, probs, boxes):
                row.probs, row.face = p, box
    return rows


class Smoother:
    """Exponential moving average of probability vectors: s_t = a * p_t + (1 - a) * s_{t-1}."""

    def __init__(self, alpha: float):
        if not 0 < alpha <= 1:
            raise InvalidArgument(f"--smooth must be in (0, 1] (got {alpha}); 1 means no smoothing")
        self.alpha, self.state = alpha, None

    def __call__(self, p: np.ndarray) -> np.ndarray:
        self.state = p.copy() if self.state is None else self.alpha * p + (1 - self.alpha) * self.state
        return self.state


def _frames(cap, stride: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    index, yielded = 0, 0
    while max_frames is None or yielded < max_frames:
        ok, bgr = cap.read()
        if not ok:
            return
        if index % stride == 0:
            yield index, bgr[:, :, ::-1].copy()  # OpenCV decodes BGR
            yielded += 1
        index += 1


def _predict_stream(
    ens: Ensemble,
    cap,
    source: str,
    kind: str,
    fps: float,
    stride: int,
    smooth: float,
    cropper: FaceCropper | None,
    max_frames: int | None,
    batch_size: int,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    if stride < 1:
        raise InvalidArgument(f"--stride must be at least 1 (got {stride})")
    smoother, rows, pending = Smoother(smooth), [], []

    def flush():
        probs, boxes = _predict_batch(ens, [Image.fromarray(f) for _, f in pending], cropper)
        for (index, _), p, box in zip(pending, probs, boxes):
            row = Row(source, kind, p, index, index / fps if fps > 0 else None, box, smoother(p))
            rows.append(row)
            if on_row is not None:
                on_row(row)
        pending.clear()

    for index, rgb in _frames(cap, stride, max_frames):
        pending.append((index, rgb))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return rows


def predict_video(
    ens: Ensemble,
    path: Path,
    cropper: FaceCropper | None = None,
    stride: int = 1,
    smooth: float = 0.3,
    max_frames: int | None = None,
    batch_size: int = 16,
) -> list[Row]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"OpenCV cannot open the video {str(path)!r} (unknown codec or damaged file)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rows = _predict_stream(
            ens, cap, str(path), "video", fps, stride, smooth, cropper, max_frames, batch_size
        )
    finally:
        cap.release()
    if not rows:
        raise DataError(f"the video {str(path)!r} has no readable frames")
    return rows


def open_camera(index: int):
    """A cv2.VideoCapture on camera ``index``, or a clear error when there is none."""
    import cv2

    devices = sorted(Path("/dev").glob("video*")) if sys.platform.startswith("linux") else None
    if devices is not None and not devices:
        raise DataError(
            "--webcam: no camera found (no /dev/video* device on this machine); "
            "predict on a video file instead: fersearch predict --model DIR clip.mp4"
        )
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        found = ", ".join(map(str, devices)) if devices else "none listed"
        raise DataError(
            f"--webcam: OpenCV cannot open camera {index} (devices: {found}); "
            f"try --camera N with another index, or predict on a video file"
        )
    return cap


def predict_webcam(
    ens: Ensemble,
    camera: int = 0,
    cropper: FaceCropper | None = None,
    smooth: float = 0.3,
    max_frames: int | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Frame by frame (batch 1, so the printed emotion is live) until max_frames or Ctrl+C."""
    import cv2

    cap = open_camera(camera)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    try:
        return _predict_stream(
            ens, cap, f"camera:{camera}", "webcam", fps, 1, smooth, cropper, max_frames, 1, on_row
        )
    except KeyboardInterrupt:
        return []
    finally:
        cap.release()


# ----------------------------------------------------------------------------- output


def top_k(probs: np.ndarray, class_names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(class_names[i], float(probs[i])) for i in order]


# A spreadsheet runs a cell that starts with one of these as a formula ("=cmd|' calc'!A0" from a
# file name); a leading apostrophe makes it text (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """Text cells that a spreadsheet would read as a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_header(class_names: list[str], k: int) -> list[str]:
    cols = ["source", "kind", "frame", "time_s", "face_x", "face_y", "face_w", "face_h"]
    for i in range(1, k + 1):
        cols += [f"top{i}", f"top{i}_prob"]
    cols += [f"p_{c}" for c in class_names]
    cols += ["smoothed_top1", "smoothed_top1_prob", "error"]
    return [safe_cell(c) for c in cols]


def csv_row(row: Row, class_names: list[str], k: int) -> list:
    face = row.face or ("", "", "", "")
    out = [row.source, row.kind, "" if row.frame is None else row.frame]
    out += ["" if row.time_s is None else f"{row.time_s:.3f}", *face]
    if row.probs is None:
        out += [""] * (2 * k + len(class_names))
    else:
        for name, p in top_k(row.probs, class_names, k):
            out += [name, f"{p:.6f}"]
        out += [f"{p:.6f}" for p in row.probs]
    if row.smoothed is not None:
        name, p = top_k(row.smoothed, class_names, 1)[0]
        out += [name, f"{p:.6f}"]
    else:
        out += ["", ""]
    out.append(row.error)
    return [safe_cell(c) for c in out]


def write_csv(rows: list[Row], class_names: list[str], k: int, out) -> None:
    """``out``: a path, or an open text stream (stdout)."""
    k = min(k, len(class_names))
    if isinstance(out, str | Path):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            write_csv(rows, class_names, k, fh)
        return
    w = csv.writer(out)
    w.writerow(csv_header(class_names, k))
    for row in rows:
        w.writerow(csv_row(row, class_names, k))
