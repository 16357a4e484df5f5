"""Pick the K best complete trials by validation UAR, merging identical configurations."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from ..errors import FersearchError


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    complete = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "config" in t.user_attrs
    ]
    if not complete:
        raise FersearchError(
            f"study {study.study_name!r} has no complete trials yet; run "
            f"`fersearch worker --study {study.study_name}` first"
        )
    complete.sort(key=lambda t: (-t.value, t.number))
    chosen, seen = [], set()
    for t in complete:
        # Two trials with the same config apart from the seed would train the same member.
        key = json.dumps({k: v for k, v in t.user_attrs["config"].items() if k != "seed"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(t)
        if len(chosen) == k:
            break
    return chosen
