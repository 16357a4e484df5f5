"""Pareto search (a space's ``objectives:``): a multi-objective study (UAR maximised, deployment
figures minimised) that still prunes on validation UAR by fersearch's own rule
(fersearch/search/pareto.py), ends with a non-empty front that ``fersearch status`` prints, and
that finalize's selection ranks by UAR; on the embedded store and on PostgreSQL, with the real
worker."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
import yaml
from conftest import TINY_SPACE  # tests/conftest.py (pytest puts tests/ on sys.path)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from fersearch.cli import main
from fersearch.errors import SearchSpaceError
from fersearch.finalize.select import search_history, top_trials
from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.pareto import UarRule, directions, objective_values
from fersearch.search.space import parse_space
from fersearch.search.storage import open_storage
from fersearch.search.study import make_pruner
from fersearch.search.worker import run_worker

# test_resnet with a linear or an mlp head of 16-64 units: member files a fraction of a MiB
# apart, measured exactly (the size is deterministic; the latency is noisy on a shared CPU).
SPACE = {
    **TINY_SPACE,
    "sampler": {"name": "tpe", "n_startup_trials": 3, "seed": 0},
    # rungs at epochs 1 and 2 (the third and last always completes); a trial goes on at a rung
    # when its best UAR so far is in the top half of the trials that reached it, once two have
    "pruner": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2, "n_startup_trials": 2},
    "deploy": {"device": "cpu", "threads": 1},
    "objectives": ["uar", "size_mb"],
}


@pytest.fixture(params=["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    return request.getfixturevalue("pg_url")


def test_a_pareto_search_prunes_on_uar_and_ends_with_a_front(tmp_path, tiny_data, storage, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    create_or_join(StudyOptions("pareto", tiny_data, str(space), storage, n_trials=8))
    run_worker("pareto", storage, artifacts_dir=tmp_path / "art", threads=2)

    study = optuna.load_study(study_name="pareto", storage=open_storage(storage))
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    assert study.metric_names == ["val_uar", "size_mib"]
    trials = study.get_trials()
    assert len(trials) == 8
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert complete and pruned and len(complete) + len(pruned) == 8
    for t in complete:
        curve = t.user_attrs[attrs.UAR_PER_EPOCH]
        size = t.user_attrs[attrs.DEPLOY_COST]["size_mib"]
        assert len(curve) == 3 and t.values == pytest.approx([max(curve), size], abs=1e-5)
        assert not t.intermediate_values  # Trial.report is never called on a multi-objective study
    for t in pruned:  # by the UAR rule, at a rung, with its reason
        assert t.user_attrs[attrs.PRUNED_AT_EPOCH] in (1, 2)
        assert len(t.user_attrs[attrs.UAR_PER_EPOCH]) == t.user_attrs[attrs.PRUNED_AT_EPOCH]
        assert "not in the top 1/2" in t.user_attrs[attrs.PRUNED_REASON]
    front = study.best_trials
    assert front and {t.number for t in front} <= {t.number for t in complete}

    capsys.readouterr()
    assert main(["status", "--study", "pareto", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert f"Pareto front (UAR max, size_mb min): {len(front)} trial(s)" in out
    for t in front:
        assert f"trial {t.number:3d}  UAR {t.values[0]:.4f}" in out
    best = max(complete, key=lambda t: t.values[0])
    assert f"best validation UAR {best.values[0]:.4f} (trial {best.number})" in out

    # finalize's --top K takes the front first, by UAR (its first objective), then the rest by UAR
    assert top_trials(study, 1)[0].number == best.number
    on_front = {t.number for t in study.best_trials}
    flags = [t.number in on_front for t in top_trials(study, 50)]
    assert flags[0] and flags == sorted(flags, reverse=True)  # every front trial before any other
    assert search_history(study)["best_val_uar"] == best.values[0]


def _trial(number: int, curve: list[float], state=TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(
        state=state,
        values=[max(curve), 1.0] if state == TrialState.COMPLETE else None,
        user_attrs={attrs.UAR_PER_EPOCH: curve},
    )
    t.number = number
    return t


def test_successive_halving_keeps_the_top_share_at_each_rung():
    rule = UarRule("halving", min_resource=1, reduction_factor=3, n_startup_trials=3)
    assert [s for s in range(1, 12) if rule.is_rung(s)] == [1, 3, 9]
    others = [
        _trial(0, [0.50, 0.55, 0.60]),
        _trial(1, [0.30, 0.31, 0.32]),
        _trial(2, [0.40], TrialState.PRUNED),  # reached rung 1: in its pool
        _trial(3, [0.20, 0.45], TrialState.RUNNING),
    ]
    read = lambda: others  # noqa: E731
    # rung 1: pool 0.50, 0.40, 0.30, 0.20 and mine; the top 5 // 3 = 1 goes on
    assert rule.prune(9, [0.45], read).startswith("best val UAR 0.4500 not in the top 1/3 (>= 0.5000) of 5")
    assert rule.prune(9, [0.51], read) is None
    assert rule.prune(9, [0.45, 0.9], read) is None  # epoch 2 is no rung: nobody is read
    # rung 3: trials 0 and 1 reached it; with mine, three: the best so far counts, not the last epoch
    assert "(>= 0.6000) of 3 trials at epoch 3" in rule.prune(9, [0.1, 0.1, 0.1], read)
    assert rule.prune(9, [0.7, 0.1, 0.1], read) is None
    # fewer than n_startup_trials at the rung: nobody is pruned there yet
    assert replace(rule, n_startup_trials=4).prune(9, [0.1, 0.1, 0.1], read) is None
    # failed trials (interrupted ones have a copy that replays their curve) and the trial itself do not count
    failed = [_trial(5, [0.9], TrialState.FAIL), _trial(9, [0.9], TrialState.RUNNING)]
    assert rule.prune(9, [0.51], lambda: [*others, *failed]) is None


def test_median_rule_and_no_rule():
    done = [_trial(0, [0.5, 0.6]), _trial(1, [0.3, 0.4]), _trial(2, [0.2], TrialState.PRUNED)]
    median = UarRule("median", n_startup_trials=2, n_warmup_steps=1)
    assert "below the median 0.4000 of 2 trials at epoch 1" in median.prune(7, [0.35], lambda: done)
    assert median.prune(7, [0.45], lambda: done) is None
    assert median.prune(7, [0.1], lambda: done[:1]) is None  # too few complete trials
    assert UarRule("none").prune(7, [0.0], lambda: done) is None


def test_objectives_in_the_space():
    space = parse_space(SPACE)
    assert directions(space) == ["maximize", "minimize"] and space.multi_objective
    assert objective_values(space, 0.5, {"latency_ms": 3.0, "size_mib": 1.25}) == (0.5, 1.25)
    three = parse_space({**SPACE, "objectives": ["uar", "latency_ms", "size_mb"]})
    assert objective_values(three, 0.5, {"latency_ms": 3.0, "size_mib": 1.25}) == (0.5, 3.0, 1.25)
    assert isinstance(make_pruner(space), optuna.pruners.NopPruner)  # Optuna's refuse it
    assert UarRule.of(parse_space({**SPACE, "pruner": {"name": "hyperband"}})).kind == "halving"
    single = parse_space(TINY_SPACE)
    assert single.objectives == ["uar"] and directions(single) == ["maximize"]
    assert objective_values(single, 0.5, None) == 0.5


@pytest.mark.parametrize(
    "objectives, deploy, message",
    [
        (["latency_ms", "uar"], {"device": "cpu"}, "uar comes first"),
        (["uar", "uar"], {"device": "cpu"}, "each objective once"),
        (["uar", "size_mb"], None, "size_mb needs the deployment cost measured: add a deploy: section"),
        (["uar", "flops"], {"device": "cpu"}, "'uar', 'latency_ms' or 'size_mb'"),
        (["uar"], {"device": "cpu"}, "deploy needs max_latency_ms, max_size_mb or both"),
    ],
)
def test_bad_objectives_are_one_clear_error(objectives, deploy, message):
    raw = {k: v for k, v in SPACE.items() if k != "deploy"} | {"objectives": objectives}
    if deploy is not None:
        raw["deploy"] = deploy
    with pytest.raises(SearchSpaceError, match=message):
        parse_space(raw)
