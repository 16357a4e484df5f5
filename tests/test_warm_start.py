"""Warm start (`create --warm-start-from STUDY`): the K best complete configurations of an earlier
study are enqueued once, at creation, as the first trials, fitted to the new space the way seed
recipes are (what it cannot hold is listed on the trial), on the embedded store and PostgreSQL."""

from __future__ import annotations

import optuna
import pytest
from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from test_weights import hub, put_in_cache  # noqa: F401 (hub: a fixture)

from fersearch.cli import main
from fersearch.config import DataConfig, build_config
from fersearch.errors import InvalidArgument, StudyNotFound
from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.presets import recipe_values
from fersearch.search.space import parse_space
from fersearch.search.storage import open_storage
from fersearch.search.study import create_study
from fersearch.search.trial_state import requeue_interrupted
from fersearch.search.warm_start import DEFAULT_TOP, read_warm_start

# The earlier study trained 4 epochs with weight decay 0.123; the new space trains 3, samples
# lr only from 1e-3 up and says nothing about weight decay.
SOURCE_SPACE = {**TINY_SPACE, "fixed": {**TINY_SPACE["fixed"], "epochs": 4, "weight_decay": 0.123}}
NEW_SPACE = {
    **TINY_SPACE,
    "params": {**TINY_SPACE["params"], "lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}},
}
BASE = {"head": "linear", "label_smoothing": 0.1, "mixup_alpha": 0.0}
# (state, value, sampled values, seed): trial 4 repeats trial 1's configuration with another
# seed (taken once); the pruned trial's high intermediate value does not count.
SOURCE_TRIALS = [
    (TrialState.COMPLETE, 0.50, {"lr": 5e-3}, 0),
    (TrialState.COMPLETE, 0.90, {"lr": 1e-4, "head": "mlp", "head_hidden": 32}, 1),
    (TrialState.PRUNED, None, {"lr": 1e-2}, 2),
    (TrialState.COMPLETE, 0.70, {"lr": 2e-3, "label_smoothing": 0.05}, 3),
    (TrialState.COMPLETE, 0.90, {"lr": 1e-4, "head": "mlp", "head_hidden": 32}, 4),
    (TrialState.COMPLETE, 0.60, {"lr": 8e-3}, 5),
    (TrialState.FAIL, None, {"lr": 3e-3}, 6),
]


def _dist(value):
    return (
        CategoricalDistribution(["linear", "mlp"]) if isinstance(value, str) else FloatDistribution(0.0, 1e6)
    )


def make_source(url: str, data, name: str = "src", trials=SOURCE_TRIALS) -> optuna.Study:
    """A fersearch study whose trials carry their resolved configs (nothing is trained)."""
    space = parse_space(SOURCE_SPACE, source="source")
    data_cfg = DataConfig(root=str(data))
    study, _ = create_study(name, space, data_cfg, None, url)
    for state, value, sampled, seed in trials:
        params = {**BASE, **sampled}
        config = {"data": data_cfg.model_dump(), "seed": seed, **space.fixed, **params}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params=params,
                distributions={k: _dist(v) for k, v in params.items()},
                intermediate_values={1: 0.99} if state == TrialState.PRUNED else None,
                user_attrs={attrs.CONFIG: build_config(config).to_json_dict(), attrs.SEED: seed},
            )
        )
    return study


@pytest.fixture
def new_space(tmp_path):
    import yaml

    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(NEW_SPACE, sort_keys=False))
    return path


