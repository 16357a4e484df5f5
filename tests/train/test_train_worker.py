"""The worker with real Optuna storage and a real subprocess: SIGTERM, NaN, seed recipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.storage import open_storage
from fersearch.search.worker import run_worker

SPACE = {
    "fixed": {
        "image_size": 32,
        "epochs": 6,
        "warmup_epochs": 0,
        "backbone": "test_resnet",
        "batch_size": 32,
        "curriculum": True,
    },
    "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
}


def _space(tmp_path: Path, **fixed) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, "fixed": {**SPACE["fixed"], **fixed}}))
    return path


def _trials(name: str, url: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def test_sigterm_saves_interrupted_checkpoint_and_the_retry_resumes(tmp_path, tiny_data, journal_url):
    create_or_join(StudyOptions("sig", tiny_data, str(_space(tmp_path)), journal_url, n_trials=1))
    ckpt_dir = Path(journal_url.removeprefix("journal:")).parent / "checkpoints" / "sig" / "trial_0"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    cmd = [sys.executable, "-m", "fersearch.cli", "worker", "--study", "sig", "--storage", journal_url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (ckpt_dir / "last.json").exists():  # epoch 1 is done: training is under way
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr

    interrupted = json.loads((ckpt_dir / "interrupted.json").read_text())
    assert interrupted["kind"] == "training" and interrupted["epoch"] >= 1
    trials = _trials("sig", journal_url)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    first, retry = trials
    assert first.user_attrs["interrupted_signal"] == "SIGTERM"
    assert first.user_attrs["interrupted_checkpoint"] == str(ckpt_dir / "interrupted.json")
    assert retry.user_attrs[attrs.RESUME_FROM] == str(ckpt_dir / "interrupted.json")
    assert retry.user_attrs[attrs.SEED] == 0  # the copy trains with the interrupted trial's seed

    # The next worker picks the retry up and resumes from the checkpoint, not from epoch 0.
    summary = run_worker("sig", journal_url)
    assert summary.finished == {"complete": 1}
    done = _trials("sig", journal_url)[1]
    assert done.state == TrialState.COMPLETE and done.params == first.params
    assert done.user_attrs["resumed_from_epoch"] == interrupted["epoch"]
    assert done.user_attrs["config"] == {**first.user_attrs["config"]}
    assert len(done.user_attrs["uar_per_epoch"]) == 6
    assert done.user_attrs["stage_per_epoch"] == [1, 2, 2, 3, 3, 4]  # seed 002 over 6 epochs
    assert len(done.user_attrs["war_per_epoch"]) == 6
    # the resumable state is cleaned up once the retry is done; the best weights stay
    assert not (ckpt_dir / "interrupted.json").exists()
    assert (Path(done.user_attrs["checkpoint_dir"]) / "best.json").exists()


def test_nan_loss_prunes_the_trial_with_its_reason_and_the_worker_goes_on(tmp_path, tiny_data, journal_url):
    space = _space(tmp_path, epochs=2, curriculum=False, optimizer="sgd", momentum=0.0)
    space_doc = yaml.safe_load(space.read_text())
    space_doc["params"]["lr"] = {"type": "categorical", "choices": [1.0e12, 1.0e-3]}
    space.write_text(yaml.safe_dump(space_doc))
    study = create_or_join(StudyOptions("nan", tiny_data, str(space), journal_url, n_trials=2))
    study.enqueue_trial({"lr": 1.0e12})  # SGD at this rate overflows within a few steps
    study.enqueue_trial({"lr": 1.0e-3})
    summary = run_worker("nan", journal_url)
    assert summary.finished == {"pruned": 1, "complete": 1}
    diverged, healthy = _trials("nan", journal_url)
    assert diverged.state == TrialState.PRUNED
    assert diverged.user_attrs["pruned_reason"].startswith("loss became")
    assert healthy.state == TrialState.COMPLETE


def test_seed_recipes_are_enqueued_once_at_creation(tmp_path, tiny_data, journal_url):
    space = tmp_path / "space.yaml"
    narrow = {"lr": {"type": "float", "low": 5.0e-4, "high": 1.0e-2, "log": True}}
    space.write_text(yaml.safe_dump({**SPACE, "params": narrow}))
    create_or_join(StudyOptions("seeded", tiny_data, str(space), journal_url, n_trials=9, seed_recipes=True))
    create_or_join(
        StudyOptions("seeded", tiny_data, str(space), journal_url, n_trials=9, seed_recipes=True)
    )  # joins
    waiting = [t for t in _trials("seeded", journal_url) if t.state == TrialState.WAITING]
    names = [t.user_attrs["fersearch:preset"] for t in waiting]
    assert names == ["clip_caer_70", "convnext_emotenet", "raer_4stage", "efficientnet_bilstm", "compound_au"]
    by_name = {t.user_attrs["fersearch:preset"]: t for t in waiting}
    # lr 1e-3 lies in the space's range: enqueued as the trial's parameter
    assert by_name["clip_caer_70"].system_attrs["fixed_params"] == {"lr": 1e-3}
    # lr 1e-4 does not: the space samples it, and the trial says so; fixed keys always win
    assert set(by_name["efficientnet_bilstm"].user_attrs["preset_skipped"]) == {
        "lr",
        "backbone",
        "batch_size",
    }
    assert set(by_name["clip_caer_70"].user_attrs["preset_skipped"]) == {"backbone", "epochs", "batch_size"}


def test_recipes_fit_the_study_data_and_space():
    """Parts a study cannot use are dropped and listed: fusion without context views, the prompt
    head under a fixed non-CLIP backbone, the AU head without AU labels (sized by them when there)."""
    from fersearch.search.presets import fit_to_study
    from fersearch.search.space import parse_space

    tiny = parse_space(SPACE, source="test")
    values, dropped = fit_to_study("clip_caer_70", tiny, {}, has_context=False, au_classes=0)
    assert set(dropped) == {"fusion", "head", "lr_prompt"}
    assert values["augment"] == "basic" and values["lr_backbone"] == 1e-6 and "fusion" not in values
    values, dropped = fit_to_study("clip_caer_70", parse_space({**SPACE, "fixed": {}}, "t"), {}, True, 0)
    assert dropped == [] and (values["head"], values["fusion"]) == ("prompt", "xattn")
    assert values["backbone"] == "open_clip:ViT-B-16"
    values, dropped = fit_to_study("compound_au", tiny, {}, has_context=False, au_classes=12)
    assert values["au_classes"] == 12 and values["loss"] == "focal" and dropped == []
    values, dropped = fit_to_study("compound_au", tiny, {}, has_context=False, au_classes=0)
    assert "au_classes" not in values and dropped == ["au_classes"]
    values, _ = fit_to_study("convnext_emotenet", tiny, {}, False, 0)
    assert (values["attention"], values["fpn"], values["pool"]) == ("cbam+eca+se", True, "gem")
    assert values["augment_phases"] == 5 and "backbone" not in values  # the space fixes it


def test_every_recipe_trains_with_its_model_parts_on_a_tiny_backbone(tiny_data):
    """Each recipe's own parts (attention chain, FPN, GeM, Bi-LSTM, AU head, curriculum, strong
    augmentation, SWA, self-distillation, plateau schedule...) build and train for 2 epochs."""
    from fersearch.config import build_config
    from fersearch.data import load_manifest
    from fersearch.data.decode import SplitArrays, decode_split
    from fersearch.search.presets import PRESETS, fit_to_study
    from fersearch.search.space import parse_space
    from fersearch.train import fit

    space = parse_space({**SPACE, "fixed": {**SPACE["fixed"], "epochs": 2, "curriculum": False}}, "t")
    manifest = load_manifest(build_config({"data": {"root": str(tiny_data)}}).data)
    full = decode_split(manifest, "train", 32)
    train = SplitArrays(full.images[:128], full.labels[:128], full.paths[:128])  # speed: 2 steps an epoch
    val = decode_split(manifest, "val", 32)
    for name in PRESETS:
        values, _ = fit_to_study(name, space, {}, has_context=False, au_classes=0)
        values = {**values, **space.fixed, "lr": 1e-3, "oversample_per_class": 20, "device": "cpu"}
        config = build_config({"data": {"root": str(tiny_data)}, **values})
        result = fit(config, train, val, manifest.num_classes)
        assert len(result.history) == 2 and np.isfinite(result.history[-1]["train_loss"]), name


@pytest.mark.parametrize(
    "name", ["clip_caer_70", "convnext_emotenet", "raer_4stage", "efficientnet_bilstm", "compound_au"]
)
def test_every_preset_is_a_valid_config_with_a_real_backbone(name):
    from fersearch.config import build_config
    from fersearch.models import validate_backbone
    from fersearch.search.presets import get_preset, validate_presets

    validate_presets()
    config = build_config({"data": {"root": "."}, **get_preset(name)})
    validate_backbone(config.backbone)


def test_a_heartbeat_retry_copy_resumes_from_the_inherited_checkpoint_dir(tmp_path):
    """RetryHeartbeatStaleTrialCallback copies user attributes: seed and checkpoint_dir carry over."""
    from fersearch.search.trial_state import resume_info
    from fersearch.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, "last", {"w": torch.zeros(1)}, {"epoch": 3})
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={"seed": 7, "checkpoint_dir": str(tmp_path)})
    study.enqueue_trial({})
    retry, fresh = study.ask(), study.ask()
    assert resume_info(retry) == (str(tmp_path / "last.json"), 7)
    assert resume_info(fresh) == (None, fresh.number)
