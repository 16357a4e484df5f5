"""A worker's loop: ask the study for a trial, run it under a heartbeat, tell its state.

Optuna's ask and tell, not ``study.optimize``: each storage call is ridden out through an outage,
the running trial carries fersearch's heartbeat, a trial that finds the budget taken as it starts
ends unrun (``Surplus``), and a trial ends in exactly one of the states the loop decides. Between
trials the loop reads the budget once, and fails and re-queues trials whose worker went silent.
The trial's work is the objective's (``fersearch.search.worker.Objective`` trains a model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from rich.progress import Progress

from ..errors import FersearchError, StorageError, TrialsFailing
from ..train import TrainingInterrupted
from . import attrs
from .budget import Surplus, TrialBudget
from .liveness import Heartbeat, StoreHealth, Timing, TrialLost, stale_trials, sweep_stale_trials
from .optuna_compat import storage_of
from .pareto import uar_of


class TrialObjective(Protocol):
    """What the loop runs for each trial: the validation value, or optuna.TrialPruned,
    TrainingInterrupted (saved and re-queued), TrialLost, or an error that fails the trial.
    ``beat`` is set by the loop to the running trial's heartbeat (None between trials)."""

    beat: Heartbeat | None

    def __call__(self, trial: optuna.Trial) -> float: ...


@dataclass
class WorkerSummary:
    finished: dict[str, int] = field(default_factory=dict)  # state name -> count, this worker

    @property
    def total(self) -> int:
        return sum(self.finished.values())


MAX_FAIL_STREAK = 3  # failed trials in a row after which a worker stops (see record_failure)
# A worker with the budget used up reads the study this often while other workers' trials run,
# and exits within that time of the last one ending. A local journal file is cheap to read again
# (only records added since are replayed); a database or proxy serves every worker of the study.
WAIT_POLL_S = {"journal": 1.0, "remote": 5.0}