def _waiting(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return [t for t in study.get_trials() if t.state == TrialState.WAITING]


def _check_enqueued_once(source_url, target_url, tiny_data, new_space):
    warm_storage = None if source_url == target_url else source_url
    make_source(source_url, tiny_data)
    options = StudyOptions(
        "new",
        tiny_data,
        str(new_space),
        target_url,
        n_trials=5,
        warm_start_from="src",
        warm_start_top=3,
        warm_start_storage=warm_storage,
    )
    study = create_or_join(options)
    create_or_join(options)  # joins: nothing enqueued again
    argv = ["create", "--study", "new", "--data", str(tiny_data), "--space", str(new_space)]
    argv += ["--storage", target_url, "--warm-start-from", "src", "--warm-start-top", "3"]
    argv += ["--warm-start-storage", warm_storage] if warm_storage else []
    assert main(argv) == 0
    waiting = _waiting(target_url, "new")
    # the best three distinct configurations, best first (the tie at 0.90: the earlier trial)
    assert [t.user_attrs[attrs.WARM_START_FROM] for t in waiting] == [
        {"study": "src", "trial": 1, "value": 0.90},
        {"study": "src", "trial": 3, "value": 0.70},
        {"study": "src", "trial": 5, "value": 0.60},
    ]
    assert study.user_attrs[attrs.WARM_START] == {"study": "src", "top": 3, "trials": [1, 3, 5]}
    best, second, third = waiting
    # lr 1e-4 lies outside the new range: sampled, and listed; epochs differ from the fixed 3;
    # the fixed keys the source shared (image size, backbone, batch) are not worth listing
    assert best.system_attrs["fixed_params"] == {**BASE, "head": "mlp", "head_hidden": 32}
    assert sorted(best.user_attrs[attrs.PRESET_SKIPPED]) == ["epochs", "lr"]
    # head_hidden applies only to the mlp head: with a linear head it is neither enqueued nor listed
    assert second.system_attrs["fixed_params"] == {**BASE, "lr": 2e-3, "label_smoothing": 0.05}
    assert second.user_attrs[attrs.PRESET_SKIPPED] == ["epochs"]
    assert third.system_attrs["fixed_params"] == {**BASE, "lr": 8e-3}
    # the whole configuration travels with the trial (the seed, where files come from: never)
    recipe = best.user_attrs[attrs.WARM_START_RECIPE]
    assert recipe["weight_decay"] == 0.123 and recipe["epochs"] == 4 and recipe["head"] == "mlp"
    assert not {"seed", "pretrained", "teacher", "device", "data"} & set(recipe)
    # the source study is read, never written
    source = optuna.load_study(study_name="src", storage=open_storage(source_url))
    assert len(source.get_trials()) == len(SOURCE_TRIALS)
    assert attrs.WARM_START not in source.user_attrs


def test_warm_start_enqueues_the_best_configurations_once_on_the_embedded_store(
    tmp_path, tiny_data, new_space, journal_url
):
    _check_enqueued_once(journal_url, journal_url, tiny_data, new_space)


@pytest.mark.postgres
def test_warm_start_enqueues_the_best_configurations_once_on_postgresql(tiny_data, new_space, pg_url):
    _check_enqueued_once(pg_url, pg_url, tiny_data, new_space)


@pytest.mark.postgres
def test_warm_start_from_a_study_in_another_store(tmp_path, tiny_data, new_space, pg_url):
    """The earlier study in a local journal, the new one in PostgreSQL (--warm-start-storage)."""
    _check_enqueued_once(f"journal:{tmp_path / 'old.journal'}", pg_url, tiny_data, new_space)


def test_a_warm_started_trial_runs_the_earlier_configuration(tmp_path, tiny_data, new_space, journal_url):
    """The worker runs it: the new space's fixed values win, what it samples is enqueued where it
    can (else sampled), what it leaves alone comes from the earlier trial."""
    from fersearch.search.worker import run_worker

    make_source(journal_url, tiny_data)
    options = StudyOptions("new", tiny_data, str(new_space), journal_url, n_trials=1)
    create_or_join(StudyOptions(**{**options.__dict__, "warm_start_from": "src", "warm_start_top": 1}))
    assert run_worker("new", journal_url, threads=1).finished == {"complete": 1}
    (trial,) = optuna.load_study(study_name="new", storage=open_storage(journal_url)).get_trials()
    config = trial.user_attrs[attrs.CONFIG]
    assert trial.user_attrs[attrs.WARM_START_FROM] == {"study": "src", "trial": 1, "value": 0.90}
    assert config["weight_decay"] == 0.123  # left alone by the new space: the earlier trial's
    assert config["epochs"] == 3 and config["head"] == "mlp" and config["head_hidden"] == 32
    assert 1e-3 <= config["lr"] <= 3e-2  # outside the new range: sampled
    assert sorted(trial.user_attrs[attrs.PRESET_SKIPPED]) == ["epochs", "lr"]


def test_a_plain_optuna_study_that_minimises_ranks_the_other_way(tmp_path, tiny_data, new_space, journal_url):
    storage = open_storage(journal_url)
    plain = optuna.create_study(study_name="loss", storage=storage, direction="minimize")
    for lr, loss in ((5e-3, 0.3), (2e-3, 0.1), (9e-3, 0.2)):
        params = {"lr": lr, "momentum_of_my_own": 0.5}
        plain.add_trial(
            optuna.trial.create_trial(
                value=loss, params=params, distributions={k: FloatDistribution(0, 1) for k in params}
            )
        )
    warm = read_warm_start("loss", journal_url, 2)
    assert [(t.number, t.value) for t in warm.trials] == [(1, 0.1), (2, 0.2)]
    create_or_join(
        StudyOptions("new", tiny_data, str(new_space), journal_url, warm_start_from="loss", warm_start_top=2)
    )
    first, second = _waiting(journal_url, "new")
    assert first.system_attrs["fixed_params"] == {"lr": 2e-3}
    # a parameter no TrialConfig field holds is dropped and listed
    assert first.user_attrs[attrs.PRESET_SKIPPED] == ["momentum_of_my_own"]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("fersearch: error: ") and "Traceback" not in err
    return err


def test_bad_warm_starts_are_clear_errors_and_create_nothing(capsys, tmp_path, tiny_data, new_space):
    url = f"journal:{tmp_path / 'study.journal'}"
    make_source(
        url, tiny_data, "unfinished", [(TrialState.PRUNED, None, {}, 0), (TrialState.FAIL, None, {}, 1)]
    )
    create = ["create", "--study", "new", "--data", str(tiny_data), "--space", str(new_space)]
    create += ["--storage", url]

    line = _one_line_error(capsys, [*create, "--warm-start-from", "nope"])
    assert "--warm-start-from 'nope': no study of that name" in line and "unfinished" in line
    assert "--warm-start-storage" in line
    line = _one_line_error(capsys, [*create, "--warm-start-from", "unfinished"])
    assert "has no complete trial yet (1 fail, 1 pruned)" in line
    assert "fersearch worker --study unfinished" in line
    for bad in ("0", "-2"):
        line = _one_line_error(capsys, [*create, "--warm-start-from", "unfinished", "--warm-start-top", bad])
        assert f"--warm-start-top must be a whole number of at least 1 (got {bad})" in line
    line = _one_line_error(capsys, [*create, "--warm-start-storage", url])
    assert "give --warm-start-from STUDY with it" in line
    assert "new" not in optuna.get_all_study_names(open_storage(url))
    with pytest.raises(StudyNotFound):
        read_warm_start("nope", url, DEFAULT_TOP)
    with pytest.raises(InvalidArgument, match="--warm-start-top"):
        read_warm_start("unfinished", url, True)


def test_joining_an_existing_study_ignores_the_warm_start_and_does_not_read_it(
    capsys, tmp_path, tiny_data, new_space, journal_url
):
    create_or_join(StudyOptions("new", tiny_data, str(new_space), journal_url))
    argv = ["create", "--study", "new", "--data", str(tiny_data), "--space", str(new_space)]
    assert main([*argv, "--storage", journal_url, "--warm-start-from", "gone"]) == 0  # not read
    assert "--warm-start-from ignored" in capsys.readouterr().err
    assert _waiting(journal_url, "new") == []


def test_a_warm_start_fits_the_new_data_like_a_seed_recipe():
    """Fusion without context views and an AU head without AU labels are dropped and listed; an
    AU head is sized by the new data's labels, whatever size it had before."""
    space = parse_space(TINY_SPACE, source="t")
    recipe = {"fusion": "xattn", "au_classes": 12, "weight_decay": 0.2, "backbone": "test_resnet"}
    study = optuna.create_study()
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={attrs.WARM_START_RECIPE: recipe, attrs.PRESET_SKIPPED: []})
    trial = study.ask()
    assert recipe_values(trial, space, {}, has_context=False, au_classes=0) == {"weight_decay": 0.2}
    assert study.trials[0].user_attrs[attrs.PRESET_SKIPPED] == ["fusion", "au_classes"]
    values = recipe_values(study.ask(), space, {}, has_context=True, au_classes=5)
    assert values == {"fusion": "xattn", "au_classes": 5, "weight_decay": 0.2}


