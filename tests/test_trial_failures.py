"""An error inside one trial fails that trial with its reason and the worker goes on; trials
failing one after another stop the worker with one clear line (issue #15, item 10)."""

from __future__ import annotations

import optuna
import pytest
import yaml
from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)
from optuna.trial import TrialState

from fersearch.cli import main
from fersearch.search import attrs
from fersearch.search.loop import MAX_FAIL_STREAK


@pytest.fixture
def study_with_weights_choice(tmp_path, tiny_data):
    """A study whose space may use a weights file that the host which created it had and this
    worker's host does not (create refuses a space whose files are missing where it runs)."""
    missing = tmp_path / "weights" / "resnet.safetensors"
    missing.parent.mkdir()
    missing.write_bytes(b"")  # present for create's check, which reads no file
    space = {
        **TINY_SPACE,
        "fixed": {**TINY_SPACE["fixed"], "epochs": 1},
        "params": {"pretrained": {"type": "categorical", "choices": [False, str(missing)]}},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    url = f"journal:{tmp_path / 'study.journal'}"
    argv = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(path), "--storage", url]
    assert main([*argv, "--n-trials", "4"]) == 0
    missing.unlink()  # the worker's host does not have it
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    )
    return optuna.load_study(study_name="s", storage=storage), url, str(missing)


def test_a_trial_that_cannot_build_its_model_fails_with_its_reason_and_the_worker_goes_on(
    capsys, study_with_weights_choice
):
    study, url, missing = study_with_weights_choice
    for pretrained in (missing, False, missing, False):
        study.enqueue_trial({"pretrained": pretrained})
    assert main(["worker", "--study", "s", "--storage", url]) == 0
    said = capsys.readouterr()
    out = said.out + said.err
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE] * 2
    for t in trials[::2]:
        assert missing in t.user_attrs[attrs.FAIL_REASON] and "ModelError" in t.user_attrs[attrs.FAIL_REASON]
    assert "trial   0 failed: ModelError: pretrained weights file" in out
    assert "Traceback" not in out


def test_trials_failing_one_after_another_stop_the_worker_with_one_line(capsys, study_with_weights_choice):
    study, url, missing = study_with_weights_choice
    for _ in range(4):
        study.enqueue_trial({"pretrained": missing})
    capsys.readouterr()
    rc = main(["worker", "--study", "s", "--storage", url])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fersearch: error: ")]
    assert rc == 2 and "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0])
    line = errors[0]
    assert f"{MAX_FAIL_STREAK} trials in a row failed" in line and missing in line
    states = [t.state for t in study.get_trials()]
    assert states[:MAX_FAIL_STREAK] == [TrialState.FAIL] * MAX_FAIL_STREAK
    assert TrialState.RUNNING not in states and states[MAX_FAIL_STREAK:] == [TrialState.WAITING]
