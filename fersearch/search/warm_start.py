"""Warm start: the K best complete trials of an earlier study (on the same data or another) as
the first trials of a new one: ``fersearch create ... --warm-start-from STUDY``.

Each source trial's configuration (the TrialConfig stored on it; its parameters for a study
fersearch did not create) is a recipe, handled exactly as a seed recipe is (presets.py): keys the
new space samples are enqueued as the trial's parameters where its distribution holds the value,
else sampled and listed in the trial's ``preset_skipped``; keys the space fixes keep the space's
value (listed when the source's differed); keys the space leaves alone take the source's value,
less the parts the new study cannot use (fusion without context views, the prompt head under a
non-CLIP backbone, the AU head without AU labels; an AU head is sized by the new data's labels).
Never carried over: the seed, where and how the run executes, and where files come from
(``pretrained``, ``teacher``: the new study's decision, as for seed recipes).

Only COMPLETE trials count, ranked by the source study's direction (ties: the earlier trial);
trials whose configurations are the same are taken once. The trials are enqueued once, by the
process that creates the study: enqueueing from several processes would duplicate them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..config import RUNTIME_KEYS, TUNABLE_KEYS, build_config
from ..errors import ConfigError, InvalidArgument, StudyNotFound
from . import attrs
from .presets import split_for_space
from .space import SearchSpace
from .storage import mask_url, open_storage, resolve_url

# Keys of a source configuration a warm start never carries over (see the module doc).
NOT_CARRIED = ("seed", "pretrained", "teacher", *RUNTIME_KEYS)
DEFAULT_TOP = 5


@dataclass(frozen=True)
class SourceTrial:
    """One trial of the source study, as a recipe."""

    number: int
    value: float
    recipe: dict[str, Any]  # its tunable keys, less NOT_CARRIED
    unknown: list[str]  # keys no TrialConfig field holds (a study fersearch did not create)


@dataclass(frozen=True)
class WarmStart:
    """What a warm start enqueues: the source study and its best distinct trials, best first."""

    study: str
    top: int
    trials: list[SourceTrial]

    def backbones(self) -> list[str]:
        """The backbones the configurations name, for the weights check at creation."""
        return list(dict.fromkeys(str(t.recipe["backbone"]) for t in self.trials if "backbone" in t.recipe))


def check_top(top: int) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidArgument(
            f"--warm-start-top must be a whole number of at least 1 (got {top!r}): how many of the "
            f"source study's best complete trials to enqueue; omit it for {DEFAULT_TOP}"
        )
    return top


def read_warm_start(source: str, storage_url: str | None, top: int) -> WarmStart:
    """The ``top`` best distinct complete trials of study ``source`` in ``storage_url``. Reads
    only: nothing is written anywhere."""
    check_top(top)
    storage = open_storage(storage_url)
    names = sorted(optuna.get_all_study_names(storage))
    where = mask_url(resolve_url(storage_url))
    if source not in names:
        raise StudyNotFound(
            f"--warm-start-from {source!r}: no study of that name in {where}; its studies: "
            f"{', '.join(names) or 'none'}. Name one of them, or give the store that holds it "
            f"with --warm-start-storage URL"
        )
    study = optuna.load_study(study_name=source, storage=storage, sampler=optuna.samplers.RandomSampler())
    if len(study.directions) > 1:
        raise InvalidArgument(
            f"--warm-start-from {source!r} is a multi-objective study ({len(study.directions)} "
            f"objectives), so it has no single ranking of its trials; warm-start from a "
            f"single-objective study"
        )
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        states = Counter(t.state.name.lower() for t in trials)
        seen = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials at all"
        raise InvalidArgument(
            f"--warm-start-from {source!r} (in {where}) has no complete trial yet ({seen}); only "
            f"complete trials are enqueued. Run `fersearch worker --study {source}` until some "
            f"complete, or warm-start from another study"
        )
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    chosen: list[SourceTrial] = []
    seen_recipes: set[str] = set()
    for t in complete:
        one = source_trial(t, source)
        key = json.dumps(one.recipe, sort_keys=True, default=str)
        if key not in seen_recipes:
            seen_recipes.add(key)
            chosen.append(one)
        if len(chosen) == top:
            break
    return WarmStart(source, top, chosen)


def source_trial(t: FrozenTrial, source: str) -> SourceTrial:
    """A complete trial's configuration as a recipe, checked as a TrialConfig."""
    stored = t.user_attrs.get(attrs.CONFIG)
    values = stored if isinstance(stored, dict) else dict(t.params)
    recipe = {k: v for k, v in values.items() if k in TUNABLE_KEYS and k not in NOT_CARRIED}
    unknown = sorted(k for k in values if k not in TUNABLE_KEYS and k != "data")
    try:
        build_config({"data": {"root": "."}, **recipe})
    except ConfigError as exc:
        raise InvalidArgument(
            f"--warm-start-from {source!r}: trial {t.number}'s configuration is not one this "
            f"version of fersearch can run ({exc}); warm-start with a smaller --warm-start-top, "
            f"or from another study"
        ) from None
    return SourceTrial(t.number, float(t.value), recipe, unknown)


def enqueue_warm_start(study: optuna.Study, space: SearchSpace, warm: WarmStart) -> dict[str, Any]:
    """Enqueue each source trial once, best first, fitted to ``space`` the way seed recipes are
    (presets.split_for_space); the study attribute to record (``attrs.WARM_START``). Call only
    when creating the study."""
    for t in warm.trials:
        # a key the space fixes to the source's own value loses nothing: not worth listing
        held = {k: v for k, v in t.recipe.items() if not (k in space.fixed and space.fixed[k] == v)}
        params, skipped = split_for_space(held, space)
        study.enqueue_trial(
            params,
            user_attrs={
                attrs.WARM_START_FROM: {"study": warm.study, "trial": t.number, "value": t.value},
                attrs.WARM_START_RECIPE: t.recipe,
                attrs.PRESET_SKIPPED: skipped + t.unknown,
            },
        )
    return {"study": warm.study, "top": warm.top, "trials": [t.number for t in warm.trials]}


__all__ = [
    "DEFAULT_TOP",
    "NOT_CARRIED",
    "SourceTrial",
    "WarmStart",
    "check_top",
    "enqueue_warm_start",
    "read_warm_start",
    "source_trial",
]
