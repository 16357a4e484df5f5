"""TrialConfig: the fully resolved description of one training run.

A trial's sampled parameters are merged over the search space's fixed values and the study's
data settings into one TrialConfig. It is stored as JSON on the trial and inside every
checkpoint, so any run can be repeated from it alone. Unknown keys are rejected.
"""

from __future__ import annotations

import re
import reprlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

# The attention blocks of fersearch.models.necks (a test keeps the two lists equal).
ATTENTION_BLOCKS = ("cbam", "dual", "eca", "se")


# Bounds on sizes and counts: beyond them a run cannot work (a 200,000 px image, 1e30 epochs),
# so a search space or a study asking for them is refused at load instead of crashing every
# worker. Seeds must suit numpy's and torch's generators. No number may be NaN or infinite.
MAX_SEED = 2**32 - 1
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataConfig(BaseModel):
    model_config = STRICT

    root: str
    format: str = "auto"
    # RAF-DB and friends ship no validation split: this fraction of train is carved off,
    # stratified and seeded, and persisted beside the data so every process uses the same one.
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    split_seed: int = Field(0, ge=0, le=MAX_SEED)
    # k-fold: with folds set, validation is fold ``fold`` of a stratified k-fold over train (+ the
    # dataset's own val); test is untouched. One study searches one fold.
    folds: int | None = Field(None, ge=2, le=20)
    fold: int = Field(0, ge=0)
    # face: crop to the reader's face box where it has one (AffectNet, RAF-DB originals, clips);
    # full: the whole image, never cropped.
    crop: Literal["face", "full"] = "face"
    # clip datasets (RAER layout): frames sampled per clip; 1 = one frame per clip
    frames: int = Field(1, ge=1, le=64)

    @model_validator(mode="after")
    def _fold_in_range(self):
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1} for folds={self.folds}, got {self.fold}")
        return self


# A trial's settings come in groups, one class each; TrialConfig joins them, so the keys a user
# writes in a search space stay flat (`lr: ...`, not `optimisation: {lr: ...}`).


class ModelFields(BaseModel):
    """The model (fersearch/models): backbone -> neck -> [fusion] -> [temporal] -> head [+ AU head]
    [+ VA head]."""

    model_config = STRICT

    # any timm name ("convnext_tiny", "convnext_tiny.fb_in22k") or "open_clip:<model>" (open_clip:ViT-B-16)
    backbone: str = "resnet18"
    # false | true (the default tag) | "<tag>" | "<path>" (a weights file, or a folder or Hugging
    # Face cache holding it)
    pretrained: bool | str = False
    image_size: int | None = Field(
        None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE, description="None: the backbone's own input size"
    )
    freeze_backbone: bool = False
    unfreeze_last: int = Field(0, ge=0, le=10000)  # with freeze_backbone: unlock the last N blocks
    # neck: attention blocks over the final map, chained in order: none | se | eca | cbam | dual | cbam+eca+se
    attention: str = "none"
    fpn: bool = False  # feature pyramid over the last three stages (timm backbones)
    fpn_dim: int = Field(256, ge=8, le=8192)
    pool: Literal["avg", "max", "gem", "attn", "cls"] | None = None  # None: cls if a class token, else avg
    # fusion of face and context features; call model(x, context=c)
    fusion: Literal["none", "concat", "xattn"] = "none"
    fusion_heads: int = Field(8, ge=1, le=64)
    fusion_layers: int = Field(1, ge=1, le=6)
    temporal: Literal["mean", "transformer"] = "mean"  # for (B, T, 3, H, W) clip inputs
    # head
    head: Literal["linear", "mlp", "bilstm", "prompt"] = "linear"  # prompt: open_clip backbones only
    head_hidden: int = Field(256, ge=8, le=16384)  # mlp width
    head_layers: int = Field(1, ge=1, le=4)  # mlp hidden layers
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the pooled features, before the classifier
    # inside the mlp / between LSTM layers; None: same as dropout
    head_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    lstm_hidden: int = Field(256, ge=8, le=8192)  # bilstm head: hidden size per direction
    lstm_layers: int = Field(1, ge=1, le=4)
    prompt_ctx: int = Field(4, ge=1, le=32)  # prompt head: learned context vectors
    prompt_class_specific: bool = False  # one context per class instead of one shared
    au_classes: int = Field(0, ge=0, le=1000)  # > 0 adds the multi-task action-unit head
    # adds the valence/arousal regression head (2 outputs in [-1, 1]); the data must carry VA
    va_head: bool = False

    @field_validator("attention")
    @classmethod
    def _attention_chain(cls, value: str) -> str:
        if value in ("", "none"):
            return "none"
        bad = [part for part in value.split("+") if part not in ATTENTION_BLOCKS]
        if bad:
            raise ValueError(
                f"unknown attention block {bad[0]!r}; valid: {', '.join(ATTENTION_BLOCKS)} "
                f"or a '+' chain such as cbam+eca+se"
            )
        return value


