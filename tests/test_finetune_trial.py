"""pretrained: trial:STUDY/NUMBER end to end: real workers train a source study, then a study whose
space fixes or samples trial:src/N is created (its weights check finds the source's checkpoint
through the storage) and run by a real worker, whose trials start from the source trial's
weights; mistakes are one clear error at `create`, not a failed trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import TINY_SPACE  # tests/conftest.py (pytest puts tests/ on sys.path)
from optuna.trial import TrialState

from fersearch.cli import main
from fersearch.errors import ModelError
from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.finetune import trial_checkpoint
from fersearch.search.storage import open_storage
from fersearch.search.worker import run_worker
from fersearch.train.checkpoint import load_checkpoint, unprefixed

SOURCE_SPACE = {
    "fixed": {**TINY_SPACE["fixed"], "epochs": 2, "head": "linear"},
    "params": {"lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
}


def _space(path: Path, fixed: dict | None = None, params: dict | None = None) -> str:
    raw = {
        **SOURCE_SPACE,
        "fixed": {**SOURCE_SPACE["fixed"], "epochs": 1, **(fixed or {})},
        "params": params or SOURCE_SPACE["params"],
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory, tiny_data):
    """Study 'src' with two complete trials trained by a real worker (best.json each)."""
    tmp = tmp_path_factory.mktemp("finetune_src")
    url = f"journal:{tmp / 'study.journal'}"
    create_or_join(StudyOptions("src", tiny_data, _space(tmp / "src.yaml", {"epochs": 2}), url, n_trials=2))
    assert run_worker("src", url, threads=1, upload_artifacts=False).finished == {"complete": 2}
    return tmp, url


def _weights(best_json: Path) -> dict[str, torch.Tensor]:
    return unprefixed("model", load_checkpoint(best_json)[0])


def _trials(name: str, url: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def _frozen_params(state: dict) -> dict:
    """The backbone's parameters (frozen while fine-tuning; BN statistics still move)."""
    moving = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v for k, v in state.items() if k.startswith("backbone.") and not k.endswith(moving)}


def _assert_started_from(tuned: Path, source: Path):
    mine, theirs = _frozen_params(_weights(tuned)), _frozen_params(_weights(source))
    assert mine.keys() == theirs.keys() and mine
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k], rtol=0, atol=0, msg=k)


def test_worker_fine_tunes_from_a_fixed_trial(source, tmp_path, tiny_data):
    src_dir, url = source
    storage = open_storage(url)
    src0 = trial_checkpoint(storage, "src", 0)
    fixed = {"pretrained": "trial:src/0", "freeze_backbone": True}
    create_or_join(StudyOptions("ft", tiny_data, _space(tmp_path / "ft.yaml", fixed), url, n_trials=1))
    assert run_worker("ft", url, threads=1, upload_artifacts=False).finished == {"complete": 1}
    (trial,) = _trials("ft", url)
    assert trial.user_attrs[attrs.CONFIG]["pretrained"] == "trial:src/0"  # recorded as written
    tuned = Path(trial.user_attrs[attrs.CHECKPOINT_DIR]) / "best.json"
    _assert_started_from(tuned, src0)
    # and not from random init: trial 1 of the source is another model
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            _frozen_params(_weights(tuned)).values(),
            _frozen_params(_weights(trial_checkpoint(storage, "src", 1))).values(),
            strict=True,
        )
    )


