"""Optimisers: AdamW or SGD with momentum, optionally wrapped in SAM.

SAM (Foret et al. 2021, "Sharpness-aware minimization") takes two passes per step: the gradient
at w moves the weights to w + rho * g / ||g|| (the worst point nearby), the gradient there is
applied at w by the base optimiser. ``SAM.first_step`` / ``second_step`` are driven by the loop.
"""

from __future__ import annotations

import torch

from ..config import TrialConfig
from ..models import param_groups  # per-part learning rates, no decay on norms and biases


def build_optimizer(model: torch.nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config)
    if config.optimizer == "sgd":
        base = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=False)
    else:
        base = torch.optim.AdamW(groups, lr=config.lr)
    for group in base.param_groups:
        group.setdefault("initial_lr", group["lr"])  # the schedule scales this per group
    return SAM(base, config.sam_rho) if config.sam_rho > 0 else base


class SAM(torch.optim.Optimizer):
    """Wraps a base optimiser; its state and param groups are the base's."""

    def __init__(self, base: torch.optim.Optimizer, rho: float):
        self.base = base
        self.rho = rho
        self.param_groups = base.param_groups
        self.state = base.state
        self.defaults = base.defaults
        self._perturbations: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def first_step(self) -> None:
        """w -> w + rho * g / ||g||; remember the step to undo it."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.norm(torch.stack([gr.norm(2) for gr in grads]), 2) if grads else torch.tensor(0.0)
        scale = self.rho / (norm + 1e-12)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * scale.to(p.device)
                p.add_(e)
                self._perturbations[p] = e

    @torch.no_grad()
    def second_step(self) -> None:
        """Back to w, then the base optimiser's step with the gradient taken at w + e."""
        for p, e in self._perturbations.items():
            p.sub_(e)
        self._perturbations.clear()
        self.base.step()

    def step(self, closure=None):  # noqa: D401 - the loop calls first_step/second_step
        raise RuntimeError("SAM needs two gradient passes: call first_step() and second_step()")

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict)
