"""Soft-target cross-entropy: one loss for label smoothing, mixup, or both."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) int -> (B, K) with 1 - smoothing + smoothing/K on the label, smoothing/K elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    out.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing + off)
    return out


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k target_k * log softmax(logits)_k."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
