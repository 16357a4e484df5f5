"""Multi-task action-unit head (seed 004): multi-label AU logits from the head's features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AUHead(nn.Module):
    """features (B, D) -> linear -> GELU -> dropout -> linear -> au_logits (B, A).

    Outputs are logits; sigmoid gives per-AU probabilities (``au_loss`` applies it inside
    BCE-with-logits, which is numerically stable under bf16 autocast)."""

    def __init__(self, in_dim: int, num_aus: int, hidden: int = 512, dropout: float = 0.3):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_aus)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


def au_loss(
    au_logits: torch.Tensor, au_targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy over AUs. ``mask`` (B,) or (B, A) marks labelled entries, so
    images without AU annotation add nothing. The training loop adds
    ``config.au_loss_weight * au_loss(...)`` to the expression loss."""
    loss = F.binary_cross_entropy_with_logits(au_logits.float(), au_targets.float(), reduction="none")
    if mask is None:
        return loss.mean()
    mask = mask.float()
    if mask.ndim == 1:
        mask = mask[:, None].expand_as(loss)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)