class TrialLoop:
    """Ask, run under a heartbeat, tell; between trials, fail and re-queue stale trials.
    ``stop``: a callable that turns True on SIGINT/SIGTERM, with a ``signal_name``
    (``fersearch.train.GracefulStop``). ``after_trial``: callbacks with ``study.optimize``'s
    signature, ``(study, frozen_trial)``, called with each trial this worker finishes (such as
    optuna-integration's MLflowCallback); one that raises is reported and dropped, the worker
    goes on."""

    def __init__(
        self,
        study: optuna.Study,
        budget: TrialBudget,
        objective: TrialObjective,
        progress: Progress,
        stop,
        health: StoreHealth,
        beat_timing: Timing,
        after_trial: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    ):
        self.study, self.budget, self.objective = study, budget, objective
        self.after_trial = list(after_trial or [])
        self.progress, self.stop, self.health = progress, stop, health
        self.interval, self.grace = beat_timing.interval, beat_timing.grace
        local = isinstance(storage_of(study), optuna.storages.JournalStorage)
        self.wait_poll = WAIT_POLL_S["journal" if local else "remote"]
        self.say = lambda text: self.progress.console.print(text, soft_wrap=True)
        self.summary = WorkerSummary()
        self.fail_streak: list[str] = []  # failures since the last trial that did not fail

    def db(self, call, what: str):
        return self.health.ride_out(call, what, self.stop)

    def run(self, deadline: float | None) -> None:
        name = self.study.study_name
        go_on = self.read_budget()
        task = self.progress.add_task(
            f"study {name}", total=self.budget.n_trials, info="", completed=self.budget.last.counted
        )
        waited_for: tuple[int, ...] = ()
        while not self.stop() and (deadline is None or time.monotonic() < deadline):
            if not go_on:
                others = tuple(t.number for t in self.budget.last.running)
                if not others:
                    break
                if others != waited_for:
                    self.say(
                        f"budget used up; waiting while trial(s) {', '.join(map(str, others))} of "
                        f"other workers run (one whose worker dies is retried here)"
                    )
                    waited_for = others
                _pause(min(self.interval, self.wait_poll), self.stop, deadline)
                go_on = self.read_budget()
                continue
            waited_for = ()
            finished = self.one_trial()
            if self.stop():  # SIGINT/SIGTERM: the trial (if any) is saved and re-queued
                if finished is not None:
                    self.say(_describe(finished, self.db(self.budget.read, "reading the study").best))
                self.say(f"worker stopped by {self.stop.signal_name}")
                return
            go_on = self.read_budget()  # the next trial's budget check, read once
            if finished is not None:
                state = finished.state.name.lower()
                self.summary.finished[state] = self.summary.finished.get(state, 0) + 1
                self.say(_describe(finished, self.budget.last.best))
                self.call_after_trial(finished)
            self.progress.update(task, completed=self.budget.last.counted)
        if self.stop():  # while it waited for other workers' trials
            self.say(f"worker stopped by {self.stop.signal_name}")

    def call_after_trial(self, finished: optuna.trial.FrozenTrial) -> None:
        for callback in list(self.after_trial):
            try:
                callback(self.study, finished)
            except Exception as exc:  # tracking must never stop the search
                self.after_trial.remove(callback)
                self.progress.console.print(
                    f"{type(callback).__name__} failed on trial {finished.number} "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it is off for this worker",
                    style="yellow",
                    markup=False,
                    soft_wrap=True,
                )

    def read_budget(self) -> bool:
        """The read before asking; stale trials it shows are failed and re-queued first."""
        go_on = self.db(self.budget.left, "reading the study")
        if self.health.settled(self.grace) and stale_trials(self.budget.last.running, self.grace):
            swept = self.db(lambda: sweep_stale_trials(self.study, self.health, self.grace), "sweeping")
            for s in swept:
                again = "re-queued to resume from its checkpoint" if s.requeued else "retried too often"
                self.say(
                    f"trial {s.number:3d} [yellow]stale[/] (no heartbeat for {s.silent_s:.0f} s): {again}"
                )
            if swept:
                go_on = self.db(self.budget.left, "reading the study")
        return go_on

    def one_trial(self) -> optuna.trial.FrozenTrial | None:
        """Run one trial; its final state, or None when it ended unrun (surplus) or was taken
        over after going stale."""
        trial = self.db(self.study.ask, "asking for a trial")
        value, state = None, TrialState.FAIL
        with Heartbeat(self.study, trial, self.interval, self.health) as beat:
            self.objective.beat = beat
            try:
                self.check_budget(trial)
                value, state = self.objective(trial), TrialState.COMPLETE
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except Surplus:
                # Another worker took the last place in the budget first: a normal event.
                self.say(f"trial {trial.number:3d} not run: the budget filled up as it started")
                self.db(
                    lambda: self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True), "ending"
                )
                return None
            except TrialLost:
                return self._lost(trial.number)
            except TrainingInterrupted:
                pass  # saved and re-queued by the objective
            except StorageError:
                raise  # the storage stayed away (or SIGINT came meanwhile): RUNNING, it goes stale
            except (FersearchError, RuntimeError) as exc:
                # This trial's configuration, files or device (a model that cannot be built, a
                # checkpoint that does not fit, out of memory): the trial fails with its reason
                # and the worker goes on. torch reports its own bugs as RuntimeError too: the
                # log keeps their traceback.
                if not isinstance(exc, FersearchError):
                    logging.getLogger(__name__).warning("trial %d failed", trial.number, exc_info=True)
                self.record_failure(trial, exc)
            except Exception:
                # a bug: the trial fails and the worker stops with the traceback
                self.db(
                    lambda: self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True), "ending"
                )
                raise
            finally:
                self.objective.beat = None
            # (KeyboardInterrupt, SystemExit: the trial stays RUNNING, goes stale and is retried.)
        if beat.lost:
            return self._lost(trial.number)
        told = self.db(
            lambda: self.study.tell(trial, value, state=state, skip_if_finished=True),
            f"ending trial {trial.number}",
        )
        if told.state != state and state != TrialState.FAIL:
            return self._lost(trial.number)  # failed as stale by another process just before
        if state != TrialState.FAIL:
            self.fail_streak.clear()
        return told

    def check_budget(self, trial: optuna.Trial) -> None:
        """Surplus when another worker took the budget's last place after this one read it."""
        n = trial.number
        try:
            if self.db(lambda: self.budget.is_surplus(trial), f"checking trial {n} against the budget"):
                self.db(lambda: trial.set_user_attr(attrs.SURPLUS, True), f"ending trial {n}")
                raise Surplus()
        except UpdateFinishedTrialError:
            raise TrialLost(f"checking trial {n} against the budget") from None

    def record_failure(self, trial: optuna.Trial, exc: Exception) -> None:
        """Keep a failed trial's reason on it; stop after MAX_FAIL_STREAK failures in a row,
        whose cause is then the worker's (its data, its device, the code), not one trial's."""
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        self.db(lambda: trial.set_user_attr(attrs.FAIL_REASON, reason), f"failing trial {trial.number}")
        self.fail_streak.append(f"trial {trial.number}: {reason}")
        if len(self.fail_streak) >= MAX_FAIL_STREAK:
            self.db(lambda: self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True), "ending")
            raise TrialsFailing(
                f"{len(self.fail_streak)} trials in a row failed in this worker, so the cause is not one "
                f"trial's; last, {self.fail_streak[-1]}. The worker stops rather than spend the budget "
                f"on failures: fix the cause and start it again (`fersearch status` lists the failed "
                f"trials and their reasons)"
            )

    def _lost(self, number: int) -> None:
        self.say(
            f"trial {number:3d} [yellow]taken over[/]: its heartbeat was late, another process failed it "
            f"and re-queued it to resume from its checkpoint"
        )


def _pause(seconds: float, stop, deadline: float | None) -> None:
    end = time.monotonic() + seconds
    if deadline is not None:
        end = min(end, deadline)
    while time.monotonic() < end and not stop():
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def _describe(t: optuna.trial.FrozenTrial, best: optuna.trial.FrozenTrial | None) -> str:
    best_txt = "no complete trial yet" if best is None else f"best {uar_of(best):.4f} (trial {best.number})"
    if t.state == TrialState.COMPLETE:
        return f"trial {t.number:3d} [green]complete[/] val UAR {uar_of(t):.4f}  {best_txt}"
    if t.state == TrialState.PRUNED and attrs.INFEASIBLE in t.user_attrs:
        why = t.user_attrs[attrs.INFEASIBLE]
        return (
            f"trial {t.number:3d} [yellow]pruned[/] untrained, over the deployment budget: {why}  {best_txt}"
        )
    if t.state == TrialState.PRUNED:
        epoch = t.user_attrs.get(attrs.PRUNED_AT_EPOCH, "?")
        reason = t.user_attrs.get(attrs.PRUNED_REASON, "")
        return f"trial {t.number:3d} [yellow]pruned[/] at epoch {epoch} {reason}  {best_txt}"
    if t.user_attrs.get(attrs.INTERRUPTED_CHECKPOINT):
        return f"trial {t.number:3d} [yellow]interrupted[/], re-queued to resume  {best_txt}"
    reason = t.user_attrs.get(attrs.FAIL_REASON) or t.system_attrs.get(attrs.FAIL_REASON, "")
    state = "failed" if t.state == TrialState.FAIL else t.state.name.lower()
    return f"trial {t.number:3d} [red]{state}[/]{': ' + reason if reason else ''}  {best_txt}"
