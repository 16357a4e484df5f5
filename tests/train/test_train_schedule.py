"""Learning-rate schedules as factors of the base LR."""

from __future__ import annotations

import pytest

from fersearch.train.schedule import FLOOR, LRSchedule

from .conftest import tiny_config


def test_warmup_then_cosine():
    s = LRSchedule(tiny_config(epochs=10, warmup_epochs=2))
    assert s.base_factor(0.0) < 0.01 and s.base_factor(1.0) == pytest.approx(0.5, abs=1e-3)
    assert s.base_factor(2.0) == pytest.approx(1.0)
    assert s.base_factor(6.0) == pytest.approx(FLOOR + (1 - FLOOR) * 0.5, rel=1e-6)


def test_cosine_warm_restarts_restart():
    s = LRSchedule(
        tiny_config(
            epochs=12, warmup_epochs=0, schedule="cosine_restarts", restart_period=0.25, restart_mult=2
        )
    )
    # cycles of 3, 6 epochs: restarts (factor back to 1) at t = 3 and t = 9
    assert s.base_factor(0.0) == pytest.approx(1.0)
    assert s.base_factor(2.99) < 0.05
    assert s.base_factor(3.0) == pytest.approx(1.0)
    assert s.base_factor(6.0) == pytest.approx(FLOOR + (1 - FLOOR) * 0.5)
    assert s.base_factor(9.0) == pytest.approx(1.0)


def test_multistep_and_constant():
    s = LRSchedule(
        tiny_config(epochs=20, warmup_epochs=0, schedule="multistep", lr_milestones=(0.5, 0.75), lr_gamma=0.1)
    )
    assert [s.base_factor(t) for t in (0, 9.9, 10, 15)] == pytest.approx([1, 1, 0.1, 0.01])
    c = LRSchedule(tiny_config(epochs=20, warmup_epochs=0, schedule="constant"))
    assert c.lr_factor(19.0, curriculum_mult=0.1) == pytest.approx(0.1)


def test_plateau_on_val_uar_and_state_round_trip():
    s = LRSchedule(tiny_config(schedule="plateau", plateau_patience=1, lr_gamma=0.5, warmup_epochs=0))
    for uar in (0.3, 0.4, 0.4, 0.39):  # two epochs without a gain > patience 1 -> halve
        s.end_epoch(uar)
    assert s.base_factor(5.0) == 0.5
    t = LRSchedule(tiny_config(schedule="plateau", plateau_patience=1, lr_gamma=0.5, warmup_epochs=0))
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    # SWA with a fixed LR overrides the schedule
    swa = LRSchedule(tiny_config(swa_lr=0.01))
    assert swa.lr_factor(3.0, swa=True) is None and swa.lr_factor(3.0, swa=False) is not None
