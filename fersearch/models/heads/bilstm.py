"""Bi-LSTM over the spatial tokens (seed 003): a 7x7 map is read as a sequence of 49 tokens."""

from __future__ import annotations

import torch
from torch import nn

from .base import HeadSpec, register_head
from .classifier import head_dropout


@register_head("bilstm")
class BiLSTMHead(nn.Module):
    """tokens -> LayerNorm -> Bi-LSTM (lstm_hidden, lstm_layers) -> [last forward state ;
    last backward state] (B, 2 * lstm_hidden) -> dropout -> linear. Class tokens are skipped:
    the sequence is the spatial grid in raster order."""

    def __init__(self, spec: HeadSpec):
        super().__init__()
        cfg = spec.config
        self.norm = nn.LayerNorm(spec.in_dim)
        self.lstm = nn.LSTM(
            spec.in_dim,
            cfg.lstm_hidden,
            num_layers=cfg.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=head_dropout(cfg) if cfg.lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_features = 2 * cfg.lstm_hidden
        self.fc = nn.Linear(self.out_features, spec.num_classes)

    def forward(self, tokens, num_prefix: int = 0):
        seq = self.norm(tokens[:, num_prefix:])  # (B, N, C)
        _, (h_n, _) = self.lstm(seq)  # h_n: (layers * 2, B, hidden)
        features = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer, both directions
        return features, self.fc(self.dropout(features))