def test_a_space_samples_trial_sources_like_any_pretrained_source(source, tmp_path, tiny_data, capsys):
    _, url = source
    storage = open_storage(url)
    params = {
        **SOURCE_SPACE["params"],
        "pretrained": {"type": "categorical", "choices": ["trial:src/0", "trial:src/1"]},
    }
    space = _space(tmp_path / "sampled.yaml", {"freeze_backbone": True}, params)
    assert main(["weights", "list", "--space", space, "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "2 present" in out and "missing" not in out

    create_or_join(StudyOptions("ft2", tiny_data, space, url, n_trials=2))
    assert run_worker("ft2", url, threads=1, upload_artifacts=False).finished == {"complete": 2}
    for trial in _trials("ft2", url):
        ref = trial.params["pretrained"]
        tuned = Path(trial.user_attrs[attrs.CHECKPOINT_DIR]) / "best.json"
        _assert_started_from(tuned, trial_checkpoint(storage, "src", int(ref.rsplit("/", 1)[1])))


@pytest.mark.parametrize(
    "fixed, message",
    [
        ({"pretrained": "trial:src/9"}, "study 'src' has no trial 9 (its trials: 0..1)"),
        ({"pretrained": "trial:nope/0"}, "no study named 'nope' in this study's storage; its studies: "),
        ({"pretrained": "trial:src/0", "backbone": "test_convnext"}, "is a test_resnet model, but this"),
        ({"pretrained": "trial:src/x"}, "'x' is not a whole number"),
        ({"pretrained": "trial:../../etc/0"}, "no study named '../../etc'"),  # a name, never a path
    ],
)
def test_create_refuses_a_source_a_trial_would_fail_on(source, tmp_path, tiny_data, fixed, message):
    _, url = source
    space = _space(tmp_path / "bad.yaml", fixed)
    with pytest.raises(ModelError) as err:
        create_or_join(StudyOptions("bad", tiny_data, space, url, n_trials=1))
    assert message in str(err.value) and "nothing was created" in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert "bad" not in optuna.get_all_study_names(open_storage(url))


def test_trial_lookup_errors_say_what_to_use(source, tmp_path, tiny_data):
    _, url = source
    storage = open_storage(url)
    study = optuna.load_study(study_name="src", storage=storage)
    # a trial added by hand: complete, but no worker trained it, so it has no checkpoint
    study.add_trial(optuna.trial.create_trial(value=0.3, params={}, distributions={}))
    with pytest.raises(ModelError, match="records no checkpoint folder"):
        trial_checkpoint(storage, "src", 2)
    # a failed trial whose re-queued copy completed points at the copy
    failed = optuna.trial.create_trial(state=TrialState.FAIL, params={}, distributions={})
    study.add_trial(failed)
    copy = optuna.trial.create_trial(value=0.3, params={}, distributions={}, user_attrs={attrs.RETRY_OF: 3})
    study.add_trial(copy)
    with pytest.raises(ModelError, match=r"its copy, trial 4, is complete: use trial:src/4"):
        trial_checkpoint(storage, "src", 3)
    running = study.ask()
    with pytest.raises(ModelError, match="has not finished yet"):
        trial_checkpoint(storage, "src", running.number)
    study.tell(running, state=TrialState.FAIL)


def test_finalize_retrains_a_fine_tuned_trial_from_its_source(source, tmp_path, tiny_data, caplog):
    """finalize binds its study's storage too: a member trained again (another seed) starts from
    the source trial, found through the storage, like the trial did."""
    import logging

    from fersearch.finalize import finalize

    _, url = source
    fixed = {"pretrained": "trial:src/1"}
    create_or_join(StudyOptions("ftfin", tiny_data, _space(tmp_path / "f.yaml", fixed), url, n_trials=1))
    assert run_worker("ftfin", url, threads=1, upload_artifacts=False).finished == {"complete": 1}
    with caplog.at_level(logging.INFO, logger="fersearch.models.finetune"):
        paths = finalize("ftfin", 1, tmp_path / "out", url, seeds=2, onnx=False, latency_images=4)
    assert (paths["ensemble"] / "manifest.json").is_file()
    assert "fine-tuning from pretrained 'trial:src/1'" in caplog.text  # the retrained seed


def test_a_resumed_run_does_not_read_its_source_again(tmp_path):
    """Resuming, the checkpoint holds the weights: a source gone since is not needed."""
    import numpy as np

    from fersearch.config import build_config
    from fersearch.data.decode import SplitArrays
    from fersearch.train.loop import _model

    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    split = SplitArrays(images=images, labels=np.arange(4) % 2, paths=[str(i) for i in range(4)])
    gone = str(tmp_path / "gone" / "best.json")
    values = {"backbone": "test_resnet", "image_size": 32, "pretrained": gone}
    config = build_config({"data": {"root": "."}, **values})
    model = _model(config, split, split, 2, None, None, torch.device("cpu"), resuming=True)
    assert model.preprocess["image_size"] == 32
    with pytest.raises(ModelError, match="does not exist"):
        _model(config, split, split, 2, None, None, torch.device("cpu"), resuming=False)


def test_a_storage_that_fails_during_the_lookup_is_a_storage_error():
    from fersearch.errors import StorageError

    class Broken:
        def get_study_id_from_name(self, name):
            raise RuntimeError("server closed the connection: postgresql://u:secret@db/x")

    with pytest.raises(StorageError) as err:
        trial_checkpoint(Broken(), "src", 0)
    assert "trial:src/0" in str(err.value) and "RuntimeError" in str(err.value)
    assert "secret" not in str(err.value)


def test_a_deployment_budget_measures_a_fine_tuned_trial_and_it_trains_from_its_source(
    source, tmp_path, tiny_data
):
    """The budget is checked on the trial's model built without weights (they change neither
    speed nor size): a trial:src/N source, which cannot be built without its weights, is not
    read for it, and the trial then trains from that source."""
    _, url = source
    path = tmp_path / "ftd.yaml"
    _space(path, {"pretrained": "trial:src/0", "freeze_backbone": True})
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "deploy": {"max_size_mb": 100, "threads": 1}}, sort_keys=False))
    create_or_join(StudyOptions("ftd", tiny_data, str(path), url, n_trials=1))
    assert run_worker("ftd", url, threads=1, upload_artifacts=False).finished == {"complete": 1}
    (trial,) = _trials("ftd", url)
    assert 0 < trial.user_attrs[attrs.DEPLOY_COST]["size_mib"] < 100
    assert attrs.INFEASIBLE not in trial.user_attrs
    tuned = Path(trial.user_attrs[attrs.CHECKPOINT_DIR]) / "best.json"
    _assert_started_from(tuned, trial_checkpoint(open_storage(url), "src", 0))
