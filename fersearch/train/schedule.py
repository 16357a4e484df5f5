"""Learning-rate schedules as a factor of each param group's base LR.

The factor is a function of fractional training progress t = epoch + step / steps_this_epoch
(epochs can differ in length when the curriculum switches samplers), so every schedule but
ReduceLROnPlateau is stateless and resumes exactly. Plateau's state is three numbers, saved in
the checkpoint. All schedules start with a linear warm-up over ``warmup_epochs``.

* warmup_cosine: cosine from 1 to 1% over the budget.
* cosine_restarts: SGDR (Loshchilov & Hutter 2017): cycles of ``restart_period`` of the budget,
  each ``restart_mult`` times longer than the one before.
* multistep: times ``lr_gamma`` at each of ``lr_milestones`` (fractions of the budget).
* plateau: times ``lr_gamma`` after ``plateau_patience`` epochs without a validation-UAR gain.
* constant: flat after warm-up (the curriculum's cooldown milestones then do the decay).

The curriculum's per-epoch multiplier and SWA's constant LR are applied on top in ``lr_factor``.
"""

from __future__ import annotations

import math

import torch

from ..config import TrialConfig

FLOOR = 0.01  # cosine schedules end at 1% of the peak LR


class LRSchedule:
    def __init__(self, config: TrialConfig):
        self.c = config
        # ReduceLROnPlateau state (mode max, on validation UAR)
        self.plateau_best = -math.inf
        self.plateau_bad_epochs = 0
        self.plateau_scale = 1.0

    def base_factor(self, t: float) -> float:
        """Schedule factor at fractional epoch t in [0, epochs)."""
        c = self.c
        if t < c.warmup_epochs:
            return (t + 1e-3) / c.warmup_epochs if c.warmup_epochs else 1.0
        if c.schedule == "warmup_cosine":
            progress = (t - c.warmup_epochs) / max(1e-9, c.epochs - c.warmup_epochs)
            return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if c.schedule == "cosine_restarts":
            period, pos = c.restart_period * c.epochs, t - c.warmup_epochs
            while pos >= period:  # find the cycle t falls in
                pos -= period
                period *= c.restart_mult
            return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * pos / period))
        if c.schedule == "multistep":
            passed = sum(t >= m * c.epochs for m in c.lr_milestones)
            return c.lr_gamma**passed
        if c.schedule == "plateau":
            return self.plateau_scale
        return 1.0  # constant

    def lr_factor(self, t: float, curriculum_mult: float = 1.0, swa: bool = False) -> float | None:
        """The factor for the step at fractional epoch t; None during SWA with a fixed swa_lr."""
        if swa and self.c.swa_lr is not None:
            return None
        return self.base_factor(t) * curriculum_mult

    def end_epoch(self, val_uar: float) -> None:
        """ReduceLROnPlateau's bookkeeping; a no-op for the other schedules."""
        if self.c.schedule != "plateau":
            return
        if val_uar > self.plateau_best + 1e-4:
            self.plateau_best, self.plateau_bad_epochs = val_uar, 0
        else:
            self.plateau_bad_epochs += 1
            if self.plateau_bad_epochs > self.c.plateau_patience:
                self.plateau_scale *= self.c.lr_gamma
                self.plateau_bad_epochs = 0

    def state_dict(self) -> dict:
        best = self.plateau_best if math.isfinite(self.plateau_best) else None
        return {
            "plateau_best": best,
            "plateau_bad_epochs": self.plateau_bad_epochs,
            "plateau_scale": self.plateau_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        best = state["plateau_best"]
        self.plateau_best = -math.inf if best is None else float(best)
        self.plateau_bad_epochs = int(state["plateau_bad_epochs"])
        self.plateau_scale = float(state["plateau_scale"])


def set_lr(optimizer: torch.optim.Optimizer, factor: float | None, fixed_lr: float | None = None) -> None:
    """Every group's LR = its base LR ('initial_lr') * factor, or ``fixed_lr`` when factor is None."""
    for group in optimizer.param_groups:
        group["lr"] = fixed_lr if factor is None else group["initial_lr"] * factor
