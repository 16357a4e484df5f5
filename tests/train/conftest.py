"""Fixtures for the training tests: tiny in-memory splits and a tiny stand-in model.

The stand-in (conv + batch norm + dropout + linear, optional AU head) exercises every code path
the real timm models do (BN statistics for SWA, dropout RNG for exact resume) in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fersearch.config import build_config
from fersearch.data.decode import SplitArrays

SIZE = 16
K = 4
COUNTS = (90, 50, 25, 10)  # imbalanced on purpose


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = K, n_au: int = 0, nan_at_call: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, num_classes)
        self.au_head = nn.Linear(8, n_au) if n_au else None
        self.preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "image_size": SIZE}
        self.nan_at_call, self.train_calls = nan_at_call, 0

    def forward(self, x):
        f = torch.relu(self.bn(self.conv(x))).mean((2, 3))  # (B, 8)
        logits = self.head(self.drop(f))
        if self.training:
            self.train_calls += 1
            if self.nan_at_call is not None and self.train_calls == self.nan_at_call:
                logits = logits * float("nan")  # an injected numerical failure
        out = {"logits": logits, "features": f}
        if self.au_head is not None:
            out["au_logits"] = self.au_head(f)
        return out


def make_split(counts, seed: int, au: int = 0) -> SplitArrays:
    """Images whose mean colour depends on the class (learnable), plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)]).astype(np.int64)
    base = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [180, 180, 60]])[labels]
    images = np.clip(base[:, None, None, :] + rng.normal(0, 60, (len(labels), SIZE, SIZE, 3)), 0, 255)
    split = SplitArrays(
        images=images.astype(np.uint8), labels=labels, paths=[str(i) for i in range(len(labels))]
    )
    if au:
        split.au = (rng.random((len(labels), au)) < 0.3).astype(np.float32)
    return split


@pytest.fixture(scope="session")
def splits():
    return make_split(COUNTS, 0), make_split((20, 12, 8, 6), 1)


def tiny_config(**overrides):
    values = {
        "data": {"root": "."},
        "epochs": 4,
        "batch_size": 32,
        "warmup_epochs": 1,
        "lr": 3e-3,
        "device": "cpu",
        "seed": 3,
        **overrides,
    }
    return build_config(values)
