"""Experiment tracking: `--tensorboard DIR` writes one TensorBoard run per trial (and per finalize
member), read back here with TensorBoard's own EventAccumulator; a failed write never fails a
trial; `--mlflow` is optuna-integration's MLflowCallback, or one clear error without it."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from fersearch.cli import main
from fersearch.search import attrs, tracking
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.storage import open_storage
from fersearch.search.trial_state import study_folder_name
from fersearch.search.worker import run_worker

pytest.importorskip("tensorboard", reason="the tensorboard package writes and reads the event files")

EVENTS = "events.out.tfevents.*"


def read_run(directory: Path) -> tuple[dict[str, list[tuple[int, float]]], dict]:
    """(scalars by tag as (step, value), hyperparameters) of one TensorBoard run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(directory))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return scalars, hparams


def _close(pairs, values, tol=1e-5) -> bool:
    return len(pairs) == len(values) and all(abs(v - w) <= tol for (_, v), w in zip(pairs, values))


def test_worker_writes_one_run_per_trial_that_reads_back(tmp_path, tiny_data, tiny_space, journal_url):
    """Per trial: every epoch's loss, UAR, WAR, macro F1, learning rate and curriculum stage at
    step = epochs completed, the best UAR so far, and the sampled hyperparameters. The study name
    is hostile: its runs stay inside DIR all the same."""
    name = "../../etc/tb study"
    board = tmp_path / "logs" / "tb"
    create_or_join(StudyOptions(name, tiny_data, str(tiny_space), journal_url, n_trials=2))
    run_worker(name, journal_url, threads=1, tensorboard=board)
    study = optuna.load_study(study_name=name, storage=open_storage(journal_url))
    trials = [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) == 2
    folder = board / study_folder_name(name)
    runs = {p.parent for p in tmp_path.rglob(EVENTS)}
    assert runs == {folder / f"trial_{t.number}" for t in trials}  # one each, all inside DIR
    for t in trials:
        scalars, hparams = read_run(folder / f"trial_{t.number}")
        uar = t.user_attrs[attrs.UAR_PER_EPOCH]
        assert [s for s, _ in scalars["val/uar"]] == list(range(1, len(uar) + 1))
        assert _close(scalars["val/uar"], uar)
        assert _close(scalars["val/war"], t.user_attrs[attrs.WAR_PER_EPOCH])
        assert [v for _, v in scalars["curriculum/stage"]] == t.user_attrs[attrs.STAGE_PER_EPOCH]
        assert _close(scalars["best/val_uar"], [max(uar[: i + 1]) for i in range(len(uar))])
        for tag in ("train/loss", "train/lr", "val/macro_f1"):
            assert len(scalars[tag]) == len(uar), tag
        if t.state == TrialState.COMPLETE:
            assert abs(scalars["best/val_uar"][-1][1] - t.value) <= 1e-5
        assert hparams["lr"] == pytest.approx(t.params["lr"]) and hparams["head"] == t.params["head"]
        assert hparams["seed"] == t.user_attrs[attrs.SEED] and hparams["backbone"] == "test_resnet"


def test_a_failing_write_is_reported_once_per_trial_and_the_trials_go_on(
    tmp_path, tiny_data, tiny_space, journal_url, monkeypatch
):
    """A disk that refuses the event file, and an MLflow-style callback that raises: every trial
    still completes, each problem is one line, and the callback sees the trials it can."""
    from torch.utils.tensorboard import SummaryWriter

    import fersearch.search.worker as worker

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    seen: list[tuple[str, int, str]] = []

    class Callback:
        def __call__(self, study, trial):
            seen.append((study.study_name, trial.number, trial.state.name))
            raise RuntimeError("tracking server went away")

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    monkeypatch.setattr(worker, "mlflow_callback", lambda uri: Callback() if uri else None)
    create_or_join(StudyOptions("full", tiny_data, str(tiny_space), journal_url, n_trials=2))
    out = io.StringIO()
    console = Console(file=out, width=300)
    summary = run_worker(
        "full", journal_url, console=console, threads=1, tensorboard=tmp_path / "tb", mlflow="x"
    )
    assert summary.total == 2 and "fail" not in summary.finished
    log = out.getvalue()
    assert log.count("tensorboard: cannot write") == 2  # once per trial, not once per epoch
    assert "No space left on device" in log and "tracking is off for this run" in log
    assert log.count("Callback failed on trial") == 1  # then dropped: once per worker
    assert seen == [("full", 0, seen[0][2])] and seen[0][2] in ("COMPLETE", "PRUNED")


