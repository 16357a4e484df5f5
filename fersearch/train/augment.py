"""Batch augmentation on whatever device the batch lives on (normalisation: fersearch.runtime)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import BASIC
from ..runtime import channel_stat


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
    grid = F.affine_grid(theta.to(x.device, x.dtype, non_blocking=True), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# RGB -> YIQ and back: a hue shift is a rotation of the (I, Q) chroma plane.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_GRAY = torch.tensor([0.299, 0.587, 0.114])


def basic_on_device(
    images: torch.Tensor, mean, std, strength: float, generator: torch.Generator
) -> torch.Tensor:
    """The ``basic`` recipe (data/augment.BASIC) batched on the images' device: horizontal flip,
    affine (shift, scale, rotation) and colour jitter (brightness, contrast, saturation, hue),
    every magnitude times ``strength``. (B, H, W, 3V) uint8 -> (B, 3V, H, W) normalised; the V
    views of a packed clip/context sample share one draw. Random numbers come from ``generator`` (CPU), so a
    resumed run repeats exactly."""
    b, v = images.shape[0], images.shape[-1] // 3
    s = float(strength)
    u = torch.rand(b, 10, generator=generator)  # every draw of the batch at once
    x = images.permute(0, 3, 1, 2).float().div_(255.0).unflatten(1, (v, 3))  # (B, V, 3, H, W)

    r = BASIC
    jitter = (u[:, 0] < min(1.0, r.jitter_p * s)).float()

    def factor(col: int, amount: float) -> torch.Tensor:  # 1 +- amount*s where jitter applies
        f = 1 + (u[:, col] * 2 - 1) * amount * s * jitter
        return f.to(x.device, non_blocking=True).view(b, 1, 1, 1, 1)

    gray = _GRAY.to(x.device, non_blocking=True).view(1, 1, 3, 1, 1)
    x = x * factor(1, r.brightness)
    mean_gray = (x * gray).sum(2, keepdim=True).mean((3, 4), keepdim=True)
    x = (x - mean_gray) * factor(2, r.contrast) + mean_gray
    g = (x * gray).sum(2, keepdim=True)
    x = (x - g) * factor(3, r.saturation) + g
    angle = (u[:, 4] * 2 - 1) * min(0.5, r.hue * s) * 2 * torch.pi * jitter  # hue
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(b, 3, 3)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
    hue = (torch.linalg.inv(_YIQ) @ rot @ _YIQ).to(x.device, non_blocking=True)  # (B, 3, 3)
    x = torch.einsum("bij,bvjhw->bvihw", hue, x).clamp_(0, 1)

    x = (x - channel_stat(mean, x[:, 0]).unsqueeze(1)) / channel_stat(std, x[:, 0]).unsqueeze(1)
    x = x.flatten(1, 2)  # (B, 3V, H, W)

    warp = (u[:, 5] < min(1.0, r.affine_p * s)).float()
    rad = (u[:, 6] * 2 - 1) * torch.deg2rad(torch.tensor(r.rotate_deg * s)) * warp
    zoom = 1 + (u[:, 7] * 2 - 1) * r.scale * s * warp
    sign = torch.where(torch.rand(b, generator=generator) < r.flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    # output -> input sampling: rotate by -angle, shrink by zoom, mirror x for the flip
    theta[:, 0, 0], theta[:, 0, 1] = sign * torch.cos(rad) / zoom, sign * torch.sin(rad) / zoom
    theta[:, 1, 0], theta[:, 1, 1] = -torch.sin(rad) / zoom, torch.cos(rad) / zoom
    theta[:, 0, 2] = (u[:, 8] * 2 - 1) * r.shift * s * 2 * warp  # [-1, 1] coordinates: a side is 2
    theta[:, 1, 2] = (u[:, 9] * 2 - 1) * r.shift * s * 2 * warp
    grid = F.affine_grid(theta.to(x.device, x.dtype, non_blocking=True), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
