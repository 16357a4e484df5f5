"""The study-wide trial budget: may a worker ask for another trial, and is the trial it got one
too many?

Trials that use up the budget are listed by ``counted_trials``. Before asking, a worker reads
the study once (``TrialBudget.left``): queued trials always run, otherwise it asks only while
fewer trials than the budget count. Two workers can both see the last free place; so a trial
checks, before any work, whether the budget was already taken by the trials ahead of it, and
otherwise ends unrun as FAIL with ``fersearch:surplus`` (counted nowhere).

"Ahead of it" is one order every worker computes alike: a trial popped from the queue (a seed
recipe, a re-queued copy) always runs, so every queued trial, popped or still waiting, is ahead
of every new one; new trials are ordered by their number, which the storage hands out once.
(Start times are no order: each worker stamps its own trial before the storage numbers it, so a
trial can start earlier than a lower-numbered one, and two workers that ordered by start time in
one check and by number in the other both ran, one trial over the budget.)

That check needs no second read when the one before asking already settles it: the trials
ahead of this one are at most those counted then, those queued then, and the new ones created
since, which are numbered between the highest number it saw and this trial's. Only near the end
of the budget is the study read again. The same read serves the progress line, the best trial
so far, and the running trials the worker waits for before it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import attrs
from .optuna_compat import frozen_at_ask
from .pareto import uar_of
from .study import counted_among


class Surplus(Exception):
    """Another worker started the last budgeted trial first; this one ends unrun."""


@dataclass(frozen=True)
class Snapshot:
    """What one read of the study says about the budget."""

    counted: int  # trials that use up the budget
    waiting: int  # queued trials (always run)
    max_number: int  # the highest trial number in the study, -1 for none
    best: FrozenTrial | None  # the best complete trial
    running: tuple[FrozenTrial, ...] = ()  # trials some worker is running


class TrialBudget:
    def __init__(self, study: optuna.Study, n_trials: int | None):
        self.study = study
        self.n_trials = n_trials
        self.last: Snapshot | None = None  # the latest read
        self._fresh = False  # ``last`` was read just before the current ask

    def read(self) -> Snapshot:
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        # by validation UAR: the value, or the first of a Pareto search's values
        pick = max if self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
        self.last = Snapshot(
            counted=len(counted_among(trials)),
            waiting=sum(t.state == TrialState.WAITING for t in trials),
            max_number=max((t.number for t in trials), default=-1),
            best=pick(complete, key=uar_of) if complete else None,
            running=tuple(t for t in trials if t.state == TrialState.RUNNING),
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
        me = frozen_at_ask(self.study, trial)
        if from_queue(me):
            return False  # seed recipes and retries always run (``left`` let the worker ask for them)
        snap = self.last
        if fresh and snap is not None and me.number > snap.max_number:
            # Ahead of it at most: counted then, queued then, and every trial numbered since.
            since = (me.number - snap.max_number - 1) + snap.waiting
            if snap.counted + since < self.n_trials:
                return False
        trials = self.study.get_trials(deepcopy=False)
        counted = counted_among(trials)
        ahead = [t for t in counted if t.number != me.number and (from_queue(t) or t.number < me.number)]
        waiting = sum(t.state == TrialState.WAITING for t in trials)  # queued: they will run
        return len(ahead) + waiting >= self.n_trials


def from_queue(t: FrozenTrial) -> bool:
    """Popped from the queue: enqueued (seed recipes, interrupted trials' copies carry
    ``fixed_params``) or added by the stale-trial retry (``failed_trial``)."""
    system = t.system_attrs
    return "fixed_params" in system or "failed_trial" in system or attrs.RETRY_OF in t.user_attrs