def test_a_run_that_cannot_open_is_reported_once_and_never_raises(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    said: list[str] = []
    run = tracking.TensorBoard(tmp_path / "file", said.append).trial_run("s", 3, {"lr": 0.1})
    with run:
        for epoch in range(3):
            run.epoch({"epoch": epoch, "uar": 0.5, "war": 0.5, "train_loss": 1.0, "stage": 1, "lr": 0.1})
    assert len(said) == 1 and "trial 3" in said[0] and "tracking is off" in said[0]


def test_hparams_hold_the_sampled_keys_and_whatever_departs_from_the_defaults():
    from fersearch.config import build_config

    config = build_config({"data": {"root": "."}, "lr": 0.01, "attention": "cbam+eca+se", "seed": 4})
    hp = tracking.hparams_of(config, ("lr", "dropout"), trial=9)
    assert hp["lr"] == 0.01 and "dropout" in hp and hp["attention"] == "cbam+eca+se" and hp["trial"] == 9
    assert hp["seed"] == 4 and "data" not in hp and "device" not in hp
    assert all(isinstance(v, bool | int | float | str) for v in hp.values())


def test_without_tensorboard_the_option_is_one_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "tensorboard_available", lambda: False)
    argv = ["worker", "--study", "s", "--storage", f"journal:{tmp_path / 'j.log'}"]
    assert main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "`pip install tensorboard`, or drop --tensorboard" in err


def test_tensorboard_folder_that_is_a_file_is_refused_before_any_work(capsys, tmp_path):
    (tmp_path / "taken").write_text("x")
    argv = ["worker", "--study", "s", "--storage", f"journal:{tmp_path / 'j.log'}"]
    assert main([*argv, "--tensorboard", str(tmp_path / "taken")]) == 2
    assert "--tensorboard" in capsys.readouterr().err and not (tmp_path / "j.log").exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_mlflow_without_its_packages_is_one_clear_error(capsys, tmp_path, tiny_data, tiny_space):
    store = f"journal:{tmp_path / 'j.log'}"
    search = ["search", "--study", "s", "--data", str(tiny_data), "--space", str(tiny_space)]
    for argv in (["worker", "--study", "s"], search):
        assert main([*argv, "--storage", store, "--mlflow", "file:./ml"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "`pip install optuna-integration mlflow`, or drop --mlflow" in err
    assert not (tmp_path / "j.log").exists()  # refused before the study was created


def test_finalize_writes_one_run_per_retrained_member(tmp_path, tiny_data):
    """finalize --tensorboard: each member it trains gets a run with its per-epoch scalars."""
    from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)

    from fersearch.config import DataConfig
    from fersearch.search.space import parse_space
    from fersearch.search.study import create_study

    url = f"journal:{tmp_path / 'study.journal'}"
    data = DataConfig(root=str(tiny_data))
    study, _ = create_study("fin", parse_space(TINY_SPACE, "t"), data, 1, url)
    config = {"data": data.model_dump(mode="json"), **TINY_SPACE["fixed"], "epochs": 2, "lr": 3e-3, "seed": 0}
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5, params={}, distributions={}, user_attrs={"config": config, "seed": 0}
        )
    )
    out, board = tmp_path / "final", tmp_path / "tb"
    argv = ["finalize", "--study", "fin", "--top", "1", "--out", str(out), "--storage", url]
    assert main([*argv, "--tta", "none", "--no-onnx", "--threads", "1", "--tensorboard", str(board)]) == 0
    (member,) = (out / "members" / "train").iterdir()
    history = json.loads((member / "member.json").read_text())["history"]
    scalars, hparams = read_run(board / "fin" / "finalize-train" / member.name)
    assert _close(scalars["val/uar"], [r["uar"] for r in history]) and len(history) == 2
    assert _close(scalars["train/loss"], [r["train_loss"] for r in history], 1e-4)
    assert hparams["lr"] == pytest.approx(3e-3) and hparams["trial"] == 0
