"""Experiment tracking: TensorBoard event files, one run per trial (and per finalize member),
and optuna-integration's MLflow callback.

``--tensorboard DIR`` (worker, search, finalize) writes, for every trial, a run
``DIR/<study folder>/trial_<n>`` (the study folder as for checkpoints: the name when it is a
plain file name, else a slug and a hash, so a hostile study name never leaves DIR) with its
per-epoch scalars, step = epochs completed (Optuna's step):

  train/loss, train/lr, val/uar, val/war, val/macro_f1, curriculum/stage, and best/val_uar
  (the best validation UAR so far: what the trial reports to the pruner and returns)

and its hyperparameters (TensorBoard's HParams tab, whose metrics are the scalars above).
``tensorboard --logdir DIR`` then compares every trial, from every worker writing to a shared
DIR. finalize's members go to ``DIR/<study folder>/finalize-<stage>/<member>``.

Tracking never fails a trial: the first write that fails is reported once and tracking is off
for the rest of that run. A run directory is opened at its first epoch (a trial that never
trains leaves none) and says, from that step on, that it replaces whatever an earlier attempt
wrote there (TensorBoard's purge step), so a finalize rerun does not draw a member twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RUNTIME_KEYS, TrialConfig
from ..errors import InvalidArgument
from .trial_state import study_folder_name

# record key of fit's per-epoch record (fersearch/train/loop.py) -> TensorBoard tag
SCALARS = {
    "train_loss": "train/loss",
    "lr": "train/lr",
    "uar": "val/uar",
    "war": "val/war",
    "macro_f1": "val/macro_f1",
    "stage": "curriculum/stage",
    # with a valence/arousal head on data that has VA (va_head: true)
    "va_ccc_valence": "val/va_ccc_valence",
    "va_ccc_arousal": "val/va_ccc_arousal",
    "va_rmse": "val/va_rmse",
}
BEST = "best/val_uar"
METRICS = (BEST, "val/uar", "val/war", "val/macro_f1", "train/loss")


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoard:
    """Where the runs go (``--tensorboard DIR``), or nowhere (``root`` None: every run is a
    no-op). ``say``: how a failed write is reported (one line)."""

    def __init__(self, root: str | Path | None, say: Callable[[str], None] | None = None):
        if root is not None and not tensorboard_available():
            raise InvalidArgument(
                f"--tensorboard {str(root)!r} needs the tensorboard package, which is not installed: "
                f"`pip install tensorboard`, or drop --tensorboard"
            )
        self.root = None if root is None else Path(root)
        self.say = say or (lambda text: None)

    def trial_run(self, study: str, number: int, hparams: dict[str, Any]) -> Run:
        return self._run([study_folder_name(study), f"trial_{int(number)}"], hparams, f"trial {number}")

    def member_run(self, study: str, stage: str, member: str, hparams: dict[str, Any]) -> Run:
        parts = [study_folder_name(study), f"finalize-{_plain(stage)}", _plain(member)]
        return self._run(parts, hparams, f"member {member}")

    def _run(self, parts: list[str], hparams: dict[str, Any], what: str) -> Run:
        if self.root is None:
            return Run(None, {}, what, self.say)
        return Run(self.root.joinpath(*parts), hparams, what, self.say)


class Run:
    """One TensorBoard run. ``epoch(record)`` after every epoch; ``close()`` at the end (or use
    it as a context manager). Never raises."""

    def __init__(self, directory: Path | None, hparams: dict[str, Any], what: str, say):
        self.directory, self.hparams, self.what, self.say = directory, hparams, what, say
        self.writer = None
        self.best = -math.inf
        self.off = directory is None

    def epoch(self, record: dict) -> None:
        if self.off:
            return
        try:
            step = int(record["epoch"]) + 1
            if self.writer is None:
                self._open(step)
            for key, tag in SCALARS.items():
                value = record.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(tag, value, step)
            if isinstance(record.get("uar"), int | float):
                self.best = max(self.best, record["uar"])
                self.writer.add_scalar(BEST, self.best, step)
            self.writer.flush()  # visible to a running tensorboard now, not minutes later
        except Exception as exc:  # tracking must never fail the trial
            self._give_up(exc)

    def _open(self, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # purge_step: whatever an earlier attempt wrote here from this step on is replaced
        self.writer = SummaryWriter(str(self.directory), purge_step=step)
        experiment, start, end = hparams_summary(self.hparams, {tag: 0.0 for tag in METRICS})
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)

    def _give_up(self, exc: Exception) -> None:
        self.off = True
        self.say(
            f"tensorboard: cannot write {self.what}'s run {str(self.directory)!r} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); tracking is off for "
            f"this run, training goes on"
        )
        self._close_writer()

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
            except Exception as exc:  # (as above)
                if not self.off:
                    self._give_up(exc)
            self._close_writer()
        self.off = True

    def _close_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # already reported, or nothing left to lose
                pass

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hparams_of(config: TrialConfig, sampled: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A run's hyperparameters for TensorBoard: the ``sampled`` keys (the same columns for every
    trial of a study), the seed, every key whose value departs from TrialConfig's default (fixed
    values, recipes), and ``extra``; as numbers, strings or booleans (others as JSON text)."""
    values = config.to_json_dict()
    defaults = TrialConfig(data=config.data).to_json_dict()
    keep = {
        k: v
        for k, v in values.items()
        if k != "data" and k not in RUNTIME_KEYS and (k in sampled or k == "seed" or v != defaults.get(k))
    }
    return {k: _hparam_value(v) for k, v in {**keep, **extra}.items()}


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, bool | str) or (isinstance(value, int | float) and math.isfinite(value)):
        return value
    return json.dumps(value, default=str)


def _plain(part: str) -> str:
    """A path component from a name fersearch made (a stage, a member id), made safe anyway."""
    return study_folder_name(str(part))


def mlflow_callback(uri: str | None, metric_name: str = "val_uar"):
    """optuna-integration's MLflowCallback for tracking URI ``uri`` (None: no callback), built
    now so a missing package is one clear error before any trial runs."""
    if uri is None:
        return None
    try:
        from optuna_integration.mlflow import MLflowCallback

        return MLflowCallback(tracking_uri=uri, metric_name=metric_name)
    except ImportError as exc:
        raise InvalidArgument(
            f"--mlflow {uri!r} needs the optuna-integration and mlflow packages ({exc}): "
            f"`pip install optuna-integration mlflow`, or drop --mlflow"
        ) from None


__all__ = ["BEST", "METRICS", "SCALARS", "Run", "TensorBoard", "hparams_of", "mlflow_callback"]
