"""The whole loop on real components: synthetic RAF-DB tree -> study -> workers -> finalize.

Run on the embedded journal store and on a real PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from test_cli_errors import _search

from fersearch.cli import main
from fersearch.ensemble import load_ensemble
from fersearch.metrics import summarize
from fersearch.search import attrs

REPORT_FILES = [
    "report.json",
    "report.md",
    "report.html",
    "confusion_matrix.png",
    "predictions.npz",
    "ensemble/manifest.json",
]


def _run_search_and_finalize(tmp_path: Path, data: Path, space: Path, storage: str, n_trials: int):
    rc = main(_search(data, space, storage, "--n-trials", str(n_trials), study="e2e"))
    assert rc == 0
    study = optuna.load_study(study_name="e2e", storage=_storage(storage))
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == n_trials
    assert TrialState.COMPLETE in states
    assert TrialState.PRUNED in states, "a run sized to prune should prune at least one trial"
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    for t in trials:
        assert t.user_attrs["config"]["backbone"] == "test_resnet"
        assert t.user_attrs["seed"] == t.user_attrs["config"]["seed"]
        assert t.user_attrs["code_version"]
        assert len(t.user_attrs["uar_per_epoch"]) == len(t.intermediate_values)
        # the pruner is told each epoch's best-so-far UAR: what the trial would return if stopped
        uars = t.user_attrs["uar_per_epoch"]
        reported = [t.intermediate_values[step] for step in sorted(t.intermediate_values)]
        assert reported == pytest.approx([max(uars[: i + 1]) for i in range(len(uars))], abs=1e-5)
        assert t.user_attrs["wall_seconds"] > 0
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["best_epoch"] >= 1
            assert t.value == pytest.approx(max(t.user_attrs["uar_per_epoch"]), abs=1e-4)

    out = tmp_path / "final"
    assert (
        main(
            ["finalize", "--study", "e2e", "--top", "2", "--out", str(out), "--storage", storage, "--no-onnx"]
        )
        == 0
    )
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    return study, out


def _storage(url: str):
    from fersearch.search.storage import open_storage

    return open_storage(url)


def _check_report(out: Path):
    report = json.loads((out / "report.json").read_text())
    pred = np.load(out / "predictions.npz", allow_pickle=False)
    n_cls = len(report["class_names"])
    for split, key in (("val", "validation"), ("test", "test")):
        recomputed = summarize(pred[f"{split}_labels"], pred[f"{split}_probs"].argmax(1), n_cls)
        for metric in ("uar", "war", "macro_f1"):
            assert report[key][metric] == pytest.approx(recomputed[metric])
        assert report[key]["confusion_matrix"] == recomputed["confusion_matrix"]
    # the ensemble is the documented combination of its members: weighted mean, then calibration
    from fersearch.ensemble.probs import apply_bias, combine

    combined = apply_bias(combine(pred["member_test_probs"], pred["weights"]), pred["bias"])
    np.testing.assert_allclose(pred["test_probs"], combined, rtol=1e-5, atol=1e-6)
    assert len(report["members"]) == pred["member_test_probs"].shape[0] == 2
    md = (out / "report.md").read_text()
    assert f"{report['test']['uar']:.4f}" in md

    # the exported ensemble reloads (safetensors + JSON) and predicts what finalize saved
    from fersearch.config import DataConfig
    from fersearch.data import load_manifest
    from fersearch.data.decode import decode_split

    ens = load_ensemble(out / "ensemble")
    manifest = load_manifest(DataConfig(**report["data"]))
    probs = ens.predict_probs(lambda size: decode_split(manifest, "test", size).images)
    np.testing.assert_allclose(probs, pred["test_probs"], atol=1e-5)


def test_search_and_finalize_embedded(tmp_path, tiny_data, tiny_space, journal_url):
    _, out = _run_search_and_finalize(tmp_path, tiny_data, tiny_space, journal_url, n_trials=8)
    _check_report(out)


@pytest.mark.postgres
def test_search_and_finalize_postgres(tmp_path, tiny_data, tiny_space, pg_url):
    _, out = _run_search_and_finalize(tmp_path, tiny_data, tiny_space, pg_url, n_trials=8)
    _check_report(out)
    # finalize under a deployment budget on the same PostgreSQL study (the members are reused)
    argv = ["finalize", "--study", "e2e", "--top", "2", "--out", str(out), "--storage", pg_url, "--no-onnx"]
    assert main([*argv, "--max-latency-ms", "10000", "--max-size-mb", "100"]) == 0
    budget = json.loads((out / "report.json").read_text())["deployment"]["budget"]
    assert budget["within"] and budget["measured_members_mib"] <= 100


def test_two_worker_processes_share_one_embedded_study(tmp_path, tiny_data, journal_url):
    from conftest import TINY_SPACE

    from fersearch.search.api import StudyOptions, create_or_join

    # Trials of several seconds: far longer than the gap between the two workers' start-ups, so
    # each of them gets trials.
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**TINY_SPACE, "fixed": {**TINY_SPACE["fixed"], "epochs": 8}}))
    create_or_join(StudyOptions("shared", tiny_data, str(space), journal_url, n_trials=6))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fersearch.cli", "worker", "--study", "shared", "--storage", journal_url]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr and "LockError" not in stderr
    study = optuna.load_study(study_name="shared", storage=_storage(journal_url))
    counted = [t for t in study.get_trials() if not t.user_attrs.get(attrs.SURPLUS)]
    assert len(counted) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    # each worker ran trials, no trial ran twice, and together they ran the budget
    ran = [
        set(map(int, re.findall(r"trial +(\d+) \S*(?:complete|pruned)", out + err))) for out, err in outputs
    ]
    assert all(ran) and not (ran[0] & ran[1]), ran
    assert ran[0] | ran[1] == {t.number for t in counted}


def test_demo_command_runs_the_whole_loop(tmp_path):
    """`fersearch demo` at a tiny size: synthesise, search, finalize, on its own embedded store."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "300", "--trials", "3", "--top", "2"]) == 0
    assert (out / "data" / "preview.png").is_file()
    assert (out / "study.journal").is_file()
    for name in REPORT_FILES:
        assert (out / "report" / name).is_file(), name
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["study"] == "demo" and 1 <= len(report["members"]) <= 2
    # a second run starts the study afresh and reuses the data
    assert main(["demo", "--out", str(out), "--n", "300", "--trials", "3", "--top", "1"]) == 0
    study = optuna.load_study(study_name="demo", storage=_storage(f"journal:{out / 'study.journal'}"))
    assert len(study.get_trials()) == 3
