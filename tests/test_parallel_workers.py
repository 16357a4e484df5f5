"""Workers sharing one study: distinct sampler draws under a fixed seed, and a trial that finds the
budget taken as it starts ends in one quiet line. Real Optuna studies on the embedded journal."""

from __future__ import annotations

import io
import logging

import optuna
from optuna.trial import TrialState
from rich.console import Console

from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.space import parse_space, sample_params
from fersearch.search.storage import open_storage
from fersearch.search.study import counted_trials, load_study, trial_seed


def _draws(url: str, workers: int, n: int) -> dict[int, dict]:
    """``n`` trials asked in turn by ``workers`` loaded studies (one per worker process, each
    rebuilding the sampler from the stored space); trial number -> parameters."""
    handles = [load_study("seeded", url)[0] for _ in range(workers)]
    space = parse_space(handles[0].user_attrs["fersearch:space"], source="test")
    params = {}
    for i in range(n):
        study = handles[i % workers]
        trial = study.ask()
        params[trial.number] = sample_params(trial, space)
        study.tell(trial, 0.5)
    return params


def test_workers_on_a_seeded_study_draw_distinct_parameters_and_the_study_is_reproducible(
    tmp_path, tiny_data, tiny_space
):
    # the tiny space, like the demo's, sets the sampler's seed (TPE, 3 random start-up trials)
    urls = [f"journal:{tmp_path / f'{name}.journal'}" for name in ("two", "again", "one")]
    for url in urls:
        create_or_join(StudyOptions("seeded", tiny_data, str(tiny_space), url, n_trials=6))
    two = _draws(urls[0], workers=2, n=6)
    values = [tuple(sorted(p.items())) for p in two.values()]
    assert len(set(values)) == len(values), two  # no worker repeats another's draw
    assert _draws(urls[1], workers=2, n=6) == two  # the same seed, the same study
    one = _draws(urls[2], workers=1, n=6)
    assert {k: one[k] for k in range(3)} == {k: two[k] for k in range(3)}  # whoever runs a trial
    assert trial_seed(0, 1) != trial_seed(0, 2) and trial_seed(0, 1) == trial_seed(0, 1)


def test_a_trial_that_finds_the_budget_taken_ends_in_one_quiet_line(
    tmp_path, tiny_data, tiny_space, monkeypatch, capfd, caplog
):
    """Two workers see the last free place; the other one asks first. This worker's trial ends
    unrun, counted nowhere, said in one line, no traceback."""
    from fersearch.search import worker as worker_module
    from fersearch.search.budget import TrialBudget

    url = f"journal:{tmp_path / 'study.journal'}"
    create_or_join(StudyOptions("last", tiny_data, str(tiny_space), url, n_trials=1))
    other = optuna.load_study(study_name="last", storage=open_storage(url))

    class RacedBudget(TrialBudget):
        raced = False

        def left(self) -> bool:
            room = super().left()  # this worker sees the free place ...
            if not RacedBudget.raced:
                RacedBudget.raced = True
                taken = other.ask()  # ... and the other worker takes it before this one asks
                other.tell(taken, 0.5)
            return room

    monkeypatch.setattr(worker_module, "TrialBudget", RacedBudget)
    out = io.StringIO()
    caplog.set_level(logging.WARNING)
    summary = worker_module.run_worker("last", url, console=Console(file=out, width=200))
    assert summary.finished == {}
    text = out.getvalue() + capfd.readouterr().err + caplog.text
    assert "Traceback" not in text and "Surplus" not in text, text
    about = [line for line in text.splitlines() if "trial   1" in line or "Trial 1" in line]
    assert about == ["trial   1 not run: the budget filled up as it started"], text
    trials = other.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[attrs.SURPLUS] and not trials[1].intermediate_values
    assert [t.number for t in counted_trials(other)] == [0]


def test_on_a_journal_a_waiting_worker_looks_again_every_second(tmp_path, tiny_data, tiny_space, monkeypatch):
    """With the budget used up, a worker waits while another worker's trial runs and exits
    once it ends: on a local journal it reads the study every second (a database: every 5 s),
    so local workers do not linger after the study is done."""
    from fersearch.search import loop as loop_module
    from fersearch.search import worker as worker_module

    url = f"journal:{tmp_path / 'study.journal'}"
    create_or_join(StudyOptions("poll", tiny_data, str(tiny_space), url, n_trials=1))
    other = optuna.load_study(study_name="poll", storage=open_storage(url))
    theirs = other.ask()  # the other worker's trial takes the whole budget
    pauses: list[float] = []
    pause = loop_module._pause

    def recorded(seconds, stop, deadline):
        pauses.append(seconds)
        if len(pauses) == 2:
            other.tell(theirs, 0.5)  # the other worker's trial ends
        pause(seconds, stop, deadline)

    monkeypatch.setattr(loop_module, "_pause", recorded)
    out = io.StringIO()
    summary = worker_module.run_worker("poll", url, console=Console(file=out, width=200), timeout=60)
    assert summary.finished == {}
    assert "waiting while trial(s) 0 of other workers run" in out.getvalue()
    assert pauses == [loop_module.WAIT_POLL_S["journal"]] * 2 == [1.0, 1.0]
