"""Checkpoints that survive a crash at any instant: safetensors for tensors, JSON for the rest.

A checkpoint named NAME in a directory is two files:

    NAME-<8 hex>.safetensors   every tensor: model, optimizer state, EMA/SWA copies, best
                               weights, RNG states (as uint8 tensors)
    NAME.json                  everything else: the trial config, epoch and step to resume at,
                               scheduler and optimizer settings, history, and the tensor file's
                               name and size

The tensor file is written under a fresh name and fsynced first; then the JSON is written to a
temporary file and renamed over NAME.json (atomic on POSIX), and only then is the previous tensor
file deleted. A crash at any point leaves NAME.json naming a complete tensor file. Nothing is
ever unpickled: loading uses safetensors and json only.

Names used by the loop: ``last`` (every epoch), ``interrupted`` (SIGINT/SIGTERM), ``best`` (the
best epoch's model weights and config only; a distillation teacher or an artifact).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..config import build_config
from ..errors import ModelError
from ..models import create_model, without_finetune_source

LAST, INTERRUPTED, BEST = "last", "interrupted", "best"
FORMAT_VERSION = 1


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(directory: str | Path, name: str, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """Write NAME atomically in ``directory``; returns the path of NAME.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    previous = _tensor_file_of(json_path)

    tensor_file = f"{name}-{secrets.token_hex(4)}.safetensors"
    # safetensors refuses shared or non-contiguous storage: give it private CPU copies.
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(flat, str(directory / tensor_file), metadata={"format": "pt"})
    with open(directory / tensor_file, "rb") as f:
        os.fsync(f.fileno())

    doc = {
        "format_version": FORMAT_VERSION,
        "tensors": tensor_file,
        "tensors_bytes": (directory / tensor_file).stat().st_size,
        **state,
    }
    tmp = directory / f".{name}.json.tmp-{os.getpid()}"
    _fsync_write(tmp, json.dumps(doc, indent=1).encode())
    os.replace(tmp, json_path)
    _fsync_dir(directory)
    # Only a tensor file of this folder: a tampered NAME.json naming "../x" deletes nothing else.
    if previous and previous != tensor_file and previous.endswith(".safetensors") and "/" not in previous:
        (directory / previous).unlink(missing_ok=True)
    return json_path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tensor_file_of(json_path: Path) -> str | None:
    try:
        return json.loads(json_path.read_text()).get("tensors")
    except (OSError, ValueError):
        return None


def checkpoint_path(directory: str | Path, name: str) -> Path:
    return Path(directory) / f"{name}.json"


def read_checkpoint_state(path: str | Path) -> tuple[dict, Path]:
    """(state, its tensor file) of a checkpoint given its NAME.json (or a directory: its
    last.json), the tensor file checked for presence and size but not read."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{LAST}.json"
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist; give a checkpoint's .json file")
    try:
        state = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ModelError(f"checkpoint {str(path)!r} is not readable JSON ({exc})") from None
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {str(path)!r} holds no checkpoint record; give a checkpoint .json file")
    name = state.get("tensors")
    # only a file beside NAME.json, as save_checkpoint writes it: "../x" reads nothing elsewhere
    if not isinstance(name, str) or not name.endswith(".safetensors") or Path(name).name != name:
        raise ModelError(
            f"checkpoint {str(path)!r} names tensor file {name!r}, not a .safetensors file beside it; "
            f"give a checkpoint written by fersearch"
        )
    tensor_path = path.parent / name
    if not tensor_path.is_file() or tensor_path.stat().st_size != state.get("tensors_bytes"):
        raise ModelError(
            f"checkpoint {str(path)!r} names tensor file {tensor_path.name!r}, which is missing or "
            f"incomplete; resume from an older checkpoint or restart the trial"
        )
    return state, tensor_path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, state) of a checkpoint given its NAME.json (or a directory: its last.json)."""
    state, tensor_path = read_checkpoint_state(path)
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise ModelError(f"checkpoint tensors {str(tensor_path)!r} are unreadable: {exc}") from None
    return tensors, state


# ---- pieces of training state <-> (tensors, JSON) ---------------------------------------------


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


def optimizer_to_flat(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict -> ({"<param>.<key>": tensor}, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat_key, value in [*tensors.items(), *rest["scalars"].items()]:
        idx, key = flat_key.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [dict(g) for g in rest["param_groups"]]
    for g in groups:
        if "betas" in g:  # JSON turned the tuple into a list
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def rng_tensors(generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state(), "rng.trial": generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.trial"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---- a model alone: the best epoch's weights -------------------------------------------------


def save_model_checkpoint(
    directory: str | Path, model: torch.nn.Module, config_json: dict, info: dict
) -> Path:
    state = {
        "kind": "model",
        "config": config_json,
        "preprocess": getattr(model, "preprocess", None),
        # what fine-tuning from it compares (fersearch/models/finetune.py); a FERModel has both
        "num_classes": getattr(model, "num_classes", None),
        "class_names": list(getattr(model, "class_names", None) or []) or None,
        **info,
    }
    return save_checkpoint(directory, BEST, prefixed("model", model.state_dict()), state)


def load_model_checkpoint(path: str | Path, num_classes: int) -> torch.nn.Module:
    tensors, state = load_checkpoint(path)
    if "config" not in state:
        raise ModelError(f"checkpoint {str(path)!r} carries no config; it cannot rebuild its model")
    model = create_model(without_finetune_source(build_config(state["config"])), num_classes)
    try:
        model.load_state_dict(unprefixed("model", tensors))
    except RuntimeError as exc:
        raise ModelError(f"checkpoint {str(path)!r} does not fit its model ({exc})") from None
    return model
