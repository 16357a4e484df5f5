"""Linear and MLP classifiers over pooled tokens."""

from __future__ import annotations

from torch import nn

from ..pooling import create_pool
from .base import HeadSpec, register_head


def head_dropout(config) -> float:
    return config.dropout if config.head_dropout is None else config.head_dropout


@register_head("linear")
class LinearHead(nn.Module):
    """pool -> feature dropout -> linear."""

    def __init__(self, spec: HeadSpec):
        super().__init__()
        self.pool = create_pool(spec.pool, spec.in_dim)
        self.dropout = nn.Dropout(spec.config.dropout)
        self.fc = nn.Linear(spec.in_dim, spec.num_classes)
        self.out_features = spec.in_dim

    def forward(self, tokens, num_prefix: int = 0):
        features = self.pool(tokens, num_prefix)
        return features, self.fc(self.dropout(features))


@register_head("mlp")
class MLPHead(nn.Module):
    """pool -> feature dropout -> (linear -> GELU -> head dropout) x head_layers -> linear.

    Seed 001's 'dropout 0.6/0.4' is head_dropout 0.6 inside the MLP and dropout 0.4 on the
    pooled features."""

    def __init__(self, spec: HeadSpec):
        super().__init__()
        cfg = spec.config
        self.pool = create_pool(spec.pool, spec.in_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        layers, width = [], spec.in_dim
        for _ in range(cfg.head_layers):
            layers += [nn.Linear(width, cfg.head_hidden), nn.GELU(), nn.Dropout(head_dropout(cfg))]
            width = cfg.head_hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, spec.num_classes))
        self.out_features = spec.in_dim

    def forward(self, tokens, num_prefix: int = 0):
        features = self.pool(tokens, num_prefix)
        return features, self.mlp(self.dropout(features))
