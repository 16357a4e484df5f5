"""Deployment budgets in the search (a space's ``deploy:``): a trial whose model cannot be
deployed ends before it trains.

At the start of a trial, before any data is decoded, the worker builds the trial's model and
measures its cost (fersearch/ensemble/cost.py); the figures go on the trial (``deploy_cost``). A
model over a budget ends the trial as PRUNED with ``fersearch:infeasible`` saying which figure,
the budget and by how much, and no epoch is trained.

The samplers learn to avoid that region through Optuna's ``constraints_func``: each measured
trial carries one value per budget (measured minus budget: positive is infeasible). TPE puts
infeasible trials among its bad examples and GP weighs its acquisition by the probability of
feasibility; the random sampler takes no constraints and keeps proposing such models, each of
which then costs one model build and a few predict calls, never an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import torch

from ..ensemble.cost import Cost, measure
from . import attrs
from .space import DeployBudget

FIGURES = ("latency_ms", "size_mib")  # one constraint per figure, in this order
# Optuna 5 reads constraints from the trial (Trial.set_constraint) and deprecates the samplers'
# constraints_func; Optuna 4 has only constraints_func.
TRIAL_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


@dataclass(frozen=True)
class Verdict:
    cost: Cost
    constraints: list[float]  # [latency, size]: measured minus budget, 0 where no budget
    reason: str | None  # None: within every budget

    @property
    def feasible(self) -> bool:
        return self.reason is None


def assess(budget: DeployBudget, model: torch.nn.Module) -> Verdict:
    """Measure ``model`` as the budget says and compare."""
    if budget.device == "cuda" and not torch.cuda.is_available():
        device = "cpu"  # no GPU on this worker: its CPU stands in, and the cost says so
    else:
        device = budget.device
    # a model three times over the latency budget is timed once: one call settles it
    far = 3 * budget.max_latency_ms if budget.max_latency_ms is not None else None
    cost = measure(model, device, budget.threads, budget.batch, budget.tta_views, stop_above_ms=far)
    over, constraints = [], []
    for figure, limit, unit, what in (
        (cost.latency_ms, budget.max_latency_ms, "ms", "latency"),
        (cost.size_mib, budget.max_size_mb, "MiB", "size"),
    ):
        constraints.append(0.0 if limit is None else figure - limit)
        if limit is not None and figure > limit:
            over.append(f"{what} {figure:.1f} {unit} > budget {limit:g} {unit}")
    where = f"on {cost.device}, {cost.threads} thread(s), batch {cost.batch}, {cost.views} view(s)"
    reason = f"{'; '.join(over)} ({where})" if over else None
    return Verdict(cost, constraints, reason)


def record(trial: optuna.Trial, verdict: Verdict) -> None:
    """The figures on the trial, and for an infeasible one its reason (the caller then ends it
    PRUNED). Idempotent: written again whole after a dropped connection."""
    trial.set_user_attr(attrs.DEPLOY_COST, verdict.cost.as_dict())
    trial.set_user_attr(attrs.CONSTRAINTS, verdict.constraints)
    if TRIAL_CONSTRAINTS:
        known = _constraints_set(trial)
        for figure, value in zip(FIGURES, verdict.constraints):
            if figure not in known:  # set once: a rewrite after a dropped connection is skipped
                trial.set_constraint(figure, value)
    if not verdict.feasible:
        trial.set_user_attr(attrs.INFEASIBLE, verdict.reason)


def _constraints_set(trial: optuna.Trial) -> dict:
    """The constraints the trial already carries (Optuna 5's ``Trial.constraints``)."""
    return dict(getattr(trial, "constraints", {}) or {})


def sampler_options() -> dict:
    """What a constraint-aware sampler is given: nothing on Optuna 5 (the trials carry their
    constraints), ``constraints_func`` on Optuna 4."""
    return {} if TRIAL_CONSTRAINTS else {"constraints_func": constraints_func}


def constraints_func(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna's constraint values for a finished trial: measured minus budget per figure. A
    trial that ended before it was measured counts as feasible (nothing is known against it)."""
    return list(trial.user_attrs.get(attrs.CONSTRAINTS, [0.0, 0.0]))
