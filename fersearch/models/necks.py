"""Necks: attention blocks over a feature map, and a feature pyramid over several.

Attention blocks keep the shape (B, C, H, W); ``attention: cbam+eca+se`` chains them in order
(seed 001). The pyramid fuses multi-scale maps into one map at the coarsest resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

_NECKS = Registry("attention block")
register_neck = _NECKS.register


def list_necks() -> list[str]:
    return _NECKS.names()


def create_neck(name: str, channels: int) -> nn.Module:
    return _NECKS.create(name, channels)


@register_neck("se")
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from a pooled bottleneck MLP."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


@register_neck("eca")
class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al. 2020): a 1-D conv across channels instead of SE's MLP; kernel from C."""

    def __init__(self, channels: int, gamma: int = 2, b: int = 1):
        super().__init__()
        k = int(abs((math.log2(channels) + b) / gamma))
        k = k if k % 2 else k + 1
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        y = x.mean((2, 3))[:, None, :]  # (B, 1, C)
        return x * torch.sigmoid(self.conv(y))[:, 0, :, None, None]


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x):
        gate = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        return x * torch.sigmoid(gate)[:, :, None, None]


class _SpatialGate(nn.Module):
    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return x * torch.sigmoid(self.conv(stats))


@register_neck("cbam")
class CBAM(nn.Module):
    """CBAM (Woo et al. 2018): a channel gate (avg + max pooled MLP), then a 7x7 spatial gate."""

    def __init__(self, channels: int):
        super().__init__()
        self.channel = _ChannelGate(channels)
        self.spatial = _SpatialGate()

    def forward(self, x):
        return self.spatial(self.channel(x))


@register_neck("dual")
class DualAttention(nn.Module):
    """Dual attention (DANet, Fu et al. 2019; seed 003): position self-attention over the H*W
    positions plus channel self-attention over the C channels, summed. Both residual branches
    start at zero (learned gammas), so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        qk = max(1, channels // 8)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma_pos = nn.Parameter(torch.zeros(1))
        self.gamma_chn = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, c')
        k = self.key(x).flatten(2)  # (B, c', HW)
        attn = torch.softmax(q @ k / math.sqrt(k.shape[1]), dim=-1)  # (B, HW, HW)
        pos = (self.value(x).flatten(2) @ attn.transpose(1, 2)).view(b, c, h, w)
        f = x.flatten(2)  # (B, C, HW)
        energy = f @ f.transpose(1, 2) / math.sqrt(h * w)  # (B, C, C)
        chn = (torch.softmax(energy, dim=-1) @ f).view(b, c, h, w)
        return x + self.gamma_pos * pos + self.gamma_chn * chn


class FeaturePyramid(nn.Module):
    """FPN (Lin et al. 2017) top-down pathway, then every level pooled to the coarsest grid and
    summed: fine detail (eyes, mouth corners) reaches the map the head reads."""

    def __init__(self, in_channels: list[int], dim: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in in_channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(m) for conv, m in zip(self.lateral, maps)]  # finest first
        for i in range(len(lat) - 2, -1, -1):  # top-down: coarse semantics into finer levels
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        out = [conv(m) for conv, m in zip(self.smooth, lat)]
        size = out[-1].shape[-2:]
        return sum(F.adaptive_avg_pool2d(m, size) for m in out)


class Neck(nn.Module):
    """maps -> one map: the pyramid (if fpn) or the deepest map, then the attention chain."""

    def __init__(self, channels: list[int], attention: str = "none", fpn: bool = False, fpn_dim: int = 256):
        super().__init__()
        self.fpn = FeaturePyramid(channels, fpn_dim) if fpn else None
        self.out_channels = fpn_dim if fpn else channels[-1]
        names = [] if attention in ("", "none") else attention.split("+")
        self.attention = nn.Sequential(*(create_neck(n, self.out_channels) for n in names))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.fpn(maps) if self.fpn is not None else maps[-1]
        return self.attention(x)
