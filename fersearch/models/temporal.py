"""Temporal pooling for clip datasets: tokens of T frames (B, T, N, C) -> (B, N, C).

A model given a 5-D input (B, T, 3, H, W) runs every frame through the backbone, then one of:
``mean`` (average over frames) or ``transformer`` (one small transformer layer attending over
the T frames at each token position, with learned frame embeddings, then the mean).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Registry
from .pooling import attention_heads

_TEMPORAL = Registry("temporal pooling")
register_temporal = _TEMPORAL.register
MAX_FRAMES = 64


def list_temporal() -> list[str]:
    return _TEMPORAL.names()


def create_temporal(name: str, dim: int) -> nn.Module:
    return _TEMPORAL.create(name, dim)


@register_temporal("mean")
class MeanOverFrames(nn.Module):
    def __init__(self, dim: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


@register_temporal("transformer")
class FrameTransformer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.frame_embed = nn.Parameter(torch.zeros(1, MAX_FRAMES, dim))
        nn.init.trunc_normal_(self.frame_embed, std=0.02)
        self.layer = nn.TransformerEncoderLayer(
            dim, attention_heads(dim), dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, c = x.shape
        if t > MAX_FRAMES:
            raise ModelError(f"temporal transformer takes at most {MAX_FRAMES} frames; got {t}")
        seq = x.permute(0, 2, 1, 3).reshape(b * n, t, c) + self.frame_embed[:, :t]  # per token
        return self.layer(seq).mean(1).view(b, n, c)
