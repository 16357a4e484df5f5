"""Inference helpers shared by training, finalize and prediction: a batch as the model's input
tensor, the device to run on, and autocast. Below ``train/`` and ``ensemble/``, so prediction
never depends on the training code."""

from __future__ import annotations

import torch


def to_input(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, H, W, 3V) uint8 -> (B, 3V, H, W) float, every RGB view normalised with the backbone's
    mean and std (V = 1 for plain images; see data.views for packed clips and context)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - channel_stat(mean, x)) / channel_stat(std, x)


def channel_stat(values, x: torch.Tensor) -> torch.Tensor:
    """A per-RGB statistic as a (1, C, 1, 1) tensor for x's C = 3V channels."""
    # built on the host, copied without waiting for the device
    t = torch.as_tensor(values, dtype=x.dtype).to(x.device, non_blocking=True)
    return t.repeat(x.shape[1] // 3).view(1, -1, 1, 1)


def resolve_device(name: str) -> torch.device:
    """ "auto": the GPU when there is one, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 on CUDA is free speed; the CPU stays fp32 (CPU bf16 is slower on most machines)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
