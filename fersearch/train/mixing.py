"""Mixup (Zhang et al., 2018) on the device, on inputs and soft targets together."""

from __future__ import annotations

import torch


def mixup(
    x: torch.Tensor, target: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with a shuffled partner by lam ~ Beta(alpha, alpha). alpha=0: no-op."""
    if alpha <= 0:
        return x, target
    beta = torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha]))
    # Sample with the trial's generator so runs repeat: Beta has no generator argument, so draw
    # from it under a temporarily forked global RNG seeded from ours.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lam = float(beta.sample())
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]
