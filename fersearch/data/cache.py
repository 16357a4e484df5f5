"""The decode-once cache: every split decoded, cropped and resized once per host into uint8 arrays.

Layout, in ``<dataset>/fersearch_cache/`` (or $FERSEARCH_CACHE_DIR, or ~/.cache/fersearch when the
dataset is read-only)::

    <split>-<size>px-<crop>-<list>-<fingerprint>.u8      raw (N, S, S, 3) uint8, C order
    <split>-<size>px-<crop>-<list>-<fingerprint>.ctx.u8  context views (clip datasets only)
    <split>-<size>px-<crop>-<list>-<fingerprint>.json    labels, refs, skipped samples; written last
    <split>-<size>px-<crop>-<list>-<fingerprint>.lock

<list> hashes the split's sample list (so k-fold folds or subsets of one split coexist); the
fingerprint hashes the sample list, labels, crop boxes, every source file's size and mtime, the
size, the crop policy and the cache version, so edited images get a new cache and the old one of
the same sample list is removed. The arrays are built under a file lock (two workers starting together build
once: the second waits, then opens the first's result), in temporary files renamed into place
(a crash never leaves a half-written cache that looks complete), and mapped read-only: every
trial and every worker on the host shares the same pages through the OS page cache.

A build first checks that the disk holds the arrays (a DataError says how many bytes are needed
and free, and to set $FERSEARCH_CACHE_DIR), then reserves their blocks before mapping them, so a
disk that fills meanwhile fails as an error rather than SIGBUS; however it fails, its temporary
files are removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..errors import DataError
from .imageio import FACE_MARGIN, Unreadable, load_clip, load_image, release_pixel_tables, source_file
from .manifest import Manifest, va_rows

log = logging.getLogger(__name__)

# 2: 16-bit and float images scaled to 8 bits (1 clipped them to 255 / 0); 3: EXIF orientation
CACHE_VERSION = 3
CROPS = ("face", "full")  # face: crop to the reader's face box when there is one; full: never crop
ENV_DIR = "FERSEARCH_CACHE_DIR"
_THREADS = 4  # PIL and OpenCV release the GIL while decoding and resizing
_HEADROOM = 16 << 20  # free space left beyond the arrays: the metadata file, and not a full disk


@dataclass
class SplitArrays:
    images: np.ndarray  # (N, S, S, 3) uint8 RGB; (N, T, S, S, 3) for clips decoded with T > 1
    labels: np.ndarray  # (N,) int64
    paths: list[str]
    skipped: list[str] = field(default_factory=list)
    context: np.ndarray | None = None  # clip datasets: body/scene views, same shape as images
    au: np.ndarray | None = None  # (N, A) uint8 multi-label AU targets (RAF-CE), else None
    va: np.ndarray | None = None  # (N, 2) float32 valence, arousal (AffectNet); NaN: unlabelled
    skip_reasons: dict[str, str] = field(default_factory=dict)
    cache_file: Path | None = None

    def subset(self, idx) -> SplitArrays:
        """The samples at ``idx``, every per-sample array with them (context views, AU and VA
        targets)."""
        idx = np.asarray(idx, dtype=np.int64)
        return SplitArrays(
            images=self.images[idx],
            labels=self.labels[idx],
            paths=[self.paths[i] for i in idx],
            context=self.context[idx] if self.context is not None else None,
            au=self.au[idx] if self.au is not None else None,
            va=self.va[idx] if self.va is not None else None,
        )

    @staticmethod
    def concat(*parts: SplitArrays) -> SplitArrays:
        """Splits one after another (train + val for a refit). An optional array (context, AU
        targets) is kept only when every part has it: a part without it could not fill it."""

        def joined(name: str):
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if all(a is not None for a in arrays) else None

        return SplitArrays(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            paths=[path for p in parts for path in p.paths],
            context=joined("context"),
            au=joined("au"),
            va=joined("va"),
        )


def cache_dir(root: Path) -> Path:
    """Where a dataset's cache lives: $FERSEARCH_CACHE_DIR, beside the data, or the user cache."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser() / _root_key(root)
    local = root / "fersearch_cache"
    if os.access(root, os.W_OK) or os.access(local, os.W_OK):
        return local
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fersearch" / _root_key(root)


def _root_key(root: Path) -> str:
    resolved = str(root.resolve())
    return f"{root.resolve().name}-{hashlib.sha256(os.fsencode(resolved)).hexdigest()[:10]}"


def _crop_tag(crop: str) -> str:
    return f"{crop}{FACE_MARGIN:g}" if crop == "face" else crop


