"""bench/reach_bound.py and the replay it runs on (bench/pruner_replay.py): successive halving
replayed on recorded curves decides as Optuna's pruner does."""

import importlib.util
import random
from pathlib import Path

import optuna
import pytest


def _load(name):
    """A bench script loaded from its file: putting bench/ on sys.path would let its script names
    shadow other modules."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bound, replay = _load("reach_bound"), _load("pruner_replay")


def _optuna_decisions(curves, epochs, min_resource, reduction_factor):
    """Each curve run as a trial of a real study with Optuna's SuccessiveHalvingPruner, reporting
    the best UAR so far after every epoch (as fersearch's objective does)."""
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_resource, reduction_factor=reduction_factor
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    out = []
    for curve in curves:
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            trial.report(max(curve[:epoch]), epoch)
            if epoch < epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                out.append((epoch, True))
                break
        else:
            study.tell(trial, max(curve))
            out.append((epochs, False))
    return out


@pytest.mark.parametrize(("epochs", "min_resource", "reduction_factor"), [(6, 2, 3), (30, 10, 3), (12, 1, 2)])
def test_the_replay_prunes_the_trials_optuna_prunes(epochs, min_resource, reduction_factor):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(epochs)
    curves = [[rng.random() for _ in range(epochs)] for _ in range(25)]
    prune, stops = replay.halving_pruner(min_resource, reduction_factor), []

    def recording(bsf, seen, n):
        stops.append(prune(bsf, seen, n))
        return stops[-1]

    replay.replay(curves, recording, epochs, mark=epochs * len(curves))
    replayed = [(stop, stop < epochs) for stop in stops]
    assert replayed == _optuna_decisions(curves, epochs, min_resource, reduction_factor)
    assert any(p for _, p in replayed) and not all(p for _, p in replayed)  # both outcomes occur


def test_the_replay_counts_pruned_epochs_and_stops_at_the_limit():
    # rung at 2 of 6 epochs, reduction factor 3: trial 0 runs; trial 1 is worse at epoch 2 and is
    # pruned there (2 epochs, no model); trial 2 is better at epoch 2 but would end at 6 + 2 + 6 = 14.
    curves = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.0, 0.1, 0.9, 0.9, 0.9, 0.9], [0.5] * 6]
    prune = replay.halving_pruner(2, 3)  # one rung, at epoch 2 (the next, 6, is the end)
    assert replay.replay(curves, prune, 6, 13) == (pytest.approx(0.6), 2)
    assert replay.replay(curves, prune, 6, 14) == (pytest.approx(0.6), 3)  # 0.5 < 0.6
    assert replay.replay(curves[2:], prune, 6, 6)[0] == pytest.approx(0.5)
    assert replay.replay(curves, prune, 6, 5) == (-1.0, 0)  # nothing finished


def test_at_least():
    assert bound.at_least(4, 5, 1.0) == pytest.approx(1.0)
    assert bound.at_least(4, 5, 0.5) == pytest.approx(6 / 32)