class OptimisationFields(BaseModel):
    """How the model is trained (fersearch/train): optimiser, schedule, loss, class balance,
    weight averaging and distillation. Epoch positions (SWA, self-distillation, milestones, the
    restart period) are fractions of the epoch budget, so one recipe scales from a 4-epoch CPU
    trial to 100 epochs."""

    model_config = STRICT

    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(64, ge=1, le=8192)
    # optimiser: AdamW or SGD with momentum; sam_rho > 0 wraps either in SAM (Foret et al. 2021)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    lr_backbone: float | None = Field(None, gt=0.0)  # None: lr (see fersearch.models.param_groups)
    lr_prompt: float | None = Field(None, gt=0.0)  # None: lr
    weight_decay: float = Field(0.05, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    sam_rho: float = Field(0.0, ge=0.0, description="0: plain optimizer; >0: SAM neighbourhood size")
    grad_clip: float | None = Field(None, gt=0.0)
    # learning-rate schedule, applied per step after the linear warm-up (plateau: per epoch)
    warmup_epochs: int = Field(1, ge=0, le=10000)
    schedule: Literal["warmup_cosine", "cosine_restarts", "multistep", "plateau", "constant"] = (
        "warmup_cosine"
    )
    restart_period: float = Field(0.25, gt=0.0, le=1.0, description="cosine_restarts: first cycle")
    restart_mult: int = Field(1, ge=1, le=100, description="cosine_restarts: each cycle this much longer")
    lr_milestones: tuple[float, ...] = Field((0.5, 0.75), description="multistep: fractions")
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0, description="multistep/plateau/cooldown factor")
    plateau_patience: int = Field(5, ge=0, le=10000, description="plateau: epochs without a val UAR gain")
    # loss: soft-target CE (label smoothing, mixup and cutmix all give soft targets) or focal
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = Field(2.0, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    au_loss_weight: float = Field(0.3, ge=0.0)  # weight of the AU loss against the expression loss
    va_loss_weight: float = Field(0.3, ge=0.0)  # weight of the VA loss (1 - CCC) against it
    # class balancing when the curriculum is off (with it on, the curriculum's stages rule)
    class_weight_cap: float | None = Field(None, gt=0.0, description="None: unweighted loss")
    logit_adjust_tau: float = Field(0.0, ge=0.0, description="adds tau*log(prior) to the logits")
    sampler: Literal["random", "weighted", "oversample"] = "random"
    oversample_per_class: int | None = Field(None, ge=1, le=10**7, description="None: the largest class")
    # weight averaging and distillation
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="0: off; else validate the EMA")
    swa_start: float | None = Field(None, ge=0.0, lt=1.0, description="None: no SWA")
    swa_lr: float | None = Field(None, gt=0.0, description="None: keep the schedule's LR")
    self_distill_start: float | None = Field(None, ge=0.0, lt=1.0, description="EMA teacher")
    teacher: str | None = Field(None, description="exported ensemble dir or a trial's best.json")
    distill_alpha: float = Field(0.5, ge=0.0, le=1.0)
    distill_temperature: float = Field(4.0, gt=0.0)


