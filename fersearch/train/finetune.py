"""Reading the finished model a trial fine-tunes from (``pretrained: trial:STUDY/N |
ensemble:DIR#I | /path/best.json``): a trial's ``best`` checkpoint or an exported ensemble's
member, as a FinetuneSource that ``create_model(..., init=source)`` loads
(fersearch/models/finetune.py says what is loaded).

A ``trial:`` reference needs the study storage, which this layer does not know: the process
that trains binds a locator (fersearch/search/finetune.py binds the worker's and finalize's
study storage) that turns (study, number) into the trial's ``best.json``. Nothing here unpickles:
checkpoints and members are safetensors plus JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from safetensors.torch import load_file

from ..ensemble.manifest import MANIFEST, read_manifest
from ..ensemble.weights import verify_weights
from ..errors import ModelError
from ..models.finetune import FinetuneSource
from ..models.pretrained import parse_member_ref, parse_pretrained, parse_trial_ref
from .checkpoint import BEST, load_checkpoint, read_checkpoint_state, unprefixed

# (study name, trial number) -> the trial's best.json; set by the search layer for the
# duration of a worker or finalize run (a ContextVar: one per thread, never shared by accident)
TrialLocator = Callable[[str, int], Path]
_LOCATOR: ContextVar[TrialLocator | None] = ContextVar("fersearch_trial_locator", default=None)


def bind_trial_locator(locator: TrialLocator | None) -> None:
    """From now on (in this thread), ``trial:`` sources resolve through ``locator``."""
    _LOCATOR.set(locator)


@contextmanager
def trial_locator(locator: TrialLocator | None) -> Iterator[None]:
    """``trial:`` sources resolve through ``locator`` inside the block only."""
    token = _LOCATOR.set(locator)
    try:
        yield
    finally:
        _LOCATOR.reset(token)


def locate_trial(study: str, number: int, ref: str) -> Path:
    locator = _LOCATOR.get()
    if locator is None:
        raise ModelError(
            f"pretrained {ref!r} names trial {number} of study {study!r}, which only a process that "
            f"opened the study storage can find (fersearch worker, finalize); elsewhere give the trial's "
            f"checkpoint file instead (pretrained: /path/to/checkpoints/<study>/trial_{number}/best.json)"
        )
    return Path(locator(study, number))


def read_finetune_source(pretrained: bool | str) -> FinetuneSource:
    """The finished model ``pretrained`` names, read and checked (a ModelError otherwise)."""
    ref = str(pretrained)
    request = parse_pretrained(pretrained)
    if request.kind == "trial":
        study, number = parse_trial_ref(ref)
        return from_checkpoint(locate_trial(study, number, ref), ref)
    if request.kind == "checkpoint":
        return from_checkpoint(Path(request.value), ref)
    if request.kind == "ensemble":
        folder, index = parse_member_ref(ref)
        return from_member(Path(folder), index, ref)
    raise ModelError(f"pretrained {ref!r} is not a finished model to fine-tune from")


def checkpoint_state(path: Path, ref: str) -> tuple[dict, Path]:
    """A model checkpoint's JSON and tensor file, checked without reading the tensors (the
    weights check at ``create`` asks this)."""
    path = Path(path)
    if path.is_dir() and (path / f"{BEST}.json").is_file():
        path = path / f"{BEST}.json"
    try:
        state, tensors = read_checkpoint_state(path)
    except ModelError as exc:
        raise ModelError(f"pretrained {ref!r}: {exc}") from None
    if state.get("kind") != "model" or not isinstance(state.get("config"), dict):
        raise ModelError(
            f"pretrained {ref!r}: {str(path)!r} is a {state.get('kind', 'foreign')!r} checkpoint, not a "
            f"trial's best model with its config; give the trial's {BEST}.json"
        )
    return state, tensors


def from_checkpoint(path: Path, ref: str) -> FinetuneSource:
    path = Path(path)
    if path.is_dir() and (path / f"{BEST}.json").is_file():
        path = path / f"{BEST}.json"
    checkpoint_state(path, ref)
    tensors, state = load_checkpoint(path)
    names = state.get("class_names")
    return FinetuneSource(
        ref=ref,
        where=str(path),
        state=unprefixed("model", tensors),
        config=state["config"],
        class_names=list(names) if isinstance(names, list) else None,
        num_classes=state.get("num_classes") if isinstance(state.get("num_classes"), int) else None,
        preprocess=state.get("preprocess") if isinstance(state.get("preprocess"), dict) else None,
    )


def member_entry(folder: Path, index: int | None, ref: str) -> tuple[dict, dict, int]:
    """(manifest, member entry, its index) of an exported ensemble's member, validated (the
    manifest strictly; the member file's presence, not yet its hash)."""
    try:
        manifest = read_manifest(Path(folder))
    except ModelError as exc:
        raise ModelError(f"pretrained {ref!r}: {exc}") from None
    members = manifest["members"]
    if index is None and len(members) > 1:
        raise ModelError(
            f"pretrained {ref!r}: ensemble {str(folder)!r} has {len(members)} members; name one as "
            f"ensemble:{folder}#I with I in 0..{len(members) - 1}"
        )
    index = 0 if index is None else index
    if index >= len(members):
        raise ModelError(
            f"pretrained {ref!r}: ensemble {str(folder)!r} has {len(members)} member(s), so there is no "
            f"member {index}; valid: 0..{len(members) - 1}"
        )
    entry = members[index]
    if not (Path(folder) / entry["file"]).is_file():
        raise ModelError(
            f"pretrained {ref!r}: member {index}'s weights {str(Path(folder) / entry['file'])!r} are "
            f"missing; copy the whole ensemble folder, or export it again with fersearch finalize"
        )
    return manifest, entry, index


def from_member(folder: Path, index: int | None, ref: str) -> FinetuneSource:
    manifest, entry, index = member_entry(folder, index, ref)
    path = Path(folder) / entry["file"]
    fix = f"the ensemble folder {str(folder)!r} is damaged: export it again with fersearch finalize"
    verify_weights(path, entry["sha256"], fix)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types on corrupt files
        raise ModelError(
            f"pretrained {ref!r}: weights file {str(path)!r} is unreadable ({exc}); {fix}"
        ) from None
    names = list(manifest["class_names"])
    return FinetuneSource(
        ref=ref,
        where=f"{folder / MANIFEST} member {index}",
        state=state,
        config=dict(entry["config"]),
        class_names=names,
        num_classes=len(names),
        preprocess=dict(entry["preprocess"]),
    )


__all__ = [
    "bind_trial_locator",
    "checkpoint_state",
    "from_checkpoint",
    "from_member",
    "locate_trial",
    "member_entry",
    "read_finetune_source",
    "trial_locator",
]
