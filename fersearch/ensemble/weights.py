"""Member weights on disk: safetensors files written atomically and verified by SHA-256 when
read (nothing here unpickles)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside ``path``, then rename: a crash leaves the old file
    or the new one, never half of one."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def save_weights(path: Path, model: torch.nn.Module) -> str:
    # safetensors refuses tensors that share storage (timm's ConvNeXt head norm is registered
    # under two names): private CPU copies, as the training checkpoints do.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    return sha256_file(path)


def verify_weights(path: Path, expected_sha256: str | None, fix: str) -> None:
    """A missing file, or one whose bytes changed since it was written, is a ModelError."""
    if not path.is_file():
        raise ModelError(f"weights file {str(path)!r} is missing; {fix}")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ModelError(
            f"weights file {str(path)!r} does not match the SHA-256 recorded when it was written "
            f"(corrupted, truncated or replaced); {fix}"
        )


def load_weights(model: torch.nn.Module, path: Path, expected_sha256: str | None, fix: str) -> None:
    """Load safetensors weights into ``model``; any missing, altered or corrupt file is a ModelError."""
    verify_weights(path, expected_sha256, fix)
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # safetensors and torch raise several types on corrupt files
        raise ModelError(f"weights file {str(path)!r} is unreadable ({exc}); {fix}") from None
