"""The interface every backbone adapter implements."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FeatureMaps:
    maps: list[torch.Tensor]  # (B, C_i, H_i, W_i), finest first; one map unless multi_scale
    prefix: torch.Tensor | None = None  # (B, P, C_last) class tokens (ViT, CLIP), else None


def needs_text_tower(backbone: str) -> str:
    """What is wrong with a prompt head on a backbone that has no CLIP text tower."""
    return (
        f"head 'prompt' needs a CLIP text tower; backbone {backbone!r} has none. "
        f"Use an open_clip backbone (open_clip:ViT-B-16, open_clip:ViT-B-32) or another head"
    )


class Backbone(nn.Module):
    """x (B, 3, H, W) -> FeatureMaps. ``channels[i]`` is the width of ``maps[i]``."""

    channels: list[int]
    num_prefix: int = 0  # class tokens in FeatureMaps.prefix
    preprocess: dict  # mean, std, image_size

    def block_groups(self) -> list[list[nn.Parameter]]:
        """Parameters in depth order, one list per block: the unit of partial unfreezing."""
        raise NotImplementedError

    def no_weight_decay_names(self) -> set[str]:
        """Parameter names (relative to this module) the network says must not be decayed."""
        return set()
