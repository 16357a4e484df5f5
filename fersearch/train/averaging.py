"""Weight averages: an exponential moving average (EMA) and stochastic weight averaging (SWA).

Both keep a full copy of the model. EMA updates after every optimiser step (decay d:
avg = d * avg + (1 - d) * w); SWA (Izmailov et al. 2018) takes the equal-weight mean of the
weights at the end of each epoch from its start epoch, then recomputes batch-norm statistics
with a pass over training data (the averaged weights never produced the running stats they
hold). Buffers (BN running stats, counters) are copied from the live model, not averaged.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch


class WeightAverage:
    """The shared part: a frozen copy of the model and tensor state for checkpoints."""

    def __init__(self, model: torch.nn.Module):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.n_averaged = 0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], n_averaged: int) -> None:
        self.module.load_state_dict(tensors)
        self.n_averaged = n_averaged

    @torch.no_grad()
    def _copy_buffers(self, model: torch.nn.Module) -> None:
        for b_avg, b in zip(self.module.buffers(), model.buffers()):
            b_avg.copy_(b)


class EMA(WeightAverage):
    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for p_avg, p in zip(self.module.parameters(), model.parameters()):
            p_avg.lerp_(p.detach(), 1.0 - self.decay)
        self._copy_buffers(model)
        self.n_averaged += 1


class SWA(WeightAverage):
    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.n_averaged += 1
        if self.n_averaged == 1:
            for p_avg, p in zip(self.module.parameters(), model.parameters()):
                p_avg.copy_(p.detach())
        else:
            for p_avg, p in zip(self.module.parameters(), model.parameters()):
                p_avg.add_((p.detach() - p_avg) / self.n_averaged)
        self._copy_buffers(model)

    @torch.no_grad()
    def update_bn(self, batches: Iterable[torch.Tensor]) -> None:
        """Reset and recompute BN running statistics over ``batches`` of model inputs
        (cumulative average, momentum None, as torch.optim.swa_utils.update_bn does)."""
        bns = [m for m in self.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = {}
        for m in bns:
            m.reset_running_stats()
            saved[m] = m.momentum
            m.momentum = None
        self.module.train()
        for x in batches:
            self.module(x)
        for m in bns:
            m.momentum = saved[m]
        self.module.eval()
