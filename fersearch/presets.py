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

Parts of a recipe that belong to other modules (CLIP prompt learner, face/context fusion,
attention blocks, Bi-LSTM, AU head, albumentations pipelines, TTA) are named in ``notes`` and
become preset values when those TrialConfig fields exist. ``pretrained`` is never set here:
where weights come from is the study's decision (nothing downloads at run time).
"""

from __future__ import annotations

from typing import Any

import optuna

from .config import TUNABLE_KEYS, build_config
from .errors import InvalidArgument, one_of

PRESET_ATTR = "fersearch:preset"

PRESETS: dict[str, dict[str, Any]] = {
    # seed 000: CLIP-CAER to 70% UAR on RAER. ViT-B/16 CLIP image tower (timm's), 50 epochs,
    # image-encoder lr 1e-6, label smoothing 0.2, smaller batch.
    "clip_caer_70": {
        "backbone": "vit_base_patch16_clip_224",  # timm; weights tag .openai
        "epochs": 50,
        "lr": 1e-6,
        "label_smoothing": 0.2,
        "batch_size": 32,
        "schedule": "warmup_cosine",
    },
    # seed 001: ConvNeXtEmoteNet. ConvNeXt-Large, deeper classifier with dropout 0.6, lr 1e-4,
    # weight decay 1e-3, batch 48, oversampling to 8,000 per class, cosine warm restarts,
    # SWA from epoch 40 and self-distillation from epoch 30 of 400.
    "convnext_emotenet": {
        "backbone": "convnext_large",
        "head": "mlp",
        "head_hidden": 512,
        "dropout": 0.6,
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
    },
    # seed 003: EfficientNet-B4 (+ dual attention and Bi-LSTM), AdamW 1e-4, ReduceLROnPlateau
    # with patience 5, weighted cross-entropy, batch 32, gradient clipping.
    "efficientnet_bilstm": {
        "backbone": "efficientnet_b4",
        "optimizer": "adamw",
        "lr": 1e-4,
        "schedule": "plateau",
        "plateau_patience": 5,
        "class_weight_cap": 100.0,  # inverse-frequency weights, in effect uncapped
        "batch_size": 32,
        "grad_clip": 1.0,
    },
    # seed 004: RAF-CE compound emotions. ConvNeXt, focal loss + label smoothing, mixup 0.2 and
    # cutmix 1.0 (its snippets' alphas), warm-up + cosine, AU multi-task loss weighted 0.7/0.3.
    "compound_au": {
        "backbone": "convnext_base",
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

NOTES = {
    "clip_caer_70": "prompt-learner lr 1e-3, face/context cross-attention fusion, ColorJitter",
    "convnext_emotenet": "CBAM+ECA+SE attention, feature pyramid, learnable pooling, 5-phase "
    "augmentation, 16-view TTA",
    "raer_4stage": "strong augmentation throughout",
    "efficientnet_bilstm": "dual channel+spatial attention, Bi-LSTM (hidden 512) over 7x7 tokens",
    "compound_au": "AU head, albumentations pipeline, TTA, k-fold",
}


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
    """(params to enqueue, keys skipped) for a preset in a SearchSpace (see the module doc)."""
    from .search.space import CategoricalParam, FloatParam, IntParam

    enqueue, skipped = {}, []
    for key, value in preset.items():
        if key in space.fixed:
            skipped.append(key)
            continue
        spec = space.params.get(key)
        if spec is None:
            continue
        if isinstance(spec, CategoricalParam):
            ok = value in spec.choices
        elif isinstance(spec, (FloatParam, IntParam)):
            ok = isinstance(value, (int, float)) and spec.low <= value <= spec.high
            ok = ok and (not isinstance(spec, IntParam) or float(value).is_integer())
        else:
            ok = False
        if ok:
            enqueue[key] = value
        else:
            skipped.append(key)
    return enqueue, skipped


def enqueue_presets(study: optuna.Study, space, names: list[str] | None = None) -> list[str]:
    """Enqueue each named preset (default: all) once. Call only when creating the study:
    enqueueing from many workers at once would duplicate trials."""
    names = list(PRESETS) if names is None else names
    for name in names:
        params, skipped = split_for_space(get_preset(name), space)
        study.enqueue_trial(params, user_attrs={PRESET_ATTR: name, "preset_skipped": skipped})
    return names


def preset_values(trial: optuna.Trial, space) -> dict[str, Any]:
    """The values a preset trial sets beyond its sampled parameters ({} for other trials)."""
    name = trial.user_attrs.get(PRESET_ATTR)
    if not name:
        return {}
    return {k: v for k, v in get_preset(name).items() if k not in space.fixed and k not in space.params}
