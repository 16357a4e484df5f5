"""``pretrained: trial:STUDY/NUMBER``: finding a finished trial's weights through the study storage.

A trial records its checkpoint folder (``checkpoint_dir``) when it starts; a complete trial left
its best epoch's model there as ``best.json`` (fersearch/train/checkpoint.py). The storage is the
one of the study being run: a worker and finalize bind it for the trials they train
(``bind_trial_sources``), ``create`` and ``fersearch weights list`` check a space's sources
against the store they are given (``finetune_status``). So STUDY names a study in the same
store; its checkpoints must be readable on the host that trains (the artifacts folder of the
worker that trained it, on a shared volume for several hosts).

The study name is only looked up in the storage and never becomes a path: the checkpoint is
where the trial's own attribute says, and the tensors only beside it (checkpoint.py).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import FersearchError, ModelError, StorageError
from ..models.finetune import check_same_backbone
from ..models.pretrained import parse_member_ref, parse_pretrained, parse_trial_ref
from ..models.weights import WeightsSource
from ..train.checkpoint import BEST
from ..train.finetune import bind_trial_locator, checkpoint_state, member_entry
from . import attrs
from .optuna_compat import storage_of


def trial_checkpoint(storage: optuna.storages.BaseStorage, study: str, number: int) -> Path:
    """The ``best.json`` of trial ``number`` of ``study`` in ``storage``: a complete trial
    trained by a fersearch worker, its checkpoint readable here; else one clear ModelError (a
    storage that fails meanwhile: a StorageError, as for the worker's own reads)."""
    try:
        return _trial_checkpoint(storage, study, number)
    except (FersearchError, KeyError):
        raise
    except Exception as exc:  # the storage's own errors (a dropped connection...) come in many types
        # (only the type: a driver's message may carry the storage URL, password and all)
        raise StorageError(
            f"looking up pretrained 'trial:{study}/{number}' in the study storage failed "
            f"({type(exc).__name__}); check the storage is reachable and run again"
        ) from None


def _trial_checkpoint(storage: optuna.storages.BaseStorage, study: str, number: int) -> Path:
    ref = f"trial:{study}/{number}"
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        raise ModelError(
            f"pretrained {ref!r}: no study named {study!r} in this study's storage; its studies: "
            f"{shown or 'none'}. Name one of them (trial:STUDY/NUMBER)"
        ) from None
    try:
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:
        count = len(storage.get_all_trials(study_id, deepcopy=False))
        valid = f"0..{count - 1}" if count else "none yet"
        raise ModelError(
            f"pretrained {ref!r}: study {study!r} has no trial {number} (its trials: {valid}); "
            f"`fersearch status --study {study}` lists them"
        ) from None
    if trial.state != TrialState.COMPLETE:
        raise ModelError(_not_complete(storage, study_id, study, trial, ref))
    folder = trial.user_attrs.get(attrs.CHECKPOINT_DIR)
    if not isinstance(folder, str) or not folder:
        raise ModelError(
            f"pretrained {ref!r}: trial {number} of study {study!r} records no checkpoint folder "
            f"({attrs.CHECKPOINT_DIR}): it was not trained by a fersearch worker; fine-tune from a "
            f"trial that was"
        )
    path = Path(folder) / f"{BEST}.json"
    if not path.is_file():
        raise ModelError(
            f"pretrained {ref!r}: the trial's best checkpoint {str(path)!r} is not on this host; run "
            f"on the host (or with the shared artifacts folder, $FERSEARCH_ARTIFACTS) of the worker "
            f"that trained it, or copy its trial folder there"
        )
    return path


def _not_complete(storage, study_id: int, study: str, trial: FrozenTrial, ref: str) -> str:
    state = trial.state.name.lower()
    copy = _completed_copy(storage.get_all_trials(study_id, deepcopy=False), trial.number)
    if copy is not None:
        return (
            f"pretrained {ref!r}: trial {trial.number} of study {study!r} is {state}; it was "
            f"re-queued and its copy, trial {copy}, is complete: use trial:{study}/{copy}"
        )
    what = "has not finished yet" if state in ("running", "waiting") else f"is {state}"
    return (
        f"pretrained {ref!r}: trial {trial.number} of study {study!r} {what}; only a complete "
        f"trial has best weights to fine-tune from (`fersearch status --study {study}` lists them)"
    )


def _completed_copy(trials: list[FrozenTrial], number: int) -> int | None:
    """The complete trial that continues ``number`` through re-queued copies, if any."""
    seen, frontier = {number}, [number]
    while frontier:
        n = frontier.pop()
        for t in trials:
            copies = t.user_attrs.get(attrs.RETRY_OF) == n or n in t.system_attrs.get(attrs.RETRY_HISTORY, ())
            if copies and t.number not in seen:
                if t.state == TrialState.COMPLETE:
                    return t.number
                seen.add(t.number)
                frontier.append(t.number)
    return None


def bind_trial_sources(study: optuna.Study) -> None:
    """From now on in this thread, ``pretrained: trial:STUDY/N`` resolves through ``study``'s
    storage (a worker and finalize call this once they have opened their study)."""
    storage = storage_of(study)
    bind_trial_locator(lambda name, number: trial_checkpoint(storage, name, number))


def finetune_status(
    backbone: str, pretrained: str, storage: optuna.storages.BaseStorage | None, where: str = ""
) -> WeightsSource:
    """The WeightsSource of a fine-tune source, checked here without reading its tensors:
    present when the checkpoint (or ensemble member) is readable on this host and was trained
    with ``backbone``'s network; ``storage`` is where ``trial:`` references are looked up
    (None: there is none at ``where``)."""
    base = {"backbone": backbone, "pretrained": pretrained}
    try:
        request = parse_pretrained(pretrained)
    except ModelError as exc:
        return WeightsSource(**base, kind="invalid", problem=str(exc))
    kind, path, source_config = request.kind, None, None
    try:
        if kind == "trial":
            study, number = parse_trial_ref(pretrained)
            if storage is None:
                raise ModelError(
                    f"pretrained {pretrained!r}: there is no study storage {where or ''} to look trial "
                    f"{number} of study {study!r} up in; give the --storage that holds that study"
                )
            path = trial_checkpoint(storage, study, number)
            source_config = checkpoint_state(path, pretrained)[0]["config"]
        elif kind == "checkpoint":
            path = Path(request.value)
            source_config = checkpoint_state(path, pretrained)[0]["config"]
        else:
            folder, index = parse_member_ref(pretrained)
            _, entry, index = member_entry(Path(folder), index, pretrained)
            path, source_config = Path(folder) / entry["file"], entry["config"]
    except ModelError as exc:
        return WeightsSource(**base, kind=kind, path=str(path) if path else None, problem=str(exc))
    try:
        check_same_backbone(pretrained, str(source_config.get("backbone")), backbone)
    except ModelError as exc:
        return WeightsSource(**base, kind="invalid", path=str(path), problem=str(exc))
    return WeightsSource(**base, kind=kind, path=str(path), tag=None)


__all__ = ["bind_trial_sources", "finetune_status", "trial_checkpoint"]