def fingerprint(manifest: Manifest, split: str, size: int, crop: str = "face", frames: int = 1) -> str:
    """A hash of everything the cached pixels depend on (sources stat'ed, never read)."""
    h = hashlib.sha256()
    head = {
        "version": CACHE_VERSION,
        "format": manifest.format,
        "split": split,
        "size": size,
        "crop": _crop_tag(crop),
        "frames": frames,
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    boxes = (manifest.boxes or {}) if crop == "face" else {}
    root = str(manifest.root) + os.sep
    parts: list[str] = []  # one hash update at the end: per-sample updates cost more than stat
    for ref, label, sources in _sources(manifest, split):
        parts.append(f"{ref}\0{label}\0{boxes.get(ref)}\0")
        if manifest.clips is not None:
            clip = manifest.clips.get(ref)
            parts.append(repr((clip.face_boxes, clip.body_box) if clip else None))
        for src in sources:
            parts.append(_stat_key(root + src))
    h.update(os.fsencode("".join(parts)))  # fsencode: a file name need not be UTF-8 (surrogates)
    return h.hexdigest()[:20]


def _sources(manifest: Manifest, split: str) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """Each sample with the files its pixels come from (pixel-row CSVs are stat'ed once)."""
    seen_csv: set[str] = set()
    for ref, label in manifest.splits.get(split, []):
        if manifest.clips is not None and ref in manifest.clips:
            yield ref, label, manifest.clips[ref].frames
        elif "#" in ref:
            src = source_file(ref)
            yield ref, label, () if src in seen_csv else (src,)
            seen_csv.add(src)
        else:
            yield ref, label, (ref,)


def _stat_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing\0"
    return f"{st.st_size}:{st.st_mtime_ns}\0"


def load_split(
    manifest: Manifest,
    split: str,
    size: int,
    crop: str = "face",
    frames: int = 1,
    progress: Callable[[int, int], None] | None = None,
    directory: Path | None = None,
) -> SplitArrays:
    """The split's arrays from the cache, building it first when it is missing or stale."""
    if crop not in CROPS:
        raise DataError(f"unknown crop policy {crop!r}; valid: {', '.join(CROPS)}")
    if size < 1:
        raise DataError(f"image size must be at least 1 pixel, got {size}")
    items = manifest.splits.get(split, [])
    if not items:
        raise DataError(f"split {split!r} of {str(manifest.root)!r} is empty")
    fp = fingerprint(manifest, split, size, crop, frames)
    directory = directory or cache_dir(manifest.root)
    listed = hashlib.sha256(os.fsencode("".join(f"{ref}\0{label}\0" for ref, label in items))).hexdigest()[:8]
    prefix = f"{split}-{size}px-{crop}-{listed}-"
    stem = directory / f"{prefix}{fp}"
    meta = stem.with_suffix(".json")
    if not meta.is_file():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create the cache directory {str(directory)!r} ({exc.strerror}); "
                f"set {ENV_DIR} to a writable directory"
            ) from None
        with FileLock(str(stem) + ".lock"):
            if not meta.is_file():  # another process may have built it while we waited
                _build(manifest, split, size, crop, frames, stem, progress)
                _remove_stale(directory, prefix, keep=fp)
    return _open(manifest, split, stem)