def test_an_interrupted_warm_started_trial_is_requeued_with_its_recipe(tmp_path):
    class Interrupted:
        epoch, step, checkpoint = 1, 3, tmp_path / "interrupted.json"

    origin = {"study": "src", "trial": 4, "value": 0.8}
    study = optuna.create_study()
    study.enqueue_trial(
        {}, user_attrs={attrs.WARM_START_FROM: origin, attrs.WARM_START_RECIPE: {"weight_decay": 0.2}}
    )
    requeue_interrupted(study, study.ask(), Interrupted(), 7, "SIGTERM")
    copy = study.trials[1]
    assert copy.state == TrialState.WAITING and copy.user_attrs[attrs.WARM_START_FROM] == origin
    assert copy.user_attrs[attrs.WARM_START_RECIPE] == {"weight_decay": 0.2}
    assert attrs.PRESET not in copy.user_attrs


def test_create_refuses_a_warm_start_whose_backbone_weights_are_missing(hub, tmp_path, tiny_data, capsys):  # noqa: F811
    """The new space trains pretrained backbones and leaves the backbone alone: the earlier
    trials' backbone must be on this host too, like the seed recipes'."""
    import yaml

    from fersearch.models.weights import weights_source

    url = f"journal:{tmp_path / 'study.journal'}"
    make_source(url, tiny_data)  # its trials use test_resnet
    fixed = {k: v for k, v in TINY_SPACE["fixed"].items() if k != "backbone"}
    space = tmp_path / "pretrained.yaml"
    space.write_text(yaml.safe_dump({**TINY_SPACE, "fixed": {**fixed, "pretrained": True}}))
    own = weights_source("resnet18", True)  # TrialConfig's default backbone: the space's own
    put_in_cache(hub, own.repo, own.files[0])
    argv = ["create", "--study", "new", "--data", str(tiny_data), "--space", str(space), "--storage", url]
    line = _one_line_error(capsys, [*argv, "--warm-start-from", "src", "--warm-start-top", "1"])
    assert (
        "test_resnet (pretrained: true)" in line and "the warm start's configurations use test_resnet" in line
    )
    assert "new" not in optuna.get_all_study_names(open_storage(url))
    assert main(argv) == 0  # without the warm start, the space alone is fine


def test_create_and_search_default_to_the_same_top():
    import inspect

    from fersearch.commands.search import search
    from fersearch.commands.service import create

    for command in (create, search):
        assert inspect.signature(command).parameters["warm_start_top"].default == DEFAULT_TOP
    assert StudyOptions("s", ".").warm_start_top == DEFAULT_TOP
