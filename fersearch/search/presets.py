"""The seed documents' recipes as named presets: warm starts for a search.

Each preset is a partial TrialConfig: the values its seed document states (or that its code
snippets use). ``fersearch search --seed-recipes`` enqueues every preset once, when the study
is created, as its first trials, so the sampler starts from what people already believe works.

How a preset meets a search space (the space's constraints win, a preset fills in the rest):
  * keys the space fixes: the space's value;
  * keys the space samples: the preset's value is enqueued as the trial's parameter when the
    distribution contains it, so the sampler learns from the true value; otherwise the space
    samples it and the key is listed in the trial's ``preset_skipped`` attribute;
  * keys the space leaves alone: the preset's value.

Recipes carry their model parts (the CLIP prompt learner, face/context fusion, attention
blocks, feature pyramid, GeM pooling, Bi-LSTM, the AU head) and their augmentation. Parts that
need something the study does not have are left out when the trial is built, and listed in the
trial's ``preset_skipped`` attribute: face/context fusion without context views, the AU head
without AU labels, the prompt head when the space fixes a backbone that is not a CLIP tower.
What finalize does (TTA, ensembles, calibration) is in ``NOTES``. ``pretrained`` is never set
here: where weights come from is the study's decision (nothing downloads at run time).

A warm start (fersearch/search/warm_start.py) is a recipe too: an earlier trial's configuration,
enqueued, fitted and listed by the same functions.
"""

from __future__ import annotations

from typing import Any

import optuna

from ..config import TUNABLE_KEYS, build_config
from ..errors import InvalidArgument, one_of
from . import attrs
from .space import CategoricalParam, FloatParam, IntParam

PRESETS: dict[str, dict[str, Any]] = {
    # seed 000: CLIP-CAER to 70% UAR on RAER. CLIP ViT-B/16 (OpenAI's weights: open_clip's tag
    # `openai`, what pretrained: true reads for CLIP) with a learned prompt (lr 1e-3), the
    # image encoder at 1e-6, face/context cross-attention fusion, ColorJitter 0.1/0.1/0.1/0.05
    # (the basic pipeline), label smoothing 0.2, 50 epochs, a smaller batch.
    "clip_caer_70": {
        "backbone": "open_clip:ViT-B-16",
        "head": "prompt",
        "lr": 1e-3,  # prompt, fusion and head
        "lr_prompt": 1e-3,
        "lr_backbone": 1e-6,
        "fusion": "xattn",
        "augment": "basic",
        "epochs": 50,
        "label_smoothing": 0.2,
        "batch_size": 32,
        "schedule": "warmup_cosine",
    },
    # seed 001: ConvNeXtEmoteNet. ConvNeXt-Large with CBAM + ECA + SE attention, a feature
    # pyramid, learnable (GeM) pooling, a deeper classifier with dropout 0.6/0.4, lr 1e-4,
    # weight decay 1e-3, batch 48, oversampling to 8,000 per class, progressive 5-phase
    # augmentation, cosine warm restarts, SWA from epoch 40 and self-distillation from 30 of 400.
    "convnext_emotenet": {
        "backbone": "convnext_large.fb_in22k_ft_in1k",  # ImageNet-22k, fine-tuned on 1k
        "attention": "cbam+eca+se",
        "fpn": True,
        "pool": "gem",
        "head": "mlp",
        "head_layers": 2,
        "head_hidden": 512,
        "dropout": 0.6,
        "head_dropout": 0.4,
        "augment": "strong",
        "augment_phases": 5,
        "augment_strength_start": 0.2,
        "epochs": 400,
        "lr": 1e-4,
        "weight_decay": 1e-3,
        "batch_size": 48,
        "sampler": "oversample",
        "oversample_per_class": 8000,
        "schedule": "cosine_restarts",
        "swa_start": 0.1,
        "self_distill_start": 0.075,
    },
    # seed 002: the 4-stage curriculum with its own table (the curriculum defaults), LR flat
    # until the cooldown's milestones, 100 epochs.
    "raer_4stage": {
        "curriculum": True,
        "epochs": 100,
        "schedule": "constant",
        "augment": "strong",  # "strong augmentation throughout"
    },
    # seed 003: EfficientNet-B4, dual attention, a Bi-LSTM (hidden 512) over the 7x7 tokens,
    # AdamW 1e-4, ReduceLROnPlateau with patience 5, weighted cross-entropy, batch 32, clipping.
    "efficientnet_bilstm": {
        "backbone": "efficientnet_b4.ra2_in1k",  # ImageNet-1k (RandAugment recipe 2)
        "attention": "dual",
        "head": "bilstm",
        "lstm_hidden": 512,
        "optimizer": "adamw",
        "lr": 1e-4,
        "schedule": "plateau",
        "plateau_patience": 5,
        "class_weight_cap": 100.0,  # inverse-frequency weights, in effect uncapped
        "batch_size": 32,
        "grad_clip": 1.0,
    },
    # seed 004: RAF-CE compound emotions. Of its "ConvNeXt/Swin/EfficientNet from timm", Swin-Base
    # (ImageNet-22k, fine-tuned on 1k; the compound_au space samples the others); focal loss +
    # label smoothing, mixup 0.2 and cutmix 1.0 (its snippets' alphas), warm-up + cosine, the
    # albumentations pipeline, an AU head sized by the dataset's AU labels with the multi-task
    # loss weighted 0.7/0.3.
    "compound_au": {
        "backbone": "swin_base_patch4_window7_224.ms_in22k_ft_in1k",
        "augment": "strong",
        "loss": "focal",
        "focal_gamma": 2.0,
        "label_smoothing": 0.1,
        "mixup_alpha": 0.2,
        "cutmix_alpha": 1.0,
        "schedule": "warmup_cosine",
        "warmup_epochs": 5,
        "au_loss_weight": 0.43,  # 0.3 / 0.7: the emotion loss keeps weight 1
    },
}

