"""The curriculum: what the loss, the sampler and the LR look like at each epoch.

Seed 002's four stages ("slow and steady, accelerate, then land") over 100 epochs:

    stage           epochs   cap   sampler   tau   LR
    1 warm-up       0-15     1.5   random    0     base
    2 margin        16-40    3.0   weighted  0.5   base
    3 UAR push      41-75    10.0  weighted  1.2   base
    4 cooldown      76-100   3.0   weighted  0.8   lowered by milestones (epochs 76 and 88)

Each stage also scales the augmentation strength (``stage<s>_aug``, 1.0 in seed 002's table:
searchable, e.g. gentle in the warm-up and strongest in the UAR push).

Stage starts are fractions of the epoch budget (0.16, 0.41, 0.76): stage s begins at the first
epoch at or after start_s * epochs, which gives the table above for a budget of 100 epochs
(numbered 0-99; the table's "100" is the end of the budget) and scales it to any other budget
(6 epochs: stages 1, 2, 2, 3, 3, 4). With ``curriculum`` off the plan is one stage holding the plain settings
(``class_weight_cap``, ``logit_adjust_tau``, ``sampler``), so the loop always reads its per-epoch
values from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..config import TrialConfig


@dataclass(frozen=True)
class EpochPlan:
    epoch: int
    stage: int  # 1-based; always 1 without the curriculum
    cap: float | None  # class-weight cap; None: unweighted loss
    tau: float  # logit-adjustment strength
    sampler: str  # random | weighted | oversample
    lr_mult: float  # multiplies the schedule's LR (cooldown milestones)
    aug: float = 1.0  # multiplies the augmentation strength

    def to_dict(self) -> dict:
        return asdict(self)


def epoch_at(fraction: float, epochs: int) -> int:
    """The first epoch at or after ``fraction`` of the budget (tolerant of 0.41 * 100 = 41.000...1)."""
    return math.ceil(fraction * epochs - 1e-9)


def stage_starts(config: TrialConfig) -> list[int]:
    """First epoch of stages 2, 3 and 4."""
    return [
        epoch_at(f, config.epochs) for f in (config.stage2_start, config.stage3_start, config.stage4_start)
    ]


def cooldown_milestone_epochs(config: TrialConfig) -> list[int]:
    """Epochs where the cooldown lowers the LR by ``lr_gamma``: evenly spread over stage 4,
    the first at its start (76 and 88 for seed 002's 100 epochs)."""
    start = config.stage4_start
    n = config.cooldown_milestones
    return [epoch_at(start + i * (1.0 - start) / n, config.epochs) for i in range(n)]


def epoch_plan(config: TrialConfig) -> list[EpochPlan]:
    """One EpochPlan per epoch of the budget."""
    if not config.curriculum:
        return [
            EpochPlan(e, 1, config.class_weight_cap, config.logit_adjust_tau, config.sampler, 1.0)
            for e in range(config.epochs)
        ]
    starts = stage_starts(config)
    milestones = cooldown_milestone_epochs(config)
    caps = (config.stage1_cap, config.stage2_cap, config.stage3_cap, config.stage4_cap)
    taus = (config.stage1_tau, config.stage2_tau, config.stage3_tau, config.stage4_tau)
    samplers = (config.stage1_sampler, config.stage2_sampler, config.stage3_sampler, config.stage4_sampler)
    augs = (config.stage1_aug, config.stage2_aug, config.stage3_aug, config.stage4_aug)
    plan = []
    for e in range(config.epochs):
        s = sum(e >= b for b in starts)  # 0-based stage index
        lr_mult = config.lr_gamma ** sum(e >= m for m in milestones)
        plan.append(EpochPlan(e, s + 1, caps[s], taus[s], samplers[s], lr_mult, augs[s]))
    return plan
