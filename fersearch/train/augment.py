"""Batch augmentation and normalisation on whatever device the batch lives on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_input(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, H, W, 3V) uint8 -> (B, 3V, H, W) float, every RGB view normalised with the backbone's
    mean and std (V = 1 for plain images; see data.views for packed clips and context)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - channel_stat(mean, x)) / channel_stat(std, x)


def channel_stat(values, x: torch.Tensor) -> torch.Tensor:
    """A per-RGB statistic as a (1, C, 1, 1) tensor for x's C = 3V channels."""
    t = torch.as_tensor(values, device=x.device, dtype=x.dtype)
    return t.repeat(x.shape[1] // 3).view(1, -1, 1, 1)


def flip_and_shift(
    x: torch.Tensor, hflip: bool, max_shift: float, generator: torch.Generator
) -> torch.Tensor:
    """Random horizontal flip and translation of up to ``max_shift`` of the side, per sample.

    One affine_grid + grid_sample call handles the whole batch (border padding, so no black
    bars a model could key on).
    """
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3)
    sign = torch.ones(b)
    if hflip:
        sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, 0, 0] = sign
    theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] coordinates: a shift of s * side is 2 * s.
    theta[:, :, 2] = (torch.rand(b, 2, generator=generator) * 2 - 1) * 2 * max_shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
