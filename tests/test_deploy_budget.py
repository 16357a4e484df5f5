"""Deployment budgets in the space (``deploy:``): a trial whose model is over budget ends PRUNED
before it trains, with the measured figure and the budget on it, and the sampler is told (its
constraints), on the embedded store and on PostgreSQL, with the real worker."""

from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.samplers._base import _CONSTRAINTS_KEY
from optuna.trial import TrialState

from fersearch.errors import SearchSpaceError
from fersearch.search import attrs, deploy
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.space import parse_space
from fersearch.search.storage import open_storage
from fersearch.search.study import make_sampler
from fersearch.search.worker import run_worker

# test_resnet's member file is about 1.4 MiB, resnet18's about 43 MiB at any image size: a 5 MiB
# budget excludes resnet18 whatever the machine's speed.
SPACE = {
    "fixed": {"image_size": 32, "epochs": 2, "warmup_epochs": 0, "batch_size": 32},
    "params": {
        "backbone": {"type": "categorical", "choices": ["test_resnet", "resnet18"]},
        "lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
    },
    "sampler": {"name": "tpe", "n_startup_trials": 2, "seed": 3},
    "pruner": {"name": "none"},
    "deploy": {"max_size_mb": 5, "max_latency_ms": 10000, "threads": 1},
}


@pytest.fixture(params=["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    return request.getfixturevalue("pg_url")


def test_over_budget_trials_end_pruned_untrained_and_the_others_complete(tmp_path, tiny_data, storage):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    create_or_join(StudyOptions("dep", tiny_data, str(space), storage, n_trials=6))
    run_worker("dep", storage, artifacts_dir=tmp_path / "art", threads=2)
    study = optuna.load_study(study_name="dep", storage=open_storage(storage))
    trials = study.get_trials()
    assert len(trials) == 6
    by_backbone = {b: [t for t in trials if t.params["backbone"] == b] for b in ("test_resnet", "resnet18")}
    assert by_backbone["resnet18"] and by_backbone["test_resnet"]
    for t in by_backbone["resnet18"]:
        assert t.state == TrialState.PRUNED
        reason = t.user_attrs[attrs.INFEASIBLE]
        assert reason.startswith("size ") and "> budget 5 MiB" in reason and "1 thread(s), batch 1" in reason
        assert attrs.UAR_PER_EPOCH not in t.user_attrs  # no epoch trained
        assert t.user_attrs[attrs.DEPLOY_COST]["size_mib"] > 40
        assert _constraints(t)[1] > 35  # what the sampler reads: size minus budget
    for t in by_backbone["test_resnet"]:
        assert t.state == TrialState.COMPLETE and attrs.INFEASIBLE not in t.user_attrs
        cost = t.user_attrs[attrs.DEPLOY_COST]
        assert cost["size_mib"] < 5 and cost["latency_ms"] > 0 and cost["device"] == "cpu"
        assert len(t.user_attrs[attrs.UAR_PER_EPOCH]) == 2
        assert all(c <= 0 for c in _constraints(t))


def _constraints(t: optuna.trial.FrozenTrial) -> list[float]:
    """The trial's constraint values as the installed Optuna's samplers read them."""
    if deploy.TRIAL_CONSTRAINTS:  # Optuna 5: set on the trial
        return [t.constraints[f] for f in deploy.FIGURES]
    return list(t.system_attrs[_CONSTRAINTS_KEY])  # Optuna 4: written by constraints_func


def test_samplers_get_the_constraints_and_random_search_cannot():
    expected = None if deploy.TRIAL_CONSTRAINTS else deploy.constraints_func
    for name in ("tpe", "gp"):
        assert make_sampler(parse_space({**SPACE, "sampler": {"name": name}}))._constraints_func is expected
    plain = parse_space({k: v for k, v in SPACE.items() if k != "deploy"})
    assert make_sampler(plain)._constraints_func is None
    make_sampler(parse_space({**SPACE, "sampler": {"name": "random"}}))  # accepted, unconstrained


def test_constraints_of_an_unmeasured_trial_are_feasible():
    trial = optuna.trial.create_trial(value=0.5, params={}, distributions={})
    assert deploy.constraints_func(trial) == [0.0, 0.0]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({}, "deploy needs max_latency_ms, max_size_mb or both"),
        ({"max_latency_ms": 0}, "greater than 0"),
        ({"max_size_mb": 5, "device": "tpu"}, "'cpu' or 'cuda'"),
        ({"max_size_mb": 5, "views": 2}, "unknown key 'deploy.views'"),
    ],
)
def test_bad_budgets_are_one_clear_error(bad, message):
    with pytest.raises(SearchSpaceError, match=message):
        parse_space({**SPACE, "deploy": bad})
