"""Which device a worker trains on; several workers per host each take their own GPU.

``--gpu auto`` (the compose default) takes the first GPU whose lock file (``$FERSEARCH_LOCK_DIR``, default
``/tmp/fersearch-gpu-locks``) no other worker on this host holds, so ``docker compose`` replicas
that all see every GPU still spread one per GPU. The lock is an flock: it is released when the
process dies, however it dies. With no GPU visible, ``auto`` falls back to the CPU with a
warning, so the same command runs on a laptop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from pathlib import Path

from ..errors import InvalidArgument

LOCK_DIR_ENV = "FERSEARCH_LOCK_DIR"


def choose_device(gpu: str | None) -> tuple[str, contextlib.AbstractContextManager]:
    """Returns (device string for TrialConfig, context manager holding the GPU lock)."""
    if gpu is None:
        return "auto", contextlib.nullcontext()
    import torch

    count = torch.cuda.device_count()
    if gpu == "auto":
        if count == 0:
            warnings.warn("--gpu auto: no CUDA device is visible; training on the CPU", stacklevel=2)
            return "cpu", contextlib.nullcontext()
        lock_dir = Path(os.environ.get(LOCK_DIR_ENV, "/tmp/fersearch-gpu-locks"))
        lock_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            fh = open(lock_dir / f"gpu{index}.lock", "w")  # noqa: SIM115 (held for the worker's life)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            return f"cuda:{index}", contextlib.closing(fh)
        raise InvalidArgument(
            f"--gpu auto: all {count} GPUs of this host are taken by other workers; "
            f"start at most {count} workers per host, or pass --gpu INDEX to share one"
        )
    if not gpu.isdigit():
        raise InvalidArgument(f"--gpu {gpu!r}: expected auto or a CUDA device index such as 0")
    if count == 0:
        raise InvalidArgument(f"--gpu {gpu}: no CUDA device is visible; omit --gpu to use the CPU")
    if int(gpu) >= count:
        raise InvalidArgument(f"--gpu {gpu}: this host has {count} CUDA device(s), 0..{count - 1}")
    return f"cuda:{int(gpu)}", contextlib.nullcontext()
