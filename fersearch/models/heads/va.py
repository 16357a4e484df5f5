"""Multi-task valence/arousal head (issue #19, seed 001's next step): two regression outputs."""

from __future__ import annotations

import torch
from torch import nn


class VAHead(nn.Module):
    """features (B, D) -> linear -> GELU -> dropout -> linear -> tanh -> va (B, 2).

    Column 0 is valence, column 1 arousal, both in [-1, 1] like AffectNet's labels (tanh keeps
    the outputs in the labels' range). The training loop adds ``config.va_loss_weight *
    va_ccc_loss(...)`` (fersearch/train/losses.py) to the expression loss."""

    def __init__(self, in_dim: int, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(features).float())  # float: bf16 autocast would round the target range