class AugmentationFields(BaseModel):
    """Augmentation of the training split (fersearch/data/augment, fersearch/train/augment)."""

    model_config = STRICT

    # on the device when augment is None: a horizontal flip and a random shift
    hflip: bool = True
    max_shift: float = Field(0.1, ge=0.0, lt=0.5, description="fraction of the image side")
    # augment: a named pipeline ("basic", "strong"); None keeps the on-device flip/shift above.
    augment: Literal["basic", "strong"] | None = None
    augment_strength: float = Field(1.0, ge=0.0, le=3.0, description="1.0 = the documented recipe")
    # Progressive augmentation: strength steps from augment_strength_start (first phase) to
    # augment_strength (last phase) over augment_phases equal phases of training.
    augment_phases: int = Field(1, ge=1, le=10000)
    augment_strength_start: float | None = Field(None, ge=0.0, le=3.0, description="None: constant")
    # where the basic pipeline runs: cpu (albumentations, per image, in the loader) or device
    # (the same recipe batched in torch on the training device: flip, affine, colour jitter)
    augment_on: Literal["cpu", "device"] = "cpu"
    # mixing on the device: a batch is mixed with probability mix_prob; with both alphas > 0,
    # cutmix_switch_prob of the mixed batches use CutMix, the others Mixup
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    mix_prob: float = Field(1.0, ge=0.0, le=1.0)
    cutmix_switch_prob: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _device_augment_is_basic(self):
        if self.augment_on == "device" and self.augment != "basic":
            raise ValueError(
                f"augment_on: device runs the basic pipeline only (got augment {self.augment!r}); "
                f"use augment: basic, or augment_on: cpu for {self.augment!r}"
            )
        return self


class CurriculumFields(BaseModel):
    """The curriculum (seed 002, fersearch/train/curriculum): four stages, each with a
    class-weight cap, a sampler, a logit-adjustment tau and an augmentation multiplier; LR
    milestones in the cooldown. The defaults are seed 002's table: epochs 0-15 / 16-40 / 41-75 /
    76-100 of 100, caps 1.5/3/10/3, tau 0/0.5/1.2/0.8."""

    model_config = STRICT

    curriculum: bool = False
    stage2_start: float = Field(0.16, gt=0.0, lt=1.0)
    stage3_start: float = Field(0.41, gt=0.0, lt=1.0)
    stage4_start: float = Field(0.76, gt=0.0, lt=1.0)
    stage1_cap: float = Field(1.5, gt=0.0)
    stage2_cap: float = Field(3.0, gt=0.0)
    stage3_cap: float = Field(10.0, gt=0.0)
    stage4_cap: float = Field(3.0, gt=0.0)
    stage1_tau: float = Field(0.0, ge=0.0)
    stage2_tau: float = Field(0.5, ge=0.0)
    stage3_tau: float = Field(1.2, ge=0.0)
    stage4_tau: float = Field(0.8, ge=0.0)
    stage1_sampler: Literal["random", "weighted", "oversample"] = "random"
    stage2_sampler: Literal["random", "weighted", "oversample"] = "weighted"
    stage3_sampler: Literal["random", "weighted", "oversample"] = "weighted"
    stage4_sampler: Literal["random", "weighted", "oversample"] = "weighted"
    cooldown_milestones: int = Field(2, ge=0, le=100, description="LR drops spread over stage 4")
    # Augmentation strength per stage, as a multiplier of the augmentation's own strength (the
    # albumentations pipeline's, or max_shift on the device). Seed 002 keeps it constant: 1.0.
    stage1_aug: float = Field(1.0, ge=0.0, le=3.0)
    stage2_aug: float = Field(1.0, ge=0.0, le=3.0)
    stage3_aug: float = Field(1.0, ge=0.0, le=3.0)
    stage4_aug: float = Field(1.0, ge=0.0, le=3.0)

    @model_validator(mode="after")
    def _stages_in_order(self):
        if not self.stage2_start < self.stage3_start < self.stage4_start:
            raise ValueError(
                f"stage starts must increase: stage2_start {self.stage2_start} < stage3_start "
                f"{self.stage3_start} < stage4_start {self.stage4_start}"
            )
        return self