# What the recipes do after training: finalize's options, not trial settings.
NOTES = {
    "clip_caer_70": "",
    "convnext_emotenet": "16-view TTA (finalize --tta full), 5-checkpoint ensemble, per-emotion thresholds",
    "raer_4stage": "",
    "efficientnet_bilstm": "",
    "compound_au": "TTA, ensembles, k-fold (finalize --cv 5), distillation",
}

# Recipes with an AU head: its size comes from the dataset's AU labels (RAF-CE), not the recipe.
AU_RECIPES = {"compound_au"}
PROMPT_KEYS = ("head", "lr_prompt", "prompt_ctx", "prompt_class_specific")


def get_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise InvalidArgument(f"unknown seed recipe {name!r}: {one_of(name, PRESETS)}")
    return dict(PRESETS[name])


def validate_presets() -> None:
    """Every preset is a valid partial TrialConfig (run by the tests)."""
    for name, values in PRESETS.items():
        unknown = set(values) - set(TUNABLE_KEYS)
        if unknown:
            raise InvalidArgument(f"preset {name!r}: unknown keys {sorted(unknown)}")
        build_config({"data": {"root": "."}, **values})


def split_for_space(preset: dict[str, Any], space) -> tuple[dict[str, Any], list[str]]:
    """(params to enqueue, keys skipped) for a recipe (a preset, or a warm start's configuration)
    in a SearchSpace (see the module doc). A sampled key whose ``when`` condition the enqueued
    values rule out is neither: the trial never samples it, so there is nothing to skip."""

    enqueue, skipped = {}, []
    for key, value in preset.items():
        if key in space.fixed:
            skipped.append(key)
            continue
        spec = space.params.get(key)
        if spec is None:
            continue
        if _holds(spec, value):
            enqueue[key] = value
        else:
            skipped.append(key)
    inactive = {k for k in [*enqueue, *skipped] if k in space.params and _ruled_out(space.params[k], enqueue)}
    enqueue = {k: v for k, v in enqueue.items() if k not in inactive}
    return enqueue, [k for k in skipped if k not in inactive]


