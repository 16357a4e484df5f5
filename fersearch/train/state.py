"""TrainState: everything training changes as it goes, and therefore everything a checkpoint
holds (weights, optimiser, schedule, EMA/SWA, the augmentation generator, the history and the
best weights so far). ``to_checkpoint`` / ``restore`` are the two directions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import TrialConfig, comparable_config
from ..errors import ModelError
from ..models import FERModel
from .averaging import EMA, SWA
from .checkpoint import (
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    prefixed,
    restore_rng,
    rng_tensors,
    unprefixed,
)
from .optim import build_optimizer
from .schedule import LRSchedule


@dataclass
class FitResult:
    model: FERModel  # holds the best weights on return (best epoch, or the SWA average)
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_uar: float = float("-inf")
    best_val_probs: np.ndarray | None = None
    best_source: str = "epoch"  # "epoch" or "swa"
    swa_metrics: dict | None = None
    resumed_from_epoch: int | None = None  # epoch (0-based) the run resumed in, if it did


@dataclass
class TrainState:
    config: TrialConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: EMA | None
    swa: SWA | None
    gen: torch.Generator  # augmentation and mixing draws
    result: FitResult
    best_state: dict[str, torch.Tensor] | None = None  # the weights of the best epoch so far

    @classmethod
    def start(cls, config: TrialConfig, model: torch.nn.Module, gen: torch.Generator) -> TrainState:
        self_distill = config.self_distill_start is not None
        ema = EMA(model, config.ema_decay or 0.999) if (config.ema_decay > 0 or self_distill) else None
        swa = SWA(model) if config.swa_start is not None else None
        return cls(
            config, model, build_optimizer(model, config), LRSchedule(config), ema, swa, gen, FitResult(model)
        )

    @property
    def scored(self) -> torch.nn.Module:
        """The weights validated each epoch: the EMA's when EMA is on, else the model's."""
        return self.ema.module if (self.ema is not None and self.config.ema_decay > 0) else self.model

    def keep_best(self, uar: float, epoch: int, probs: np.ndarray, always: bool = False) -> None:
        if uar > self.result.best_uar or always:
            self.result.best_uar, self.result.best_epoch, self.result.best_val_probs = uar, epoch, probs
            self.best_state = {k: v.detach().clone() for k, v in self.scored.state_dict().items()}

    def to_checkpoint(self, epoch: int, step: int, loss_sum: float) -> tuple[dict, dict]:
        """(tensors, JSON state) to continue at ``step`` of ``epoch`` (step 0: the epoch's start)."""
        opt_tensors, opt_rest = optimizer_to_flat(self.optimizer.state_dict())
        tensors = {
            **prefixed("model", self.model.state_dict()),
            **prefixed("optim", opt_tensors),
            **rng_tensors(self.gen),
        }
        if self.ema is not None:
            tensors.update(prefixed("ema", self.ema.state_tensors()))
        if self.swa is not None:
            tensors.update(prefixed("swa", self.swa.state_tensors()))
        if self.best_state is not None:
            tensors.update(prefixed("best", self.best_state))
        r = self.result
        state = {
            "kind": "training",
            "config": self.config.to_json_dict(),
            "epoch": epoch,  # the epoch to run (next)
            "step": step,  # the step in it to run next; 0 = the epoch has not started
            "loss_sum": loss_sum,  # of the steps already run in this epoch
            "optimizer": opt_rest,
            "schedule": self.schedule.state_dict(),
            "ema_n": self.ema.n_averaged if self.ema is not None else None,
            "swa_n": self.swa.n_averaged if self.swa is not None else None,
            "history": r.history,
            "best_epoch": r.best_epoch,
            "best_uar": r.best_uar if math.isfinite(r.best_uar) else None,
            "torch_version": torch.__version__,
        }
        return tensors, state

    def restore(self, path: str | Path) -> tuple[int, int, float]:
        """Load a ``last`` or ``interrupted`` checkpoint; (epoch, step, loss_sum) to continue at."""
        tensors, state = load_checkpoint(path)
        if state.get("kind") != "training":
            raise ModelError(
                f"{str(path)!r} holds model weights only; resume needs a 'last' or 'interrupted' checkpoint"
            )
        saved, mine = comparable_config(state["config"]), comparable_config(self.config.to_json_dict())
        diff = sorted(k for k in mine if saved.get(k) != mine[k])
        if diff:
            raise ModelError(
                f"checkpoint {str(path)!r} was written by a different configuration (differs in "
                f"{', '.join(diff)}); resume it with its own config, stored in the checkpoint"
            )
        self.model.load_state_dict(unprefixed("model", tensors))
        flat = unprefixed("optim", tensors)
        self.optimizer.load_state_dict(optimizer_from_flat(flat, state["optimizer"]))
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None:
            self.ema.load_state_tensors(unprefixed("ema", tensors), state["ema_n"] or 0)
        if self.swa is not None:
            self.swa.load_state_tensors(unprefixed("swa", tensors), state["swa_n"] or 0)
        restore_rng(tensors, self.gen)
        r = self.result
        r.history = list(state["history"])
        r.best_epoch = state["best_epoch"]
        r.best_uar = state["best_uar"] if state["best_uar"] is not None else float("-inf")
        r.resumed_from_epoch = state["epoch"]
        self.best_state = unprefixed("best", tensors) or None
        return state["epoch"], state["step"], state["loss_sum"]