class RunFields(BaseModel):
    """The run: its seed, and where and how it executes (fersearch/data/loader, runtime.py)."""

    model_config = STRICT

    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = "auto"
    num_workers: int = Field(0, ge=0, le=256, description="loader worker processes (0: in the trial process)")
    # with num_workers 0: batches a background thread builds ahead of the training step (0: none)
    prefetch: int = Field(2, ge=0, le=64, description="batches built ahead by the loader's thread")


# The groups in the order a reader meets them; TrialConfig's fields follow it.
FIELD_GROUPS: dict[str, type[BaseModel]] = {
    "model": ModelFields,
    "optimisation": OptimisationFields,
    "augmentation": AugmentationFields,
    "curriculum": CurriculumFields,
    "run": RunFields,
}


class TrialConfig(RunFields, CurriculumFields, AugmentationFields, OptimisationFields, ModelFields):
    """One training run: the study's data settings and every group's fields, flat."""

    model_config = STRICT

    data: DataConfig

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


# Keys a search space may set or sample: every TrialConfig field except the study-level data.
TUNABLE_KEYS = tuple(k for k in TrialConfig.model_fields if k != "data")


# Fields that change where and how a run executes, not what it computes (its batches do not
# depend on the loader's workers or thread: tests/test_data_fast_basic.py, test_data_loader.py):
# a resumed run may change them, and two trials that differ only in them train the same model.
RUNTIME_KEYS = ("device", "num_workers", "prefetch")


def comparable_config(values: dict) -> dict:
    """A stored config as it compares with another: validated, so a field added since it was
    written takes its default (the behaviour it was written with); without a field removed since
    (nothing here reads it any more), the runtime-only fields and the data location."""
    known = {k: v for k, v in values.items() if k in TrialConfig.model_fields}
    full = build_config(known).to_json_dict()
    return {k: v for k, v in full.items() if k not in RUNTIME_KEYS and k != "data"}


def build_config(values: dict) -> TrialConfig:
    """Validate a dict into a TrialConfig, turning pydantic's report into one readable line."""
    try:
        return TrialConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid trial configuration: {describe_validation_error(exc)}") from None


# Location parts pydantic adds for the branches of a union ("bool", "str", "literal[...]", the tag
# of a tagged union...): dropped, so `pretrained: [1]` is one problem of 'pretrained', not two.
_BRANCH = re.compile(
    r"(bool|str|int|float|none|bytes|categorical|(list|tuple|dict|set|literal|function-\w+)\[.*\])"
)
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 6
_SHORT.maxlevel = 3


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """pydantic's report as one short line: one entry per wrong key (the branches of a union
    merged into one), the value shown abbreviated, at most ``limit`` keys."""
    groups: dict[str, list[dict]] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        shown = ".".join(p for i, p in enumerate(loc) if i == 0 or not _BRANCH.fullmatch(p)) or "(root)"
        groups.setdefault(shown, []).append(err)
    parts = [_describe_key(loc, errs) for loc, errs in groups.items()]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def _describe_key(loc: str, errs: list[dict]) -> str:
    err = errs[0]
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"'{loc}': required, missing"
    ctx = err.get("ctx") or {}
    if err["type"] == "union_tag_invalid":  # a tagged union: {type: flot}
        key = ctx["discriminator"].strip("'")
        return f"'{loc}.{key}': got {ctx['tag']!r}; valid: {ctx['expected_tags']}"
    if err["type"] == "union_tag_not_found":
        return f"'{loc}': needs a {ctx['discriminator']} key (got {_SHORT.repr(err.get('input'))})"
    if err["type"] == "value_error":  # our own validators: the message names the value
        where = "" if loc == "(root)" else f"'{loc}': "
        return where + "; ".join(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errs))
    msgs = list(dict.fromkeys(e["msg"] for e in errs))
    if len(msgs) > 1:
        msgs = ["Input should be " + " or ".join(m.removeprefix("Input should be ") for m in msgs)]
    return f"'{loc}': {msgs[0]} (got {_SHORT.repr(err.get('input'))})"
