"""Pick the K best complete trials by validation UAR (identical configs merged) and expand
each into its ensemble members, one per retraining seed. On a Pareto search (``objectives:``)
``--top K`` picks from the front first (its trials by validation UAR, the first objective), then
from the other complete trials by UAR; `fersearch status` prints the front, and finalize's
--max-latency-ms / --max-size-mb bound the deployed ensemble."""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from ..config import TrialConfig, build_config, comparable_config
from ..errors import FersearchError, InvalidArgument
from ..search import attrs
from ..search.pareto import uar_of
from ..train.checkpoint import BEST, checkpoint_path
from ..version import code_version


def search_history(study: optuna.Study) -> dict:
    """Every finished trial in order, with the best validation UAR found so far: how the search
    improved, for the report."""
    rows, best = [], None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        value = uar_of(t) if t.state == TrialState.COMPLETE else None
        if value is not None and (best is None or value > best):
            best = value
        curve = t.user_attrs.get(attrs.UAR_PER_EPOCH) or []
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "val_uar": value,
                "last_val_uar": curve[-1] if curve else None,
                "epochs": len(curve),
                "best_so_far": best,
            }
        )
    return {
        "trials": rows,
        "complete": sum(r["state"] == "complete" for r in rows),
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "best_val_uar": best,
    }


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if attrs.CONFIG in t.user_attrs
    ]
    if not complete:
        raise FersearchError(
            f"study {study.study_name!r} has no complete trials yet; run "
            f"`fersearch worker --study {study.study_name}` first"
        )
    # a Pareto study's front first: no other trial beats them on every objective
    front = {t.number for t in study.best_trials} if len(study.directions) > 1 else set()
    complete.sort(key=lambda t: (t.number not in front, -uar_of(t), t.number))
    chosen, seen = [], set()
    for t in complete:
        # Two trials with the same config apart from the seed (and where or how they ran) would
        # train the same member.
        config = comparable_config(t.user_attrs[attrs.CONFIG])
        key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(t)
        if len(chosen) == k:
            break
    return chosen


@dataclass(frozen=True)
class MemberSpec:
    """One model to retrain: a trial's stored config with a given seed. ``trial_weights``: the
    trial's own best checkpoint when this member would train it again (the trial's seed, the
    same code, the file on this host); finalize then loads it instead of training."""

    trial: int
    seed: int
    config: TrialConfig
    search_val_uar: float
    trial_weights: str | None = None

    @property
    def id(self) -> str:
        return f"trial{self.trial}_seed{self.seed}"


def member_specs(trials: list[optuna.trial.FrozenTrial], seeds: int) -> list[MemberSpec]:
    """Seed 0 of each trial is the trial's own seed (the retrain repeats the trial); the others
    are the next integers, so ``--seeds 3`` gives seeds s, s+1, s+2."""
    if seeds < 1:
        raise InvalidArgument(f"--seeds must be at least 1 (got {seeds})")
    specs = []
    for t in trials:
        config = build_config(t.user_attrs[attrs.CONFIG])
        for i in range(seeds):
            seeded = config.model_copy(update={"seed": config.seed + i})
            own = trial_weights(t) if i == 0 else None
            specs.append(MemberSpec(t.number, seeded.seed, seeded, uar_of(t), own))
    return specs


def trial_weights(trial: optuna.trial.FrozenTrial) -> str | None:
    """The trial's best checkpoint, if training its config and seed again would repeat it: the
    trial ran this code version and its checkpoint folder is on this host. (Training is
    deterministic for a given config, seed, code and data; tests/finalize/test_reuse.py.)"""
    folder = trial.user_attrs.get(attrs.CHECKPOINT_DIR)
    if not folder or trial.user_attrs.get(attrs.CODE_VERSION) != code_version():
        return None
    path = checkpoint_path(folder, BEST)
    return str(path) if path.is_file() else None