def _holds(spec, value) -> bool:
    """Whether the distribution ``spec`` contains ``value``."""
    if isinstance(spec, CategoricalParam):
        return value in spec.choices
    if isinstance(spec, (FloatParam, IntParam)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = number and spec.low <= value <= spec.high
        return ok and (not isinstance(spec, IntParam) or float(value).is_integer())
    return False


def _ruled_out(spec, enqueue: dict[str, Any]) -> bool:
    """The spec's ``when`` condition fails on a key whose value is enqueued (sample_params' test)."""
    when = spec.when or {}
    allowed = {k: v if isinstance(v, list) else [v] for k, v in when.items()}
    return any(k in enqueue and enqueue[k] not in ok for k, ok in allowed.items())


def enqueue_presets(study: optuna.Study, space, names: list[str] | None = None) -> list[str]:
    """Enqueue each named preset (default: all) once. Call only when creating the study:
    enqueueing from many workers at once would duplicate trials."""
    names = list(PRESETS) if names is None else names
    for name in names:
        params, skipped = split_for_space(get_preset(name), space)
        study.enqueue_trial(params, user_attrs={attrs.PRESET: name, attrs.PRESET_SKIPPED: skipped})
    return names


def recipe_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> tuple[dict[str, Any], bool] | None:
    """(recipe values, whether it has an AU head) of a trial that runs a recipe: a seed recipe
    (by name) or a warm start (the earlier trial's configuration, stored on the trial); None
    for other trials."""
    name = trial.user_attrs.get(attrs.PRESET)
    if name:
        return get_preset(name), name in AU_RECIPES
    warm = trial.user_attrs.get(attrs.WARM_START_RECIPE)
    if warm:
        return dict(warm), bool(warm.get("au_classes"))
    return None


def recipe_values(
    trial: optuna.Trial,
    space,
    params: dict[str, Any] | None = None,
    has_context: bool = True,
    au_classes: int = 0,
) -> dict[str, Any]:
    """The values a recipe trial (a seed recipe or a warm start) sets beyond its sampled
    ``params`` ({} for other trials), fitted to the study's data (``has_context``: context views;
    ``au_classes``: AU labels); parts it cannot use are recorded in the trial's ``preset_skipped``
    attribute."""
    recipe = recipe_of(trial)
    if recipe is None:
        return {}
    values, dropped = fit_recipe(recipe[0], recipe[1], space, params or {}, has_context, au_classes)
    if dropped:
        skipped = list(trial.user_attrs.get(attrs.PRESET_SKIPPED, []))
        trial.set_user_attr(attrs.PRESET_SKIPPED, skipped + [k for k in dropped if k not in skipped])
    return values


def fit_to_study(
    name: str, space, params: dict[str, Any], has_context: bool, au_classes: int
) -> tuple[dict[str, Any], list[str]]:
    """(values to set, keys dropped) for preset ``name`` in a study (see ``recipe_values``)."""
    return fit_recipe(get_preset(name), name in AU_RECIPES, space, params, has_context, au_classes)


def fit_recipe(
    recipe: dict[str, Any], au_head: bool, space, params: dict[str, Any], has_context: bool, au_classes: int
) -> tuple[dict[str, Any], list[str]]:
    """(values to set, keys dropped) for a recipe in a study: the keys the space leaves alone,
    less the parts the study cannot use. ``au_head``: the recipe has an AU head, sized here by
    the study's AU labels (``au_classes``), whatever size it had where it came from."""
    values = {k: v for k, v in recipe.items() if k not in space.fixed and k not in space.params}
    dropped: list[str] = []
    if values.get("fusion", "none") != "none" and not has_context:
        dropped.append("fusion")
    backbone = space.fixed.get("backbone", params.get("backbone", recipe.get("backbone", "")))
    if values.get("head") == "prompt" and not str(backbone).startswith("open_clip:"):
        dropped += [k for k in PROMPT_KEYS if k in values]
    values = {k: v for k, v in values.items() if k not in dropped}
    if au_head and "au_classes" not in space.fixed and "au_classes" not in space.params:
        values.pop("au_classes", None)
        if au_classes:
            values["au_classes"] = au_classes
        else:
            dropped.append("au_classes")
    return values, dropped
