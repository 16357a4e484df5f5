"""Pooling: tokens (B, P + N, C) -> (B, C), where the first P are class tokens (0 for CNNs)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..registry import Registry

_POOLS = Registry("pool")
register_pool = _POOLS.register


def list_pools() -> list[str]:
    return _POOLS.names()


def create_pool(name: str, dim: int) -> nn.Module:
    return _POOLS.create(name, dim)


def attention_heads(dim: int, wanted: int = 8) -> int:
    """The largest head count <= wanted that divides dim."""
    return next(h for h in range(min(wanted, dim), 0, -1) if dim % h == 0)


@register_pool("avg")
class AvgPool(nn.Module):
    def __init__(self, dim: int):
        super().__init__()

    def forward(self, tokens, num_prefix: int = 0):
        return tokens[:, num_prefix:].mean(1)


@register_pool("max")
class MaxPool(nn.Module):
    def __init__(self, dim: int):
        super().__init__()

    def forward(self, tokens, num_prefix: int = 0):
        return tokens[:, num_prefix:].amax(1)


@register_pool("gem")
class GeMPool(nn.Module):
    """Generalised mean (Radenovic et al.) with a learnable exponent p: 1 = average, large = max."""

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, tokens, num_prefix: int = 0):
        x = tokens[:, num_prefix:].clamp(min=self.eps).pow(self.p)
        return x.mean(1).pow(1.0 / self.p)


@register_pool("attn")
class AttentionPool(nn.Module):
    """A learned query attends over all tokens (seed 001's learnable pooling)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, attention_heads(dim), batch_first=True)

    def forward(self, tokens, num_prefix: int = 0):
        kv = self.norm(tokens)
        out, _ = self.attn(self.query.expand(tokens.shape[0], -1, -1), kv, kv, need_weights=False)
        return out[:, 0]


@register_pool("cls")
class ClassTokenPool(nn.Module):
    """The first class token: for CLIP exactly its image embedding."""

    def __init__(self, dim: int):
        super().__init__()

    def forward(self, tokens, num_prefix: int = 0):
        if num_prefix < 1:
            raise ModelError("pool 'cls' needs a backbone with a class token (ViT, open_clip); use avg")
        return tokens[:, 0]
