"""Every weights source a search space (and its seed recipes) can ask for, checked before a
study is created so that no trial fails mid-study on a missing file.

The (backbone, pretrained) pairs follow the sampler: fixed values, sampled choices and ``when``
conditions (the enumeration of ``combinations.py``), a key absent from a trial taking
TrialConfig's default. A seed recipe sets its backbone only where the space leaves
``backbone`` alone, and never ``pretrained`` (presets.py): it pairs with every ``pretrained``
the space can produce. A finished model to fine-tune from (``trial:STUDY/N``, ``ensemble:DIR#I``)
is present when its checkpoint is readable here and it was trained with the pair's backbone
(fersearch/search/finetune.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..config import TrialConfig
from ..errors import ModelError
from ..models.pretrained import DOWNLOAD_ENV, FINETUNE_KINDS, downloads_allowed, finetune_kind
from ..models.weights import WeightsSource, weights_source
from .combinations import assignments as combinations
from .combinations import relevant_keys, sampled_values
from .finetune import finetune_status
from .presets import PRESETS
from .space import SearchSpace
from .storage import mask_url, open_storage, resolve_url

KEYS = ("backbone", "pretrained")


def _default(key: str) -> Any:
    return TrialConfig.model_fields[key].default


def space_pairs(
    space: SearchSpace, seed_recipes: bool = False, recipe_backbones: tuple[str, ...] = ()
) -> list[tuple[str, bool | str]]:
    """Every (backbone, pretrained) a trial of this space can build, in a stable order;
    ``recipe_backbones``: more backbones recipes set (a warm start's), like the seed recipes'."""
    params = space.params
    assignments = combinations(params, relevant_keys(params, KEYS))
    if assignments is None:  # too many to follow the conditions: every value of each (a superset)
        options = []
        for key in KEYS:
            if key in params:
                conditional = [_default(key)] if params[key].when else []
                options.append(sampled_values(params[key]) + conditional)
            else:
                options.append([space.fixed.get(key, _default(key))])
        assignments = [dict(zip(KEYS, combo, strict=True)) for combo in itertools.product(*options)]
    pairs: dict[tuple, tuple[str, bool | str]] = {}
    for sampled in assignments:
        values = {**{k: _default(k) for k in KEYS}, **space.fixed, **sampled}
        pair = (str(values["backbone"]), values["pretrained"])
        pairs.setdefault((pair[0], repr(pair[1])), pair)
    recipes = [p["backbone"] for p in PRESETS.values() if "backbone" in p] if seed_recipes else []
    recipes += list(recipe_backbones)
    if recipes and "backbone" not in space.fixed and "backbone" not in params:
        pretrained = list({repr(p): p for _, p in pairs.values()}.values())
        for backbone in recipes:
            for p in pretrained:
                pairs.setdefault((backbone, repr(p)), (backbone, p))
    return list(pairs.values())


def space_sources(
    space: SearchSpace, seed_recipes: bool = False, storage_url: str | None = None
) -> list[WeightsSource]:
    """The weights source of every pair ``space_pairs`` gives, present or not (no download);
    ``storage_url``: the study store ``trial:STUDY/N`` sources are looked up in."""
    return sources_of(space_pairs(space, seed_recipes), storage_url)


def sources_of(pairs: list[tuple[str, bool | str]], storage_url: str | None = None) -> list[WeightsSource]:
    """``weights_source`` of each pair, fine-tune sources (``trial:``, ``ensemble:``, a
    ``best.json``) checked too: their files read, ``trial:`` through the store at ``storage_url``
    (opened only for them; an embedded journal that does not exist is not created)."""
    out, storage, where = [], None, mask_url(resolve_url(storage_url))
    for backbone, pretrained in pairs:
        source = weights_source(backbone, pretrained)
        if source.kind in FINETUNE_KINDS and not source.checked:
            if source.kind == "trial" and storage is None and _store_exists(storage_url):
                storage = open_storage(storage_url)
            source = finetune_status(backbone, str(pretrained), storage, where)
        out.append(source)
    return out


def _store_exists(storage_url: str | None) -> bool:
    url = resolve_url(storage_url)
    return not url.startswith("journal:") or Path(url.removeprefix("journal:")).is_file()


def missing_line(source: WeightsSource) -> str:
    """One missing source in a line: what, where it is looked for, how to put it there."""
    head = f"{source.backbone} (pretrained: {source.pretrained_text})"
    if source.fetch and source.repo:
        return f"{head}: {source.origin} is not in the Hugging Face cache; fetch it with `{source.fetch}`"
    if source.fetch:
        return f"{head}: {source.url} is not at {source.path}; fetch it with `{source.fetch}`"
    return f"{head}: {source.problem}"


def blocking_sources(sources: list[WeightsSource]) -> list[WeightsSource]:
    """The sources a trial would fail on: missing or invalid, except hub and URL files that the
    trial will fetch itself because FERSEARCH_ALLOW_DOWNLOAD=1 is set here."""
    allowed = downloads_allowed()
    return [s for s in sources if s.status in ("missing", "invalid") and not (allowed and s.downloadable)]


def check_space_weights(
    space: SearchSpace,
    space_arg: str,
    seed_recipes: bool = False,
    recipe_backbones: tuple[str, ...] = (),
    storage_url: str | None = None,
) -> None:
    """Raise one ModelError naming every weights source the space can sample that a trial would
    fail on, and what to do; ``space_arg``: the --space value, for the command that lists them;
    ``recipe_backbones``: a warm start's backbones (see ``space_pairs``); ``storage_url``: the
    study's store, where ``pretrained: trial:STUDY/N`` is looked up."""
    pairs = space_pairs(space, seed_recipes, recipe_backbones)
    blocking = blocking_sources(sources_of(pairs, storage_url))
    if not blocking:
        return
    recipes = " --seed-recipes" if seed_recipes else ""
    lines = "; ".join(missing_line(s) for s in blocking)
    pulled = {b for b, _ in space_pairs(space, seed_recipes)}  # what `weights pull` fetches
    warm = sorted({s.backbone for s in blocking} & set(recipe_backbones) - pulled)
    if warm:
        lines += (
            f" (the warm start's configurations use {', '.join(warm)}, which `fersearch weights pull` "
            f"does not know of: fetch them as named above, or warm-start with fewer trials)"
        )
    if all(finetune_kind(s.pretrained) for s in blocking):  # nothing to fetch: each line says what to do
        store = f" --storage {mask_url(storage_url)}" if storage_url else ""
        raise ModelError(
            f"space {space_arg!r} can sample {len(blocking)} finished model(s) to fine-tune from that "
            f"trials could not load, so they would fail mid-study; nothing was created. {lines}. "
            f"`fersearch weights list --space {space_arg}{recipes}{store}` lists every source and its status"
        )
    raise ModelError(
        f"space {space_arg!r} can sample {len(blocking)} pretrained weights source(s) that are not on "
        f"this host, so its trials would fail mid-study; nothing was created. {lines}. Fetch them "
        f"with `fersearch weights pull --space {space_arg}{recipes}`, put the files in place, point "
        f"pretrained at a local file (pretrained: /path/to/file), use pretrained: false, or set "
        f"{DOWNLOAD_ENV}=1 to let trials fetch hub and URL files themselves; "
        f"`fersearch weights list --space {space_arg}{recipes}` lists every source and its status"
    )


__all__ = [
    "blocking_sources",
    "check_space_weights",
    "missing_line",
    "sources_of",
    "space_pairs",
    "space_sources",
]
