"""Model parts a space can sample together that do not fit: found when the space is loaded.

A prompt head needs a CLIP text tower, the feature pyramid a multi-scale timm backbone, and
cross-attention fusion a head count that divides the token width. Each value can be valid on its
own while a combination the sampler can draw fails only when a trial builds its model; so every
combination of the keys below that the space can produce (``when`` conditions included) goes
through ``models.check_config``, which builds nothing.
"""

from __future__ import annotations

from typing import Any

from ..config import TrialConfig
from ..errors import FersearchError, SearchSpaceError

# The keys whose combinations decide whether a model can be built.
MODEL_KEYS = ("backbone", "head", "fpn", "fpn_dim", "fusion", "fusion_heads")
MAX_COMBINATIONS = 20_000  # beyond this, each key's values are checked against the others' first
MAX_INT_VALUES = 256  # an int range with more values is checked at its ends and one step in


def sampled_values(spec) -> list[Any]:
    """The values of one sampled parameter that decide a combination (a float: its ends)."""
    if spec.type == "categorical":
        return list(spec.choices)
    if spec.type == "int":
        step = 1 if spec.log else spec.step  # a log range can sample every integer in it
        values = range(spec.low, spec.high + 1, step)
        return list(values) if len(values) <= MAX_INT_VALUES else [values[0], values[1], values[-1]]
    return [spec.low, spec.high]  # a float condition parent: its ends


def relevant_keys(params: dict, wanted: tuple[str, ...] = MODEL_KEYS) -> list[str]:
    """The ``wanted`` keys that are sampled, plus every key their ``when`` conditions read, in
    file order."""
    keys = {k for k in wanted if k in params}
    grew = True
    while grew:
        parents = {p for k in keys for p in (params[k].when or {}) if p in params}
        grew = not parents <= keys
        keys |= parents
    return [k for k in params if k in keys]


def assignments(params: dict, keys: list[str]):
    """Every assignment of ``keys`` the sampler can produce (a key whose condition fails is
    absent, so its default applies)."""
    partial: list[dict] = [{}]
    for key in keys:
        spec = params[key]
        grown = []
        for values in partial:
            if spec.when and not all(
                values.get(k) in (v if isinstance(v, list) else [v]) for k, v in spec.when.items()
            ):
                grown.append(values)
                continue
            grown.extend({**values, key: v} for v in sampled_values(spec))
        partial = grown
        if len(partial) > MAX_COMBINATIONS:
            return None
    return partial


def _describe(config: TrialConfig, sampled: dict) -> str:
    shown = {"backbone": config.backbone}
    if config.head == "prompt" or "head" in sampled:
        shown["head"] = config.head
    if config.fpn:
        shown["fpn"] = True
    if config.fusion != "none":
        shown["fusion"] = config.fusion
        shown["fusion_heads"] = config.fusion_heads
        if config.fpn:
            shown["fpn_dim"] = config.fpn_dim
    return ", ".join(f"{k}: {v}" for k, v in shown.items())


def check_model_combinations(fixed: dict, params: dict, source: str) -> None:
    """Raise SearchSpaceError for the first combination of model parts that cannot be built."""
    from ..models import check_config  # timm import is slow; only when validating

    keys = relevant_keys(params)
    found = assignments(params, keys)
    if found is None:  # too many to list: each key's values with the others at their first
        first = {k: sampled_values(params[k])[0] for k in keys}
        found = [{**first, k: v} for k in keys for v in sampled_values(params[k])]
    seen = set()
    for sampled in found:
        values = {**fixed, **sampled}
        config = TrialConfig.model_construct(**{k: values[k] for k in MODEL_KEYS if k in values})
        key = tuple(getattr(config, k) for k in MODEL_KEYS)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_config(config)
        except FersearchError as exc:
            which = [k for k in MODEL_KEYS if k in params]
            fix = (
                f"make one of {', '.join(which)} conditional on another (params.<key>.when) or drop the value"
                if which
                else "change the fixed values"
            )
            raise SearchSpaceError(
                f"{source}: the space can build a model with {_describe(config, sampled)}, which "
                f"cannot be built: {exc}; {fix}"
            ) from None


__all__ = [
    "MAX_COMBINATIONS",
    "MODEL_KEYS",
    "assignments",
    "check_model_combinations",
    "relevant_keys",
    "sampled_values",
]
