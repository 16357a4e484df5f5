"""TrialConfig: the fully resolved description of one training run.

A trial's sampled parameters are merged over the search space's fixed values and the study's
data settings into one TrialConfig. It is stored as JSON on the trial and inside every
checkpoint, so any run can be repeated from it alone. Unknown keys are rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str
    format: str = "auto"
    # RAF-DB and friends ship no validation split: this fraction of train is carved off,
    # stratified and seeded, and persisted beside the data so every process uses the same one.
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    split_seed: int = 0


class TrialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    # model
    backbone: str = "resnet18"
    pretrained: bool | str = False
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = Field(256, ge=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    image_size: int | None = Field(None, ge=16, description="None: the backbone's own input size")
    # optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: int = Field(1, ge=0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(None, gt=0.0)
    # augmentation (train only): horizontal flip and a random shift of up to this many pixels
    hflip: bool = True
    max_shift: float = Field(0.1, ge=0.0, lt=0.5, description="fraction of the image side")
    # --- data loading and albumentations augmentation (fersearch.data.loader / .augment) ---
    # augment: a named CPU pipeline ("basic", "strong"); None keeps the on-device flip/shift above.
    augment: Literal["basic", "strong"] | None = None
    augment_strength: float = Field(1.0, ge=0.0, le=3.0, description="1.0 = the documented recipe")
    # Progressive augmentation: strength steps from augment_strength_start (first phase) to
    # augment_strength (last phase) over augment_phases equal phases of training.
    augment_phases: int = Field(1, ge=1)
    augment_strength_start: float | None = Field(None, ge=0.0, le=3.0, description="None: constant")
    num_workers: int = Field(0, ge=0, description="loader worker processes (0: in the trial process)")
    # --- end data loading ---
    # run
    seed: int = 0
    device: str = "auto"

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


# Keys a search space may set or sample: every TrialConfig field except the study-level data.
TUNABLE_KEYS = tuple(k for k in TrialConfig.model_fields if k != "data")


def build_config(values: dict) -> TrialConfig:
    """Validate a dict into a TrialConfig, turning pydantic's report into one readable line."""
    try:
        return TrialConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid trial configuration: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        else:
            parts.append(f"'{loc}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
