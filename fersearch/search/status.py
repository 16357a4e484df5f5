"""`fersearch status`: where a study stands, in numbers a person can act on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import optuna
from optuna.trial import TrialState

from . import attrs
from .liveness import last_sign_of_life
from .pareto import FrontRow, front, uar_of
from .study import StudySettings, counted_trials, settings


@dataclass
class StudyStatus:
    study: str
    counts: dict[str, int]
    budget: int | None
    best_value: float | None
    best_trial: int | None
    hours_spent: float  # device-hours: trial wall time summed over trials
    hours_saved_by_pruning: float  # epochs pruned trials did not run, at their own pace
    hours_left: float | None  # remaining trials x mean trial time / running workers
    running: list[int]
    silent_s: dict[int, float] = field(default_factory=dict)  # running trial -> s since its heartbeat
    objectives: list[str] = field(default_factory=lambda: ["uar"])
    front: list[FrontRow] = field(default_factory=list)  # a Pareto search's, best UAR first

    def lines(self) -> list[str]:
        c = self.counts
        out = [
            f"study {self.study}: {c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, "
            f"{c.get('fail', 0)} failed, {c.get('running', 0)} running, {c.get('waiting', 0)} queued"
            + (f" of a budget of {self.budget}" if self.budget else ""),
        ]
        if self.best_trial is not None:
            out.append(f"best validation UAR {self.best_value:.4f} (trial {self.best_trial})")
        else:
            out.append("no complete trial yet")
        if len(self.objectives) > 1 and self.front:
            goals = ", ".join(["UAR max", *(f"{o} min" for o in self.objectives[1:])])
            out.append(f"Pareto front ({goals}): {len(self.front)} trial(s)")
            out.extend(row.line() for row in self.front)
        out.append(
            f"device-hours spent {self.hours_spent:.2f}, saved by pruning {self.hours_saved_by_pruning:.2f}"
        )
        if self.hours_left is not None:
            out.append(f"estimated time left {self.hours_left:.2f} h")
        if self.running:
            beats = [
                f"{n} (heartbeat {self.silent_s[n]:.0f} s ago)" if n in self.silent_s else str(n)
                for n in self.running
            ]
            out.append(f"running trials: {', '.join(beats)}")
        return out


def _seconds(t: optuna.trial.FrozenTrial, now: datetime) -> float:
    if t.datetime_start is None:
        return 0.0
    end = t.datetime_complete or now
    return max(0.0, (end - t.datetime_start).total_seconds())


def study_status(study: optuna.Study, cfg: StudySettings | None = None) -> StudyStatus:
    """``cfg``: the study's settings, when its caller has parsed them already (``load_study``)."""
    cfg = cfg or settings(study)
    now = datetime.now()
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(attrs.SURPLUS)]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1

    spent = sum(_seconds(t, now) for t in trials)
    saved = 0.0
    max_epochs = cfg.space.max_epochs
    for t in trials:
        done = len(t.user_attrs.get(attrs.UAR_PER_EPOCH) or [])  # epochs completed
        if t.state == TrialState.PRUNED and done:
            per_epoch = _seconds(t, now) / max(1, done)
            saved += per_epoch * max(0, max_epochs - done)

    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    hours_left = None
    if cfg.n_trials and finished:
        remaining = max(0, cfg.n_trials - len(counted_trials(study)))
        mean = sum(_seconds(t, now) for t in finished) / len(finished)
        # Running trials are about half done on average.
        hours_left = (remaining * mean + len(running) * mean / 2) / max(1, len(running)) / 3600

    best_value = best_trial = None
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete, key=uar_of)
        best_value, best_trial = uar_of(best), best.number
    return StudyStatus(
        study=study.study_name,
        counts=counts,
        budget=cfg.n_trials,
        best_value=best_value,
        best_trial=best_trial,
        hours_spent=spent / 3600,
        hours_saved_by_pruning=saved / 3600,
        hours_left=hours_left,
        running=running,
        silent_s={
            t.number: max(0.0, time.time() - last_sign_of_life(t))
            for t in trials
            if t.state == TrialState.RUNNING
        },
        objectives=list(cfg.space.objectives),
        front=front(study) if cfg.space.multi_objective and complete else [],
    )
