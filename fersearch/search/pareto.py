"""Pareto search (a space's ``objectives: [uar, latency_ms, size_mb]``): a multi-objective study
that still prunes on validation UAR.

A trial returns its best validation UAR (maximised) and the deployment figures measured before
it trained (fersearch/search/deploy.py, minimised). Optuna's pruners refuse multi-objective
studies (``Trial.report`` raises, optuna#3450), so the pruning rule here is fersearch's own,
read from the per-epoch UAR curves every trial records (``uar_per_epoch``), with the same
settings as the space's pruner:

- ``successive_halving`` and ``hyperband``: rungs at ``min_resource * reduction_factor**k``
  epochs. At a rung a trial goes on only if its best UAR so far is in the top
  ``1/reduction_factor`` of the best-so-far UARs at that rung of every trial that reached it
  (running, complete or pruned there or later: as in Optuna's successive halving, the losers of
  a rung stay in its pool). Nobody is pruned at a rung until ``n_startup_trials`` trials (and
  at least ``reduction_factor``) have reached it.
- ``median``: from epoch ``n_warmup_steps`` on, a trial stops when its best UAR so far is below
  the median of complete trials' best-so-far at the same epoch (once ``n_startup_trials`` of
  them reached it).
- ``none``: no pruning.

The front is Optuna's ``study.best_trials`` (the dashboard draws it for any study with several
directions).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import attrs
from .space import SearchSpace

# objective -> the deployment cost's figure (fersearch/ensemble/cost.py)
COST_FIGURE = {"latency_ms": "latency_ms", "size_mb": "size_mib"}
Trials = list[FrozenTrial]
METRIC_NAMES = {"uar": "val_uar", "latency_ms": "latency_ms", "size_mb": "size_mib"}


def directions(space: SearchSpace) -> list[str]:
    return ["maximize"] + ["minimize"] * (len(space.objectives) - 1)


def metric_names(space: SearchSpace) -> list[str]:
    return [METRIC_NAMES[o] for o in space.objectives]


def objective_values(space: SearchSpace, best_uar: float, cost: dict | None) -> float | tuple[float, ...]:
    """What the trial returns: its best validation UAR, then each measured figure."""
    if not space.multi_objective:
        return best_uar
    assert cost is not None, "a Pareto search measures every trial before it trains"
    return (best_uar, *(float(cost[COST_FIGURE[o]]) for o in space.objectives[1:]))


def uar_of(t: FrozenTrial) -> float:
    """A complete trial's validation UAR: its value, or its first value in a Pareto search."""
    return float(t.values[0])


@dataclass(frozen=True)
class UarRule:
    """The UAR pruning rule of a multi-objective study (module docstring)."""

    kind: str  # "halving", "median" or "none"
    min_resource: int = 1
    reduction_factor: int = 3
    n_startup_trials: int = 3
    n_warmup_steps: int = 1

    @classmethod
    def of(cls, space: SearchSpace) -> UarRule:
        p = space.pruner
        kind = {"successive_halving": "halving", "hyperband": "halving"}.get(p.name, p.name)
        return cls(kind, p.min_resource, p.reduction_factor, p.n_startup_trials, p.n_warmup_steps)

    def is_rung(self, step: int) -> bool:
        rung = self.min_resource
        while rung < step:
            rung *= self.reduction_factor
        return rung == step

    def reads_trials_at(self, step: int) -> bool:
        """Whether ``prune`` looks at other trials after ``step`` epochs (it reads the study)."""
        if self.kind == "halving":
            return self.is_rung(step)
        return self.kind == "median" and step >= max(1, self.n_warmup_steps)

    def prune(self, number: int, curve: Sequence[float], trials: Callable[[], Trials]) -> str | None:
        """Why trial ``number``, whose per-epoch UAR is ``curve``, stops after ``len(curve)``
        epochs, or None to go on. ``trials``: reads the study's trials (only when needed)."""
        step = len(curve)
        if step == 0 or not self.reads_trials_at(step):
            return None
        mine = max(curve)
        if self.kind == "halving":
            states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        else:
            states = (TrialState.COMPLETE,)
        others = [_best_at(t, step) for t in trials() if t.number != number and t.state in states]
        others = [v for v in others if v is not None]
        if self.kind == "median":
            if len(others) < max(1, self.n_startup_trials):
                return None
            median = statistics.median(others)
            if mine < median:
                n = len(others)
                return f"best val UAR {mine:.4f} below the median {median:.4f} of {n} trials at epoch {step}"
            return None
        pool = sorted([mine, *others], reverse=True)
        if len(pool) < max(self.n_startup_trials, self.reduction_factor):
            return None
        keep = len(pool) // self.reduction_factor
        if mine < pool[keep - 1]:
            return (
                f"best val UAR {mine:.4f} not in the top 1/{self.reduction_factor} (>= {pool[keep - 1]:.4f}) "
                f"of {len(pool)} trials at epoch {step}"
            )
        return None


def _best_at(t: FrozenTrial, step: int) -> float | None:
    """A trial's best validation UAR over its first ``step`` epochs; None if it has fewer."""
    curve = t.user_attrs.get(attrs.UAR_PER_EPOCH) or []
    return max(curve[:step]) if len(curve) >= step else None


@dataclass(frozen=True)
class FrontRow:
    number: int
    uar: float
    latency_ms: float | None
    size_mib: float | None
    params: str

    def line(self) -> str:
        lat = "-" if self.latency_ms is None else f"{self.latency_ms:.1f} ms"
        size = "-" if self.size_mib is None else f"{self.size_mib:.2f} MiB"
        figures = f"latency {lat:>9}  size {size:>10}"
        return f"  trial {self.number:3d}  UAR {self.uar:.4f}  {figures}  {self.params}"


def front(study: optuna.Study) -> list[FrontRow]:
    """The study's Pareto front (Optuna's ``best_trials``), best UAR first."""
    rows = []
    for t in study.best_trials:
        cost = t.user_attrs.get(attrs.DEPLOY_COST) or {}
        figures = cost.get("latency_ms"), cost.get("size_mib")
        rows.append(FrontRow(t.number, uar_of(t), *figures, short_params(t.params)))
    return sorted(rows, key=lambda r: (-r.uar, r.number))


def short_params(params: dict) -> str:
    parts = []
    for k, v in params.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)
