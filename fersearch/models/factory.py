"""create_model(config, num_classes): a timm backbone with a linear or MLP head.

The model owns its preprocessing: mean, std and default input size come from the backbone's
pretrained config (timm's ``resolve_data_config``), never typed in by hand.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from ..config import TrialConfig
from ..errors import ModelError


@lru_cache(maxsize=1)
def list_backbones() -> tuple[str, ...]:
    return tuple(timm.list_models())


def validate_backbone(name: str) -> None:
    if name in list_backbones():
        return
    close = difflib.get_close_matches(name, list_backbones(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown backbone {name!r}{hint} Any timm model name works "
        f"(`python -c \"import timm; print(timm.list_models('convnext*'))\"` lists them)"
    )


def preprocess_for(config: TrialConfig) -> dict:
    """Mean, std and input size from the backbone's pretrained config; image_size overrides
    the size (small sizes make CPU runs fast)."""
    validate_backbone(config.backbone)
    pretrained_cfg = get_pretrained_cfg(config.backbone)
    data_cfg = timm.data.resolve_data_config(
        {}, pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {}
    )
    return {
        "mean": [float(v) for v in data_cfg["mean"]],
        "std": [float(v) for v in data_cfg["std"]],
        "image_size": config.image_size or int(data_cfg["input_size"][-1]),
    }


class FERModel(nn.Module):
    """backbone (pooled features) -> dropout -> head. forward returns {'logits', 'features'}."""

    def __init__(self, config: TrialConfig, num_classes: int):
        super().__init__()
        validate_backbone(config.backbone)
        try:
            self.backbone = timm.create_model(
                config.backbone, pretrained=bool(config.pretrained), num_classes=0
            )
        except Exception as exc:  # timm raises many types; offline hub failures among them
            raise ModelError(
                f"cannot create backbone {config.backbone!r} (pretrained={config.pretrained!r}): "
                f"{exc}. Pretrained weights are never downloaded at run time here: set "
                f"pretrained: false or provide the weights locally"
            ) from None
        width = self.backbone.num_features
        self.dropout = nn.Dropout(config.dropout)
        if config.head == "mlp":
            self.head = nn.Sequential(
                nn.Linear(width, config.head_hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.head_hidden, num_classes),
            )
        else:
            self.head = nn.Linear(width, num_classes)
        self.preprocess = preprocess_for(config)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)  # (B, num_features), pooled by timm
        return {"logits": self.head(self.dropout(features)), "features": features}


def create_model(config: TrialConfig, num_classes: int) -> FERModel:
    return FERModel(config, num_classes)
