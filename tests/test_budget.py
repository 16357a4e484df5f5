"""The study-wide trial budget on real PostgreSQL, with trials that do no work: exact under
concurrent workers, queued trials run once, and the in-trial check reads the study only when
the read before asking cannot settle it."""

from __future__ import annotations

import io
import multiprocessing as mp

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from rich.console import Console

from fersearch.progress import tasks
from fersearch.search import attrs
from fersearch.search.budget import TrialBudget
from fersearch.search.liveness import StoreHealth, timing
from fersearch.search.loop import TrialLoop
from fersearch.search.storage import open_storage
from fersearch.search.study import counted_trials
from fersearch.train import GracefulStop

pytestmark = pytest.mark.postgres


class _Noop:
    """A trial's work that takes no time: the loop around it is what is under test."""

    beat = None

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        return x


def _process(url: str, n_trials: int) -> None:
    """A worker process: `fersearch worker`'s own loop (TrialLoop) with a no-op trial."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="b", storage=open_storage(url, heartbeat=True))
    with tasks(Console(file=io.StringIO())) as progress, GracefulStop() as stop:
        loop = TrialLoop(
            study, TrialBudget(study, n_trials), _Noop(), progress, stop, StoreHealth(), timing()
        )
        loop.run(deadline=None)


def test_concurrent_workers_run_exactly_the_budget_and_queued_trials_once(pg_url):
    study = optuna.create_study(study_name="b", storage=open_storage(pg_url), direction="maximize")
    queued = [0.1, 0.2, 0.3]
    for x in queued:
        study.enqueue_trial({"x": x})
    n_trials = 16
    procs = [mp.Process(target=_process, args=(pg_url, n_trials)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    trials = optuna.load_study(study_name="b", storage=open_storage(pg_url)).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ran = [t for t in trials if not t.user_attrs.get(attrs.SURPLUS)]
    assert len(ran) == n_trials == len(counted_trials(study))
    assert all(t.state == TrialState.COMPLETE for t in ran)
    assert sorted(t.params["x"] for t in ran if "fixed_params" in t.system_attrs) == queued
    surplus = [t for t in trials if t.user_attrs.get(attrs.SURPLUS)]
    assert all(t.state == TrialState.FAIL and not t.intermediate_values for t in surplus)
    assert len(surplus) <= len(procs) - 1  # at most one per worker that found the budget full


def _count_statements(storage) -> list[str]:
    seen: list[str] = []
    sa.event.listen(storage.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_in_trial_check_reads_only_when_the_read_before_asking_cannot_settle_it(pg_url):
    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="b", storage=storage)
    statements = _count_statements(storage)
    budget = TrialBudget(study, 3)
    checks: list[tuple[bool, int]] = []

    def objective(trial: optuna.Trial) -> float:
        before = len(statements)
        checks.append((budget.is_surplus(trial), len(statements) - before))
        return 0.0

    while budget.left():
        study.optimize(objective, n_trials=1)
    # alone on the study: the read before asking settles every check, no query inside the trial
    assert checks == [(False, 0)] * 3
    assert len(counted_trials(study)) == 3


def test_a_trial_started_after_the_last_place_was_taken_is_surplus(pg_url):
    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="b", storage=storage)
    other = optuna.load_study(study_name="b", storage=open_storage(pg_url))  # another worker
    statements = _count_statements(storage)
    budget = TrialBudget(study, 1)
    assert budget.left()  # the budget has room as this worker reads it ...
    taken = other.ask()  # ... and another worker takes the last place before it asks
    checks: list[tuple[bool, int]] = []

    def objective(trial: optuna.Trial) -> float:
        before = len(statements)
        checks.append((budget.is_surplus(trial), len(statements) - before))
        return 0.0

    study.optimize(objective, n_trials=1)
    ((surplus, queries),) = checks
    assert surplus and queries > 0  # it could not be settled without reading the study again
    other.tell(taken, 0.0)
    assert not budget.left()

    # a re-queued copy of an interrupted trial runs even with the budget used up
    study.enqueue_trial({}, user_attrs={attrs.RETRY_OF: taken.number})
    assert budget.left()
    study.optimize(objective, n_trials=1)
    assert checks[-1][0] is False


def test_workers_agree_on_which_trial_took_the_last_place_whatever_their_start_times(pg_url):
    """Each worker stamps its trial's start before the storage numbers it: a trial can start
    earlier than a lower-numbered one. Trial 1 is within the budget by its worker's check (no
    read: counted then plus the trials numbered since); trial 2 must then be surplus, though it
    started first. (Ordered by start time, it ran too: one trial over the budget.)"""
    import datetime

    from fersearch.search.optuna_compat import trial_id

    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="b", storage=storage, direction="maximize")
    done = study.ask()
    study.tell(done, 0.5)
    a = optuna.load_study(study_name="b", storage=open_storage(pg_url))  # two workers
    b = optuna.load_study(study_name="b", storage=open_storage(pg_url))
    budget_a, budget_b = TrialBudget(a, 2), TrialBudget(b, 2)
    assert budget_a.left() and budget_b.left()  # both see one free place
    late = optuna.trial.create_trial(state=TrialState.RUNNING)  # A's trial, numbered first ...
    late.datetime_start = datetime.datetime.now() + datetime.timedelta(seconds=5)  # ... stamped later
    a.add_trial(late)
    frozen_a = a.get_trials()[-1]
    trial_b = b.ask()
    assert (frozen_a.number, trial_b.number) == (1, 2)
    assert trial_b.datetime_start < frozen_a.datetime_start
    assert not budget_a.is_surplus(optuna.Trial(a, trial_id(frozen_a)))
    assert budget_b.is_surplus(trial_b)


def test_a_queued_trial_always_runs_even_past_the_budget(pg_url):
    """``left`` lets a worker ask while a trial is queued (a seed recipe, a re-queued copy);
    the trial it pops is never surplus, even when the budget is already counted full."""
    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="b", storage=storage)
    done = study.ask()
    study.tell(done, 0.0)
    study.enqueue_trial({"x": 0.25}, user_attrs={"fersearch:preset": "recipe"})
    budget = TrialBudget(study, 1)
    assert budget.left()
    trial = study.ask()
    assert study.get_trials()[-1].system_attrs["fixed_params"] == {"x": 0.25}  # popped from the queue
    assert not budget.is_surplus(trial)
