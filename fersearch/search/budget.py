"""The study-wide trial budget: may a worker ask for another trial, and is the trial it got one
too many?

Trials that use up the budget are listed by ``counted_trials``. Before asking, a worker reads
the study once (``TrialBudget.left``): queued trials always run, otherwise it asks only while
fewer trials than the budget count. Two workers can both see the last free place; so a trial
checks, before any work, that fewer than the budget of counted trials started before it, and
otherwise ends unrun as FAIL with ``fersearch:surplus`` (counted nowhere).

That check needs no second read when the one before asking already settles it: the trials
that can have started between that read and this trial's start are the queued ones it saw and
the ones created since, which are numbered between the highest number it saw and this trial's.
Only near the end of the budget, or for a trial popped from the queue, is the study read again.
The same read serves the progress line and the best trial so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from .study import RETRY_OF_ATTR, counted_among


class Surplus(Exception):
    """Another worker started the last budgeted trial first; this one ends unrun."""


@dataclass(frozen=True)
class Snapshot:
    """What one read of the study says about the budget."""

    counted: int  # trials that use up the budget
    waiting: int  # queued trials (always run)
    max_number: int  # the highest trial number in the study, -1 for none
    best: FrozenTrial | None  # the best complete trial


class TrialBudget:
    def __init__(self, study: optuna.Study, n_trials: int | None):
        self.study = study
        self.n_trials = n_trials
        self.last: Snapshot | None = None  # the latest read
        self._fresh = False  # ``last`` was read just before the current ask

    def read(self) -> Snapshot:
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pick = max if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        self.last = Snapshot(
            counted=len(counted_among(trials)),
            waiting=sum(t.state == TrialState.WAITING for t in trials),
            max_number=max((t.number for t in trials), default=-1),
            best=pick(complete, key=lambda t: t.value) if complete else None,
        )
        self._fresh = False
        return self.last

    def left(self) -> bool:
        """Before asking: True while the budget has room or a trial is queued."""
        snap = self.read()
        self._fresh = True
        if self.n_trials is None or snap.waiting:
            return True  # re-queued and seeded trials run even when the budget is used up
        return snap.counted < self.n_trials

    def is_surplus(self, trial: optuna.Trial) -> bool:
        """Inside a trial, before any work: did the budget fill up before this trial started?"""
        fresh, self._fresh = self._fresh, False
        if self.n_trials is None:
            return False
        # the trial as ask() read it (no round trip); Optuna keeps it on the Trial
        me = getattr(trial, "_cached_frozen_trial", None) or self.study._storage.get_trial(trial._trial_id)
        if "failed_trial" in me.system_attrs or RETRY_OF_ATTR in me.user_attrs:
            return False  # a retry of a dead or interrupted trial is within the budget already
        snap = self.last
        if fresh and snap is not None and me.number > snap.max_number:
            # Counted then, plus every trial that can have started since: still under budget.
            since = (me.number - snap.max_number - 1) + snap.waiting
            if snap.counted + since < self.n_trials:
                return False
        trials = self.study.get_trials(deepcopy=False)
        before = [
            t
            for t in counted_among(trials)
            if t.number != me.number and (t.datetime_start, t.number) < (me.datetime_start, me.number)
        ]
        return len(before) >= self.n_trials
