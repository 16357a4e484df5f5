"""finalize reuses a trial's own best weights where training it again would repeat the trial
(same config, seed, code and data), and training it again does repeat it, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from safetensors.torch import load_file
from test_cli_errors import _search

from fersearch.cli import main
from fersearch.finalize import select
from fersearch.finalize.retrain import _trial_model
from fersearch.search import attrs
from fersearch.search.storage import open_storage
from fersearch.train.checkpoint import load_checkpoint, unprefixed


def _finalize(study: str, url: str, out: Path) -> int:
    argv = ["finalize", "--study", study, "--top", "1", "--out", str(out), "--storage", url]
    return main([*argv, "--tta", "none", "--no-onnx", "--threads", "1"])


def _member(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    (folder,) = (out / "members" / "train").iterdir()
    return json.loads((folder / "member.json").read_text()), load_file(folder / "model.safetensors")


def test_finalize_reuses_the_trials_weights_and_retraining_repeats_the_trial(
    tmp_path, tiny_data, tiny_space, monkeypatch, capsys
):
    url = f"journal:{tmp_path / 'study.journal'}"
    assert main(_search(tiny_data, tiny_space, url, "--n-trials", "2", "--threads", "1", study="r")) == 0
    best = optuna.load_study(study_name="r", storage=open_storage(url)).best_trial
    checkpoint = Path(best.user_attrs[attrs.CHECKPOINT_DIR]) / "best.json"
    trial_tensors, _ = load_checkpoint(checkpoint)

    assert _finalize("r", url, tmp_path / "reused") == 0
    record, weights = _member(tmp_path / "reused")
    assert record["trial_weights"] == str(checkpoint) and record["seconds"] == 0.0
    assert record["val_uar"] == best.value and record["best_epoch"] == best.user_attrs[attrs.BEST_EPOCH]
    own = unprefixed("model", trial_tensors)
    assert weights.keys() == own.keys() and all(torch.equal(weights[k], own[k]) for k in own)
    assert f"trial {best.number}'s own best weights" in capsys.readouterr().err

    # Trained by other code, the trial's weights are not reused: the member trains again, and
    # gets exactly the trial's model.
    monkeypatch.setattr(select, "code_version", lambda: "another version")
    assert _finalize("r", url, tmp_path / "retrained") == 0
    record, weights = _member(tmp_path / "retrained")
    assert "trial_weights" not in record and record["seconds"] > 0
    assert record["val_uar"] == best.value
    assert all(torch.equal(weights[k], own[k]) for k in own)


def test_trial_weights_of_another_config_or_an_unreadable_file_are_not_used(tmp_path, tiny_data, tiny_space):
    url = f"journal:{tmp_path / 'study.journal'}"
    assert main(_search(tiny_data, tiny_space, url, "--n-trials", "1", "--threads", "1", study="c")) == 0
    trial = optuna.load_study(study_name="c", storage=open_storage(url)).trials[0]
    assert trial.state == TrialState.COMPLETE
    (spec,) = select.member_specs([trial], seeds=1)
    assert spec.trial_weights is not None and _trial_model(spec, 7) is not None
    # another learning rate: this checkpoint is not that member's training
    other = spec.config.model_copy(update={"lr": spec.config.lr * 2})
    assert _trial_model(select.MemberSpec(spec.trial, spec.seed, other, 0.5, spec.trial_weights), 7) is None
    # a second seed never repeats the trial
    assert select.member_specs([trial], seeds=2)[1].trial_weights is None
    # a checkpoint that cannot be read is trained again, not an error
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert _trial_model(select.MemberSpec(spec.trial, spec.seed, spec.config, 0.5, str(broken)), 7) is None
