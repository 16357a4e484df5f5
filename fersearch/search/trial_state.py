"""Where a trial's checkpoints live, and how an interrupted trial is re-queued to resume.

Checkpoints: ``<artifacts>/checkpoints/<study folder>/trial_<n>/`` (``last``, ``interrupted``,
``best``; see fersearch/train/checkpoint.py). The study folder is the study name when that is a
plain file name (letters, digits, ``.``, ``_``, ``-``), else a slug of it plus a hash of the whole
name: any name Optuna accepts stays inside ``<artifacts>/checkpoints``. ``<artifacts>`` is
$FERSEARCH_ARTIFACTS, else the folder of an embedded journal file, else ./.fersearch. Workers on
several hosts need it on a shared volume for a retry on another host to find the checkpoint.

An interrupted trial (SIGINT/SIGTERM) is marked FAIL with the checkpoint recorded, left out of
the study's trial budget, and a copy with the same parameters, recipe and seed is enqueued
carrying ``fersearch:resume_from``: the next worker to ask runs it from that checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import optuna

from ..train import checkpoint as ckpt
from . import attrs
from .storage import resolve_url

ARTIFACTS_ENV = "FERSEARCH_ARTIFACTS"


def default_artifacts_dir(storage_url: str | None) -> Path:
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    url = resolve_url(storage_url)
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:")).resolve().parent
    return Path(".fersearch").resolve()


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def study_folder_name(study_name: str) -> str:
    """One path component for a study name: the name itself when it is a plain file name, else
    ``<slug>+<hash>`` ("../../tmp/x" -> "tmp-x+3b5d...": no separator, never "." or "..").
    '+' never occurs in a plain name, so a hashed folder cannot collide with a plain one."""
    if _PLAIN_NAME.fullmatch(study_name) and ".." not in study_name:
        return study_name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", study_name).strip("-_")[:40] or "study"
    digest = hashlib.sha256(study_name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}+{digest}"


def checkpoint_dir_for(artifacts_dir: Path, study_name: str, trial_number: int) -> Path:
    return Path(artifacts_dir) / "checkpoints" / study_folder_name(study_name) / f"trial_{int(trial_number)}"


def in_checkpoints(artifacts_dir: Path, path: str | Path) -> bool:
    """Whether ``path`` lies inside this artifacts folder's checkpoints (links resolved): a
    trial attribute naming any other folder is never a place to delete from."""
    root = (Path(artifacts_dir) / "checkpoints").resolve()
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):  # a loop of links, a NUL byte
        return False


def resume_info(trial: optuna.Trial) -> tuple[str | None, int]:
    """(checkpoint to resume from or None, the seed to use) for a trial about to run.

    A trial re-queued here carries both explicitly. A copy made by Optuna's heartbeat retry
    (``RetryHeartbeatStaleTrialCallback`` copies the user attributes) inherits the dead trial's
    ``seed`` and ``checkpoint_dir``: it resumes from the newest state found there.
    """
    stored = trial.user_attrs
    seed = int(stored.get(attrs.SEED, stored.get(attrs.OLD_RESUME_SEED, trial.number)))
    resume = stored.get(attrs.RESUME_FROM)
    if resume is None and stored.get(attrs.CHECKPOINT_DIR):
        for name in (ckpt.INTERRUPTED, ckpt.LAST):  # interrupted is written after last
            path = Path(stored[attrs.CHECKPOINT_DIR]) / f"{name}.json"
            if path.is_file():
                resume = str(path)
                break
    return resume, seed


def requeue_interrupted(study: optuna.Study, trial: optuna.Trial, exc, seed: int, signal_name: str) -> None:
    trial.set_user_attr(attrs.INTERRUPTED, True)
    trial.set_user_attr(attrs.INTERRUPTED_SIGNAL, signal_name)
    trial.set_user_attr(attrs.INTERRUPTED_AT_EPOCH, exc.epoch)
    trial.set_user_attr(attrs.INTERRUPTED_AT_STEP, exc.step)
    if exc.checkpoint is None:
        return
    trial.set_user_attr(attrs.INTERRUPTED_CHECKPOINT, str(exc.checkpoint))
    stored = {attrs.RESUME_FROM: str(exc.checkpoint), attrs.RETRY_OF: trial.number, attrs.SEED: seed}
    # the same recipe (a seed recipe's name, a warm start's configuration)
    stored.update({k: trial.user_attrs[k] for k in attrs.RECIPE_ATTRS if trial.user_attrs.get(k)})
    study.enqueue_trial(dict(trial.params), user_attrs=stored)


def remove_training_state(directory: str | Path) -> None:
    """Delete the resumable state (``last``, ``interrupted``: weights + optimizer, the large
    part); ``best`` (the best weights and config) stays.

    Only files directly inside ``directory`` are removed, and only for a JSON that reads as a
    fersearch checkpoint: a tampered ``last.json`` naming ``../x`` or ``/etc/x`` as its tensors
    deletes nothing outside the folder (only ``*.safetensors`` names in it are followed)."""
    directory = Path(directory)
    for name in (ckpt.LAST, ckpt.INTERRUPTED):
        path = directory / f"{name}.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict):
            continue  # not a checkpoint this code wrote: leave it
        path.unlink(missing_ok=True)
        tensors = state.get("tensors")
        if _is_tensor_file_name(tensors):
            (directory / tensors).unlink(missing_ok=True)


def _is_tensor_file_name(name) -> bool:
    """A bare ``*.safetensors`` name in the same folder: no separator, nothing absolute."""
    return (
        isinstance(name, str)
        and name.endswith(".safetensors")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and Path(name).name == name
    )