def _build(manifest, split, size, crop, frames, stem: Path, progress) -> None:
    t0 = time.perf_counter()
    items = manifest.splits[split]
    n = len(items)
    clip_mode = manifest.clips is not None
    shape = (n, frames, size, size, 3) if clip_mode and frames > 1 else (n, size, size, 3)
    tmp = Path(f"{stem}.u8.tmp{os.getpid()}")
    tmp_ctx = Path(f"{stem}.ctx.u8.tmp{os.getpid()}")
    meta_tmp = Path(f"{stem}.json.tmp{os.getpid()}")
    row_bytes = math.prod(shape[1:])
    _check_free_space(stem.parent, row_bytes * n * (2 if clip_mode else 1), split, n, size)
    boxes = (manifest.boxes or {}) if crop == "face" else {}
    root = manifest.root

    def decode(item):
        ref = item[0]
        try:
            if clip_mode:
                clip = manifest.clips.get(ref)
                if clip is None:
                    raise Unreadable("missing (no clip entry)")
                face, ctx = load_clip(root, clip, size, frames)
                return (face, ctx) if frames > 1 else (face[0], ctx[0])
            return load_image(root, ref, size, boxes.get(ref)), None
        except Unreadable as exc:
            return str(exc)

    kept_refs, kept_labels, skipped = [], [], []
    images = context = None
    try:
        # Blocks reserved before mapping: on a disk that fills meanwhile, writing through a sparse
        # map would kill the process with SIGBUS; a reservation fails here, as an OSError.
        images = _allocate(tmp, shape)
        context = _allocate(tmp_ctx, shape) if clip_mode else None
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            # Decoded rows are written in order, skipping failures, so the kept rows end up
            # contiguous at the front and the file is simply truncated afterwards.
            for i, out in enumerate(pool.map(decode, items)):
                ref, label = items[i]
                if isinstance(out, str):
                    skipped.append([ref, out])
                else:
                    k = len(kept_refs)
                    images[k] = out[0]
                    if context is not None:
                        context[k] = out[1]
                    kept_refs.append(ref)
                    kept_labels.append(label)
                if progress is not None and (i % 64 == 0 or i == n - 1):
                    progress(i + 1, n)
        if not kept_refs:
            reasons = sorted({r for _, r in skipped})
            raise DataError(
                f"none of the {n} {split} samples of {str(root)!r} could be read "
                f"(first: {items[0][0]!r}: {skipped[0][1]}; reasons: {', '.join(reasons)}); "
                f"check the dataset was unpacked completely"
            )
        images.flush()
        if context is not None:
            context.flush()
        images = context = None  # unmap before shrinking the files to the kept rows
        for path in (tmp, tmp_ctx) if clip_mode else (tmp,):
            os.truncate(path, row_bytes * len(kept_refs))
        meta = {
            "version": CACHE_VERSION,
            "format": manifest.format,
            "split": split,
            "size": size,
            "crop": _crop_tag(crop),
            "frames": frames,
            "shape": [len(kept_refs), *shape[1:]],
            "context": clip_mode,
            "labels": kept_labels,
            "refs": kept_refs,
            "skipped": skipped,
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        meta_tmp.write_text(json.dumps(meta))
        # Data first, metadata last: the .json's presence means the arrays are complete.
        os.replace(tmp, f"{stem}.u8")
        if clip_mode:
            os.replace(tmp_ctx, f"{stem}.ctx.u8")
        os.replace(meta_tmp, f"{stem}.json")
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise DataError(
            f"cannot write the {split} cache in {str(stem.parent)!r} ({exc.strerror or exc}); "
            + ("free space there or " if full else "")
            + f"set {ENV_DIR} to a writable directory"
            + (" on a disk with room" if full else "")
        ) from None
    finally:
        images = context = None
        release_pixel_tables()  # a FER2013 CSV's pixel strings are only needed while building
        for path in (tmp, tmp_ctx, meta_tmp):
            path.unlink(missing_ok=True)
    if skipped:
        log.warning(
            "%d %s samples skipped while caching (%s): %s%s",
            len(skipped),
            split,
            ", ".join(sorted({r.split(" (")[0] for _, r in skipped})),
            ", ".join(ref for ref, _ in skipped[:5]),
            " ..." if len(skipped) > 5 else "",
        )


def _check_free_space(directory: Path, needed: int, split: str, n: int, size: int) -> None:
    """Refuse a build the disk cannot hold, before writing anything (a memory map on a full disk
    ends in SIGBUS: no message, and a temporary file left behind)."""
    free = shutil.disk_usage(directory).free
    if needed + _HEADROOM > free:
        raise DataError(
            f"the {split} cache ({n} samples at {size}px) needs {_human(needed)} ({needed} bytes) in "
            f"{str(directory)!r}, which has {_human(free)} ({free} bytes) free (a build leaves "
            f"{_human(_HEADROOM)} to spare); free space there, set "
            f"{ENV_DIR} to a directory on a disk with room, or use a smaller image size"
        )


def _allocate(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new file of the array's size with its blocks reserved, mapped for writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        nbytes = math.prod(shape)
        try:
            os.posix_fallocate(fd, 0, nbytes)  # glibc writes zeros where the filesystem cannot
        except (AttributeError, OSError) as exc:  # AttributeError: no posix_fallocate (macOS)
            if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            os.ftruncate(fd, nbytes)  # no reservation possible: the free-space check must do
    finally:
        os.close(fd)
    return np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)


def _human(nbytes: float) -> str:
    unit = "bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            break
        nbytes /= 1000
    return f"{nbytes:.0f} bytes" if unit == "bytes" else f"{nbytes:.1f} {unit}"


def _remove_stale(directory: Path, prefix: str, keep: str) -> None:
    """Delete caches of the same sample list, size and crop built from older source files.

    A process still mapping one keeps its pages until it exits (unlink, not truncate)."""
    for path in directory.glob(prefix + "*"):
        if keep not in path.name and ".tmp" not in path.name:
            path.unlink(missing_ok=True)


def _open(manifest: Manifest, split: str, stem: Path) -> SplitArrays:
    meta = json.loads(stem.with_suffix(".json").read_text())
    shape = tuple(meta["shape"])
    # Copy-on-write mapping: pages come from (and stay shared in) the page cache; the file on
    # disk can never be modified through it.
    images = np.memmap(f"{stem}.u8", dtype=np.uint8, mode="c", shape=shape)
    context = np.memmap(f"{stem}.ctx.u8", dtype=np.uint8, mode="c", shape=shape) if meta["context"] else None
    refs = meta["refs"]
    au = None
    if manifest.au_names is not None and manifest.au_targets is not None:
        zero = (0,) * len(manifest.au_names)
        au = np.asarray([manifest.au_targets.get(r, zero) for r in refs], np.uint8).reshape(
            len(refs), len(manifest.au_names)
        )
    # Like the AU targets, valence/arousal come from the manifest, matched to the kept refs:
    # they are not in the cache files, so adding them changed neither the format nor the key.
    va = va_rows(manifest.va_targets, refs) if manifest.va_targets is not None else None
    return SplitArrays(
        images=images,
        labels=np.asarray(meta["labels"], dtype=np.int64),
        paths=refs,
        skipped=[ref for ref, _ in meta["skipped"]],
        context=context,
        au=au,
        va=va,
        skip_reasons={ref: why for ref, why in meta["skipped"]},
        cache_file=Path(f"{stem}.u8"),
    )
