"""Never lose work: checkpoints, exact resume, interruption, divergence."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from fersearch.errors import ModelError
from fersearch.train import TrainingDiverged, TrainingInterrupted, fit
from fersearch.train.checkpoint import load_checkpoint, save_checkpoint

from .conftest import K, TinyNet, tiny_config

# Two recipes that between them touch every piece of state a resume must restore: dropout RNG,
# mixing RNG, curriculum samplers and class weights, AdamW/SGD momentum, SAM, EMA, SWA, plateau.
RECIPES = {
    "curriculum_adamw_ema_swa": dict(
        curriculum=True, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1, ema_decay=0.9, swa_start=0.5
    ),
    # the basic pipeline on the device, progressive, scaled per curriculum stage
    "device_augment_progressive": dict(
        curriculum=True,
        stage1_aug=0.5,
        augment="basic",
        augment_on="device",
        augment_phases=2,
        augment_strength_start=0.5,
    ),
    # the basic albumentations pipeline in the CPU loader (seeded per batch): resumed mid-epoch,
    # the remaining batches must get the draws they had in the uninterrupted run
    "cpu_loader_basic": dict(augment="basic", augment_on="cpu", augment_strength=1.5, mixup_alpha=0.2),
    "sgd_sam_focal_oversample_selfdistill": dict(
        optimizer="sgd",
        sam_rho=0.05,
        loss="focal",
        sampler="oversample",
        oversample_per_class=40,  # 160 an epoch: 5 steps, like the other recipe
        class_weight_cap=3.0,
        logit_adjust_tau=1.0,
        schedule="plateau",
        plateau_patience=0,
        self_distill_start=0.25,
        mixup_alpha=0.2,
    ),
}


def _net() -> TinyNet:
    torch.manual_seed(0)  # same initial weights in every run compared
    return TinyNet()


def _stop_after(n_steps: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n_steps

    return should_stop


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k  # bitwise: CPU ops here are deterministic


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_interrupted_mid_epoch_and_resumed_equals_uninterrupted(recipe, splits, tmp_path):
    train, val = splits
    config = tiny_config(**RECIPES[recipe])
    full = fit(config, train, val, K, model=_net(), checkpoint_dir=tmp_path / "full")

    # Stop in the middle of epoch 2 (5 steps per epoch at batch 32 of 175 images).
    with pytest.raises(TrainingInterrupted) as info:
        fit(
            config,
            train,
            val,
            K,
            model=_net(),
            checkpoint_dir=tmp_path / "cut",
            should_stop=_stop_after(12),
        )
    assert info.value.epoch == 2 and info.value.checkpoint.name == "interrupted.json"
    # the CPU loader's thread stopped with the run, though the exception still holds its frames
    assert not [t for t in threading.enumerate() if t.name == "fersearch-prefetch"]
    seen = []
    resumed = fit(
        config,
        train,
        val,
        K,
        model=_net(),
        checkpoint_dir=tmp_path / "cut",
        resume_from=info.value.checkpoint,
        on_epoch=seen.append,
    )
    assert resumed.resumed_from_epoch == 2
    _assert_same_weights(full.model, resumed.model)
    assert [r["uar"] for r in resumed.history] == [r["uar"] for r in full.history]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert [r.get("restored", False) for r in seen] == [True, True, False, False]
    assert resumed.best_epoch == full.best_epoch and resumed.best_uar == full.best_uar


def test_crash_after_epoch_k_resumes_from_last_checkpoint(splits, tmp_path):
    """A worker killed between epochs (SIGKILL) leaves `last`: resuming it gives the same run."""
    train, val = splits
    config = tiny_config(**RECIPES["curriculum_adamw_ema_swa"])
    full = fit(config, train, val, K, model=_net())

    class Crash(Exception):
        pass

    def crash_after_epoch_1(rec):
        if rec["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        fit(config, train, val, K, model=_net(), checkpoint_dir=tmp_path, on_epoch=crash_after_epoch_1)
    state = json.loads((tmp_path / "last.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 0)
    resumed = fit(config, train, val, K, model=_net(), resume_from=tmp_path / "last.json")
    _assert_same_weights(full.model, resumed.model)


def test_checkpoint_files_are_replaced_atomically_and_validated(tmp_path):
    save_checkpoint(tmp_path, "last", {"w": torch.ones(3)}, {"epoch": 1})
    first = json.loads((tmp_path / "last.json").read_text())["tensors"]
    save_checkpoint(tmp_path, "last", {"w": torch.zeros(3)}, {"epoch": 2})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(["last.json", json.loads((tmp_path / "last.json").read_text())["tensors"]])
    assert first not in files  # the previous tensor file is gone, no temporary files remain
    tensors, state = load_checkpoint(tmp_path / "last.json")
    assert state["epoch"] == 2 and torch.equal(tensors["w"], torch.zeros(3))
    # a truncated tensor file is detected, not loaded
    tensor_file = tmp_path / state["tensors"]
    tensor_file.write_bytes(tensor_file.read_bytes()[:-4])
    with pytest.raises(ModelError, match="missing or incomplete"):
        load_checkpoint(tmp_path / "last.json")


def test_resume_with_a_different_config_is_refused(splits, tmp_path):
    train, val = splits
    fit(tiny_config(epochs=1), train, val, K, model=_net(), checkpoint_dir=tmp_path)
    with pytest.raises(ModelError, match="differs in lr"):
        fit(tiny_config(epochs=1, lr=0.1), train, val, K, model=_net(), resume_from=tmp_path / "last.json")


def test_resume_accepts_runtime_changes_and_configs_written_before_a_field_existed(splits, tmp_path):
    """Where and how the batches are produced (device, loader workers, prefetch thread) may change
    between the run and its resume; a checkpoint whose config predates a field (its key absent)
    compares as that field's default, the behaviour it was written with."""
    train, val = splits
    basic = dict(augment="basic", epochs=3)
    full = fit(tiny_config(**basic), train, val, K, model=_net())
    stop = _stop_after(7)  # part way through epoch 1 (5 steps an epoch)
    with pytest.raises(TrainingInterrupted):
        fit(tiny_config(**basic), train, val, K, model=_net(), checkpoint_dir=tmp_path, should_stop=stop)
    last = tmp_path / "interrupted.json"
    state = json.loads(last.read_text())
    del state["config"]["prefetch"]  # as written before the field was added
    state["config"]["retired_option"] = 1  # and a field removed since
    last.write_text(json.dumps(state))
    with pytest.raises(ModelError, match="differs in lr"):  # still a different run
        fit(tiny_config(**basic, lr=0.1, prefetch=0), train, val, K, model=_net(), resume_from=last)
    runtime = tiny_config(**basic, prefetch=0, num_workers=1)
    resumed = fit(runtime, train, val, K, model=_net(), resume_from=last)
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 3
    # batches from a worker process, not the thread: the same run (the loader does not touch the
    # global torch RNG that dropout draws from)
    _assert_same_weights(full.model, resumed.model)


def test_injected_nan_raises_training_diverged_with_the_position(splits, tmp_path):
    train, val = splits
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1 step 2"):
        fit(tiny_config(), train, val, K, model=TinyNet(nan_at_call=8), checkpoint_dir=tmp_path)
    # the last good state (end of epoch 0) is still on disk
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == 1
