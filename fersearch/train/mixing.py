"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on the device.

Both blend a batch with a shuffled copy of itself and mix every target tensor (class
distributions, AU targets) with the same weight, so they compose with label smoothing (the
targets are already soft) and with logit adjustment (applied inside the loss). Randomness comes
from the trial's generator, so a run (and a resumed run) repeats exactly.
"""

from __future__ import annotations

import torch


def _beta(alpha: float, generator: torch.Generator) -> float:
    # torch's Beta has no generator argument: draw a Beta from two Gammas under a forked global
    # RNG seeded from ours, leaving the global RNG (dropout's) untouched.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        a = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64))
        b = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64))
    return float(a / (a + b))


def mixup(
    x: torch.Tensor, targets: list[torch.Tensor], alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x: (B, C, H, W). Each sample becomes lam*x + (1-lam)*x[perm], lam ~ Beta(alpha, alpha)."""
    lam = _beta(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device, non_blocking=True)
    return lam * x + (1 - lam) * x[perm], [lam * t + (1 - lam) * t[perm] for t in targets]


def cutmix(
    x: torch.Tensor, targets: list[torch.Tensor], alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Paste one random box from x[perm] into every image; targets weighted by the kept area."""
    b, _, h, w = x.shape
    lam = _beta(alpha, generator)
    perm = torch.randperm(b, generator=generator).to(x.device, non_blocking=True)
    # Box of area (1 - lam) * H * W centred anywhere, clipped at the border (as in the paper).
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact area after clipping
    return out, [kept * t + (1 - kept) * t[perm] for t in targets]


def mix_batch(
    x: torch.Tensor,
    targets: list[torch.Tensor],
    generator: torch.Generator,
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float = 1.0,
    switch_prob: float = 0.5,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mix with probability ``prob``; with both alphas > 0, CutMix for ``switch_prob`` of the
    mixed batches and Mixup for the rest (timm's Mixup convention)."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return x, targets
    if float(torch.rand(1, generator=generator)) >= prob:
        return x, targets
    use_cutmix = cutmix_alpha > 0 and (
        mixup_alpha <= 0 or float(torch.rand(1, generator=generator)) < switch_prob
    )
    if use_cutmix:
        return cutmix(x, targets, cutmix_alpha, generator)
    return mixup(x, targets, mixup_alpha, generator)
