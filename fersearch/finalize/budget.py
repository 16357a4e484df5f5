"""Finalize under a deployment budget (``--max-latency-ms``, ``--max-size-mb``): the members and
the TTA view set are chosen so that the deployed ensemble meets it.

Each trained member is measured once (fersearch/ensemble/cost.py: the torch predict path on
``threads`` CPU threads, batch 1, with every candidate view set's own views; the size of its
exported file). An ensemble's cost is the sum over its distinct members (they run one after
another) at the view set. For each view set, members are added greedily, on validation UAR of their plain
mean (ties: lower negative log-likelihood), as long as the next one keeps the ensemble within the
budget; every prefix is a candidate point. The best candidate on validation UAR wins (ties: the
cheaper). Its weights are then chosen among its members by finalize's usual rule (weighting.py),
so the shipped ensemble never costs more than the candidate. All of this is on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ensemble import tta
from ..ensemble.cost import measure
from ..errors import ModelError
from .weighting import score


@dataclass(frozen=True)
class Budget:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None  # MiB, as the reports print sizes
    threads: int = 1  # seed 004's budget: one CPU thread

    @property
    def active(self) -> bool:
        return self.max_latency_ms is not None or self.max_size_mb is not None

    def fits(self, latency_ms: float, size_mib: float) -> bool:
        return (self.max_latency_ms is None or latency_ms <= self.max_latency_ms) and (
            self.max_size_mb is None or size_mib <= self.max_size_mb
        )


def member_cost(model, view_sets: list[str], threads: int) -> dict:
    """One member's file size and its latency with each view set (batch 1)."""
    by_views = {name: measure(model, threads=threads, views=tta.view_set(name)) for name in view_sets}
    latency = {name: c.latency_ms for name, c in by_views.items()}
    return {"size_mib": next(iter(by_views.values())).size_mib, "latency_ms": latency}


def choose_under_budget(
    member_views: np.ndarray, view_names: list[str], labels, n_cls: int, costs: list[dict], budget: Budget
) -> dict:
    """member_views (M, V, N, K) on validation. Returns the chosen view set and members, and
    every candidate point (for the report's UAR-vs-latency plot)."""
    candidates = []
    for name, views in tta.VIEW_SETS.items():  # in order of cost
        if not set(views) <= set(view_names):
            continue
        idx = [view_names.index(v) for v in views]
        probs = member_views[:, idx].mean(1)  # (M, N, K)
        candidates += _greedy(probs, labels, n_cls, costs, budget, name)
    if not candidates:
        cheapest = min(costs, key=lambda c: min(c["latency_ms"].values()))
        raise ModelError(
            f"no member meets the deployment budget ({describe_limits(_as_dict(budget))}): "
            f"the cheapest runs in "
            f"{min(cheapest['latency_ms'].values()):.1f} ms and weighs {cheapest['size_mib']:.1f} MiB "
            f"on {budget.threads} thread(s); raise the budget, or search with smaller backbones "
            f"(a space's deploy: section)"
        )
    best = max(candidates, key=lambda c: (c["val_uar"], -c["nll"], -c["latency_ms"]))
    best["chosen"] = True
    chosen = {"view_set": best["view_set"], "members": best["members"]}
    return {"budget": _as_dict(budget), **chosen, "candidates": candidates}


def _greedy(probs, labels, n_cls, costs, budget: Budget, view_set: str) -> list[dict]:
    chosen: list[int] = []
    points = []
    while True:
        best = None
        for i in range(len(probs)):
            if i in chosen:
                continue
            members = [*chosen, i]
            latency = sum(costs[j]["latency_ms"][view_set] for j in members)
            size = sum(costs[j]["size_mib"] for j in members)
            if not budget.fits(latency, size):
                continue
            uar, loglik = score(labels, probs[members].mean(0), n_cls)
            key = (uar, loglik, -latency)
            if best is None or key > best[0]:
                best = (key, members, latency, size)
        if best is None:
            return points
        (uar, loglik, _), chosen, latency, size = best
        points.append(
            {
                "view_set": view_set,
                "members": list(chosen),
                "latency_ms": latency,
                "size_mib": size,
                "val_uar": uar,
                "nll": -loglik,
                "chosen": False,
            }
        )


def describe_limits(limits: dict) -> str:
    """'100 ms per image, 500 MiB' from a budget's dict (report.json's ``budget``)."""
    parts = [f"{limits['max_latency_ms']:g} ms per image"] if limits["max_latency_ms"] is not None else []
    parts += [f"{limits['max_size_mb']:g} MiB"] if limits["max_size_mb"] is not None else []
    return ", ".join(parts)


def _as_dict(budget: Budget) -> dict:
    limits = {"max_latency_ms": budget.max_latency_ms, "max_size_mb": budget.max_size_mb}
    return {**limits, "threads": budget.threads}
