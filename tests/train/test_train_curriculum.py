"""The curriculum's per-epoch values against seed 002's table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersearch.errors import ConfigError
from fersearch.train.curriculum import epoch_plan

from .conftest import tiny_config

# seed 002: (first epoch, last epoch, cap, sampler, tau) per stage, over 100 epochs (0-99; the
# table's "100" is the end of the budget)
SEED_002 = [
    (0, 15, 1.5, "random", 0.0),
    (16, 40, 3.0, "weighted", 0.5),
    (41, 75, 10.0, "weighted", 1.2),
    (76, 100, 3.0, "weighted", 0.8),
]


def test_default_curriculum_is_seed_002_table():
    epochs = 100
    plan = epoch_plan(tiny_config(curriculum=True, epochs=epochs))
    assert len(plan) == epochs
    for stage, (first, last, cap, sampler, tau) in enumerate(SEED_002, start=1):
        for e in range(first, min(last, epochs - 1) + 1):
            row = plan[e]
            assert (row.epoch, row.stage, row.cap, row.sampler, row.tau) == (e, stage, cap, sampler, tau)
    # LR lowered by milestones in the cooldown only: x0.1 at epoch 76, x0.01 from epoch 88
    assert {row.lr_mult for row in plan[:76]} == {1.0}
    assert plan[76].lr_mult == pytest.approx(0.1) and plan[87].lr_mult == pytest.approx(0.1)
    assert plan[88].lr_mult == pytest.approx(0.01) and plan[-1].lr_mult == pytest.approx(0.01)


def test_curriculum_scales_with_the_budget_and_takes_searched_values():
    plan = epoch_plan(
        tiny_config(
            curriculum=True,
            epochs=20,
            stage2_start=0.25,
            stage3_start=0.5,
            stage4_start=0.9,
            stage3_cap=6.0,
            stage3_tau=2.0,
            stage2_sampler="oversample",
            cooldown_milestones=1,
            lr_gamma=0.5,
        )
    )
    assert [r.stage for r in plan] == [1] * 5 + [2] * 5 + [3] * 8 + [4] * 2
    assert plan[5].sampler == "oversample" and plan[10].cap == 6.0 and plan[10].tau == 2.0
    assert [r.lr_mult for r in plan] == [1.0] * 18 + [0.5, 0.5]


def test_without_curriculum_one_stage_carries_the_plain_settings():
    plan = epoch_plan(tiny_config(epochs=3, class_weight_cap=2.0, logit_adjust_tau=0.7, sampler="weighted"))
    assert {(r.stage, r.cap, r.tau, r.sampler, r.lr_mult) for r in plan} == {(1, 2.0, 0.7, "weighted", 1.0)}


def test_stage_starts_out_of_order_are_rejected():
    with pytest.raises(ConfigError, match="stage starts must increase"):
        tiny_config(curriculum=True, stage2_start=0.5, stage3_start=0.4)


def test_the_curriculum_search_space_samples_valid_ordered_configs():
    import optuna

    from fersearch.config import DataConfig
    from fersearch.search.space import load_space, resolve_config, sample_params

    space = load_space("curriculum")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = resolve_config(space, sample_params(trial, space), DataConfig(root="."), seed=0)
        plan = epoch_plan(config)
        assert [r.stage for r in plan] == sorted(r.stage for r in plan)  # stages only move forward
        assert {r.stage for r in plan} == {1, 2, 3, 4}
        study.tell(trial, 0.0)


def test_per_stage_augmentation_strength_reaches_the_loader_and_the_device_shift():
    from fersearch.data.loader import make_train_loader

    cfg = tiny_config(
        curriculum=True, epochs=10, stage1_aug=0.5, stage3_aug=2.0, augment="basic", augment_strength=1.2
    )
    plan = epoch_plan(cfg)
    assert [r.aug for r in plan] == [0.5] * 2 + [1.0] * 3 + [2.0] * 3 + [1.0] * 2
    assert {r.aug for r in epoch_plan(tiny_config(curriculum=True, epochs=10))} == {1.0}  # seed 002

    class Split:
        images = np.zeros((8, 16, 16, 3), np.uint8)
        labels = np.arange(8) % 2
        context = None

    loader = make_train_loader(cfg, Split, 4, stage_scale=[r.aug for r in plan])
    assert [round(loader.strength_at(e), 6) for e in (0, 3, 6, 9)] == [0.6, 1.2, 2.4, 1.2]

    # the on-device path: the stage's multiplier scales max_shift (0: no shift at all)
    from fersearch.data.decode import SplitArrays
    from fersearch.train.loop import get_batch

    split = SplitArrays(
        np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), np.uint8), np.zeros(4, int), []
    )
    pre = {"mean": [0.5] * 3, "std": [0.5] * 3}
    still = tiny_config(hflip=False, max_shift=0.3)
    idx = torch.arange(4)
    for scale, moved in ((0.0, False), (1.0, True)):
        x, _, _ = get_batch(split, idx, still, pre, torch.device("cpu"), torch.Generator(), aug_scale=scale)
        plain = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255 * 2 - 1
        assert torch.allclose(x, plain, atol=1e-5) != moved
