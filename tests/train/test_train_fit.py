"""fit() with the recipe's optional parts: AU multi-task loss, distillation, SWA, best.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fersearch.train import fit
from fersearch.train.checkpoint import load_checkpoint, save_model_checkpoint
from fersearch.train.distill import Teacher

from .conftest import K, TinyNet, make_split, tiny_config


def test_au_loss_is_added_with_its_weight_when_data_and_model_both_have_aus(splits):
    """With a learning rate too small to move the weights, an epoch's loss is the expression
    loss plus au_loss_weight times the AU loss: linear in the weight, default 0.3."""
    _, val = splits
    train = make_split((40, 30, 20, 10), 2, au=5)

    def epoch_loss(n_au=5, **values) -> float:
        torch.manual_seed(0)  # the same initial weights every time
        config = tiny_config(epochs=1, warmup_epochs=0, lr=1e-12, weight_decay=0.0, mixup_alpha=0.4, **values)
        return fit(config, train, val, K, model=TinyNet(n_au=n_au)).history[0]["train_loss"]

    none, full, default = epoch_loss(au_loss_weight=0.0), epoch_loss(au_loss_weight=1.0), epoch_loss()
    assert full - none > 0.3  # BCE over 5 AUs from an untrained head is about 0.69
    assert default == pytest.approx(none + 0.3 * (full - none), abs=1e-5)
    # a model without an AU head adds no AU term, whatever the weight
    assert epoch_loss(n_au=0, au_loss_weight=1.0) == pytest.approx(
        epoch_loss(n_au=0, au_loss_weight=0.0), abs=1e-7
    )


def test_distillation_from_a_trial_checkpoint(splits, tmp_path, monkeypatch):
    train, val = splits
    # a finished "trial": its best.json, rebuilt through create_model from its config
    teacher_net = TinyNet()
    monkeypatch.setattr("fersearch.train.checkpoint.create_model", lambda config, k: TinyNet(k))
    save_model_checkpoint(tmp_path / "t", teacher_net, tiny_config().to_json_dict(), {"epoch": 0})
    calls = {"n": 0}
    real_probs = Teacher.probs

    def spy(self, x, pre, temperature):
        calls["n"] += 1
        p = real_probs(self, x, pre, temperature)
        assert torch.allclose(p.sum(1), torch.ones(len(p)))
        return p

    monkeypatch.setattr(Teacher, "probs", spy)
    config = tiny_config(epochs=1, teacher=str(tmp_path / "t"), distill_alpha=0.7, distill_temperature=2.0)
    distilled = fit(config, train, val, K, model=TinyNet())
    plain = fit(tiny_config(epochs=1), train, val, K, model=TinyNet())
    assert calls["n"] == 5
    assert distilled.history[0]["train_loss"] != plain.history[0]["train_loss"]


def test_swa_bn_update_and_best_checkpoint(splits, tmp_path):
    train, val = splits
    result = fit(
        tiny_config(epochs=4, swa_start=0.5, swa_lr=1e-3),
        train,
        val,
        K,
        model=TinyNet(),
        checkpoint_dir=tmp_path,
    )
    assert result.swa_metrics["n_averaged"] == 2  # epochs 2 and 3
    assert result.history[2]["lr"] == pytest.approx(1e-3)  # SWA's constant LR
    tensors, state = load_checkpoint(tmp_path / "best.json")
    assert state["kind"] == "model" and state["source"] == result.best_source
    for k, v in result.model.state_dict().items():
        assert torch.equal(tensors[f"model.{k}"], v)
    assert result.best_val_probs is not None and np.isfinite(result.best_val_probs).all()


def test_epoch_records_carry_curriculum_stage_and_both_metrics(splits):
    train, val = splits
    result = fit(
        tiny_config(epochs=4, curriculum=True, stage2_start=0.25, stage3_start=0.5, stage4_start=0.75),
        train,
        val,
        K,
        model=TinyNet(),
    )
    assert [r["stage"] for r in result.history] == [1, 2, 3, 4]
    assert [r["tau"] for r in result.history] == [0.0, 0.5, 1.2, 0.8]
    assert all(0 <= r["uar"] <= 1 and 0 <= r["war"] <= 1 for r in result.history)
    assert json.dumps(result.history)  # JSON-clean (it goes into checkpoints and trial attrs)
