"""Face/context fusion (seed 000): face tokens (B, N, C) + context tokens (B, M, C) -> (B, N, C).

The context image (body, scene) goes through the same backbone and neck as the face. ``xattn``
lets every face token ask which parts of the context matter for its expression: face = query,
context = key and value. ``concat`` is the CLIP-CAER baseline it is measured against.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Registry

_FUSIONS = Registry("fusion")
register_fusion = _FUSIONS.register


def list_fusions() -> list[str]:
    return _FUSIONS.names()


def create_fusion(name: str, dim: int, heads: int = 8, layers: int = 1) -> nn.Module:
    return _FUSIONS.create(name, dim, heads=heads, layers=layers)


@register_fusion("concat")
class ConcatFusion(nn.Module):
    """Concatenation baseline: each face token joined with the mean context token, projected
    back to C."""

    def __init__(self, dim: int, heads: int = 8, layers: int = 1):
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, face: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        ctx = context.mean(1, keepdim=True).expand(-1, face.shape[1], -1)
        return self.proj(torch.cat([face, ctx], dim=-1))


def check_heads(dim: int, heads: int) -> None:
    if dim % heads:
        valid = [h for h in (1, 2, 4, 8, 12, 16) if dim % h == 0]
        raise ModelError(f"fusion_heads {heads} does not divide the token width {dim}; valid: {valid}")


class CrossAttentionLayer(nn.Module):
    """x = norm(x + attn(q=x, k=v=ctx)); x = norm(x + mlp(x)) (post-norm, as in the seed)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        check_heads(dim, heads)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attn(x, ctx, ctx, need_weights=False)
        x = self.norm1(x + attended)
        return self.norm2(x + self.mlp(x))


@register_fusion("xattn")
class CrossAttentionFusion(nn.Module):
    def __init__(self, dim: int, heads: int = 8, layers: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(CrossAttentionLayer(dim, heads) for _ in range(layers))

    def forward(self, face: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = face
        for layer in self.layers:
            x = layer(x, context)
        return x
