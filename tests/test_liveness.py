"""Crash safety on real components: worker processes killed with SIGKILL on the embedded journal
and on PostgreSQL, a database that refuses connections for a while and then drops them every
half second, and the heartbeat, sweep and outage pieces on their own.

Every wait here waits for an event (a checkpoint file, a line a worker prints, a trial state),
with a deadline; the only fixed durations are the outage and the storm the tests cause.
"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import yaml
from optuna.trial import TrialState
from test_service import worker_command, worker_env

from fersearch.errors import InvalidArgument, StorageError
from fersearch.search import attrs
from fersearch.search.api import StudyOptions, create_or_join
from fersearch.search.liveness import (
    Heartbeat,
    StoreHealth,
    TrialLost,
    is_transient,
    sweep_stale_trials,
    timing,
)
from fersearch.search.optuna_compat import storage_of, trial_id
from fersearch.search.status import study_status
from fersearch.search.storage import open_storage
from fersearch.search.study import counted_among

# Trials resume in a second or so here: beats every second, stale after four silent seconds.
FAST = {"FERSEARCH_HEARTBEAT_INTERVAL": "1", "FERSEARCH_GRACE_PERIOD": "4"}


def _space(tmp_path: Path, tiny_space: Path, epochs: int) -> Path:
    """The tiny space without pruning (every trial runs all its epochs) and ``epochs`` long."""
    raw = yaml.safe_load(tiny_space.read_text())
    path = tmp_path / f"space{epochs}.yaml"
    raw = {**raw, "fixed": {**raw["fixed"], "epochs": epochs}, "pruner": {"name": "none"}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _wait_for(condition, what: str, procs=(), timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"worker exited early while waiting for {what}: {p.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


class _Lines:
    """A worker's stderr, read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def find(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def _checkpoint(artifacts: Path, study: str, number: int) -> Path:
    return artifacts / "checkpoints" / study / f"trial_{number}" / "last.json"


def _check_retried_and_counted(trials, dead_number: int, budget: int):
    """The dead trial failed, its copy ran to the end with the same parameters, nothing is left
    running or queued, and the budget counts the copy, not the dead trial."""
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], [
        (t.number, t.state) for t in trials
    ]
    dead = next(t for t in trials if t.number == dead_number)
    assert dead.state == TrialState.FAIL
    retry = next(t for t in trials if dead_number in t.system_attrs.get("retry_history", []))
    assert retry.state == TrialState.COMPLETE
    assert {k: retry.params[k] for k in dead.params} == dead.params  # the same parameters
    counted = counted_among(trials)
    assert len(counted) == budget and dead not in counted
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    return dead, retry


def test_sigkilled_worker_on_the_journal_is_retried_from_its_checkpoint(tmp_path, tiny_data, tiny_space):
    url = f"journal:{tmp_path / 'study.journal'}"
    create_or_join(
        StudyOptions("kill", tiny_data, str(_space(tmp_path, tiny_space, epochs=4)), url, n_trials=2)
    )
    artifacts = tmp_path / "shared"
    cmd = worker_command("kill", url, artifacts)
    victim = subprocess.Popen(cmd, env=worker_env(**FAST), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _checkpoint(artifacts, "kill", 0).is_file(), "checkpoint of trial 0", [victim])
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
    killed_at = json.loads(_checkpoint(artifacts, "kill", 0).read_text())["epoch"]  # epochs done
    study = optuna.load_study(study_name="kill", storage=open_storage(url))
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]  # killed mid-trial

    # Another worker, started at once (trial 0's heartbeat is fresh): it runs trial 1, fails
    # trial 0 once it is stale, and runs its copy before it leaves.
    other = subprocess.run(cmd, env=worker_env(**FAST), capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr
    assert "Traceback" not in other.stderr
    assert "trial   0 stale" in other.stderr
    trials = study.get_trials()
    _, retry = _check_retried_and_counted(trials, dead_number=0, budget=2)
    assert 1 <= killed_at < 4
    assert retry.user_attrs["resumed_from_epoch"] == killed_at  # from the checkpoint, not epoch 0
    assert len(retry.user_attrs["uar_per_epoch"]) == 4
    assert not _checkpoint(artifacts, "kill", 0).exists()  # the dead trial's state is not orphaned

    status = subprocess.run(
        [*cmd[:3], "status", "--study", "kill", "--storage", url],
        env=worker_env(**FAST),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "2 complete" in status.stdout and "0 running" in status.stdout and "0 queued" in status.stdout


@pytest.mark.postgres
def test_last_worker_stays_until_a_dead_workers_trial_is_retried_on_postgres(
    pg_url, tmp_path, tiny_data, tiny_space
):
    create_or_join(
        StudyOptions("last", tiny_data, str(_space(tmp_path, tiny_space, epochs=4)), pg_url, n_trials=2)
    )
    artifacts = tmp_path / "shared"
    # --threads 1: a worker then takes no part in waiting for a free core, which the frozen one
    # would hold forever on a one-core machine
    cmd = [*worker_command("last", pg_url, artifacts), "--threads", "1"]
    # A longer grace than the survivor needs to start and run trial 1: it then finds trial 0
    # still within its grace period, and has to stay for it.
    env = worker_env(FERSEARCH_HEARTBEAT_INTERVAL="1", FERSEARCH_GRACE_PERIOD="10")
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _checkpoint(artifacts, "last", 0).is_file(), "checkpoint of trial 0", [victim])
        victim.send_signal(signal.SIGSTOP)  # frozen mid-trial: trial 0 cannot end
        survivor = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        lines = _Lines(survivor)
        # It takes the budget's other place and sees trial 0 still RUNNING when it is done.
        _wait_for(lambda: lines.find("trial   1 complete"), "trial 1 complete", [survivor])
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    survivor.wait(timeout=300)
    err = lines.text()
    assert survivor.returncode == 0, err
    assert "Traceback" not in err
    assert "trial   0 stale" in err  # it did not leave '2/2' with trial 0 RUNNING or queued
    trials = optuna.load_study(study_name="last", storage=open_storage(pg_url)).get_trials()
    _, retry = _check_retried_and_counted(trials, dead_number=0, budget=2)
    assert retry.user_attrs["resumed_from_epoch"] >= 1


def test_a_worker_with_the_budget_used_up_waits_for_running_trials(
    tmp_path, tiny_data, tiny_space, monkeypatch
):
    """Another worker's trial runs, beating, while this worker has nothing left to ask for: it
    waits (and says so); when the beats stop, it fails the trial and runs the copy."""
    import io

    from rich.console import Console

    from fersearch.search.worker import run_worker

    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    url = f"journal:{tmp_path / 'study.journal'}"
    study = create_or_join(
        StudyOptions("wait", tiny_data, str(_space(tmp_path, tiny_space, epochs=1)), url, n_trials=1)
    )
    other = optuna.load_study(study_name="wait", storage=open_storage(url))
    theirs = other.ask()  # the other worker's trial: it takes the whole budget
    theirs.suggest_float("lr", 1.0e-5, 3.0e-2, log=True)
    out = io.StringIO()
    console = Console(file=out, width=200)
    stop_beating = threading.Event()

    def other_worker() -> None:  # beats until this worker says it is waiting, then "dies"
        beat = Heartbeat(other, theirs, 0.5, StoreHealth())
        with beat:
            while "waiting while trial(s) 0" not in out.getvalue() and not stop_beating.wait(0.05):
                pass

    thread = threading.Thread(target=other_worker, daemon=True)
    thread.start()
    try:
        summary = run_worker("wait", url, console=console, artifacts_dir=tmp_path / "a", timeout=120)
    finally:
        stop_beating.set()
        thread.join(timeout=30)
    text = out.getvalue()
    assert "waiting while trial(s) 0 of other workers run" in text
    assert text.index("waiting while") < text.index("trial   0 stale")
    assert summary.finished == {"complete": 1}
    _check_retried_and_counted(study.get_trials(), dead_number=0, budget=1)


@pytest.mark.postgres
def test_worker_rides_out_a_database_outage_and_a_storm_of_cut_connections(
    pg_url, tmp_path, tiny_data, tiny_space
):
    create_or_join(
        StudyOptions("outage", tiny_data, str(_space(tmp_path, tiny_space, epochs=10)), pg_url, n_trials=2)
    )
    artifacts = tmp_path / "shared"
    cmd = worker_command("outage", pg_url, artifacts)
    worker = subprocess.Popen(
        cmd, env=worker_env(**FAST), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines = _Lines(worker)
    db = pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    cut = sa.text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :d "
        "AND pid <> pg_backend_pid()"
    )
    try:
        ckpt = _wait_for(lambda: _checkpoint(artifacts, "outage", 0).is_file(), "checkpoint", [worker])
        assert ckpt and json.loads(_checkpoint(artifacts, "outage", 0).read_text())["epoch"] < 10
        with admin.connect() as c:  # trial 0 is mid-way: it cannot end without the database
            c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false'))
            assert c.execute(cut, {"d": db}).scalar() >= 1
        start = time.monotonic()
        _wait_for(lambda: lines.find("study storage unreachable"), "the worker's outage message", [worker])
        time.sleep(max(0.0, 15 - (time.monotonic() - start)))  # the outage: 15 s
        assert worker.poll() is None, lines.text()
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
        _wait_for(lambda: lines.find("study storage reachable again"), "the worker's recovery", [worker])
        for _ in range(8):  # then a storm: its connections cut every half second for 4 s
            with admin.connect() as c:
                c.execute(cut, {"d": db})
            time.sleep(0.5)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()
    worker.wait(timeout=300)
    err = lines.text()
    assert worker.returncode == 0, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "study storage unreachable" in line]
    assert len(said) == 1 and "trial 0" in said[0], err  # said once, about the trial it hit
    trials = optuna.load_study(study_name="outage", storage=open_storage(pg_url)).get_trials()
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counted = counted_among(trials)
    assert len(counted) == 2 and all(t.state == TrialState.COMPLETE for t in counted), [
        (t.number, t.state) for t in trials
    ]
    # trial 0 went on where it was (or, re-queued, its copy resumed): no epoch was lost or repeated
    first = next(t for t in counted if t.number == 0 or 0 in t.system_attrs.get("retry_history", []))
    assert len(first.user_attrs["uar_per_epoch"]) == 10


# ---- the pieces on their own ----


def test_timing_comes_from_the_environment_and_is_checked(monkeypatch):
    monkeypatch.setenv("FERSEARCH_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("FERSEARCH_GRACE_PERIOD", "7.5")
    assert (timing().interval, timing().grace) == (2.0, 7.5)
    monkeypatch.setenv("FERSEARCH_GRACE_PERIOD", "2")
    with pytest.raises(InvalidArgument, match="FERSEARCH_GRACE_PERIOD .* must be longer"):
        timing()
    monkeypatch.setenv("FERSEARCH_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(InvalidArgument, match="FERSEARCH_HEARTBEAT_INTERVAL must be a number"):
        timing()
    monkeypatch.delenv("FERSEARCH_HEARTBEAT_INTERVAL")
    monkeypatch.delenv("FERSEARCH_GRACE_PERIOD")
    assert (timing().interval, timing().grace) == (20.0, 60.0)


def test_fractional_or_bad_timings_reach_the_database_storage_as_numbers_or_one_error(monkeypatch, pg_url):
    from fersearch.search.storage import open_storage

    monkeypatch.setenv("FERSEARCH_HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("FERSEARCH_GRACE_PERIOD", "9.5")
    storage = open_storage(pg_url, heartbeat=True)  # read when opened: no crash on import
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 10)
    monkeypatch.setenv("FERSEARCH_GRACE_PERIOD", "inf")
    with pytest.raises(InvalidArgument, match="FERSEARCH_GRACE_PERIOD must be a finite number"):
        open_storage(pg_url, heartbeat=True)


def _running_since(study: optuna.Study, seconds_ago: float) -> optuna.trial.FrozenTrial:
    """A RUNNING trial whose worker was last heard of ``seconds_ago``."""
    t = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        user_attrs={"checkpoint_dir": "/nowhere", "seed": 3},
    )
    t.datetime_start = datetime.datetime.now() - datetime.timedelta(seconds=seconds_ago)
    study.add_trial(t)
    return study.get_trials()[-1]


def test_sweeping_fails_a_stale_trial_once_and_queues_one_copy(tmp_path):
    from conftest import TINY_SPACE

    from fersearch.config import DataConfig
    from fersearch.search.space import parse_space
    from fersearch.search.study import create_study

    url = f"journal:{tmp_path / 'j.log'}"
    study, _ = create_study("s", parse_space(TINY_SPACE, "t"), DataConfig(root=str(tmp_path)), None, url)
    stale = _running_since(study, 100)
    alive = _running_since(study, 100)
    storage_of(study).set_trial_system_attr(trial_id(alive), attrs.HEARTBEAT, time.time())  # it beat
    # two workers sweeping, one after the other, each with its own storage
    others = [optuna.load_study(study_name="s", storage=open_storage(url)) for _ in range(2)]
    lines = study_status(others[0]).lines()
    assert "running trials: 0 (heartbeat 100 s ago), 1 (heartbeat 0 s ago)" in lines, lines
    results = [sweep_stale_trials(s, grace=60) for s in others]
    assert sorted(len(r) for r in results) == [0, 1]  # one of them failed it
    (swept,) = results[0] + results[1]
    assert swept.number == stale.number and swept.requeued and swept.silent_s >= 100
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    copy = trials[2]
    assert copy.params == stale.params and copy.system_attrs["retry_history"] == [stale.number]
    assert copy.user_attrs["checkpoint_dir"] == "/nowhere"  # so the copy resumes from its checkpoint
    assert sweep_stale_trials(study, grace=60) == []  # nothing left to do


def test_a_worker_whose_trial_was_failed_elsewhere_learns_it_from_its_heartbeat(tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    trial = study.ask()
    sweeper = optuna.load_study(study_name="s", storage=open_storage(url))
    with Heartbeat(study, trial, 0.1, StoreHealth()) as beat:
        first = study.get_trials()[0].system_attrs[attrs.HEARTBEAT]
        assert time.time() - first < 5  # beats from the start
        beat.check()  # alive
        storage_of(sweeper).set_trial_state_values(trial_id(trial), TrialState.FAIL)  # "stale" elsewhere
        _wait_for(lambda: beat.lost, "the heartbeat to notice")
        with pytest.raises(TrialLost):
            beat.check()


@pytest.mark.postgres
def test_an_outage_is_ridden_out_and_reported_once_a_minute(pg_url):
    messages: list[str] = []
    health = StoreHealth(messages.append)
    engine = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres")
    refused = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/x")  # nothing listens
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:  # three refused connections, then the database is back
            with refused.connect():
                pass
        with engine.connect() as c:
            return c.execute(sa.text("SELECT 41 + 1")).scalar()

    assert health.ride_out(flaky, "testing") == 42
    assert len(calls) == 4
    assert len(messages) == 2 and "unreachable" in messages[0] and "while testing" in messages[0]
    assert "reachable again" in messages[1]
    assert not health.settled(grace=60)  # just back: other workers' heartbeats are not judged yet
    assert health.settled(grace=0.0)
    # an error that is not a lost connection is raised at once
    with pytest.raises(sa.exc.ProgrammingError):
        health.ride_out(lambda: engine.connect().execute(sa.text("SELECT nothing_here")), "testing")
    assert len(messages) == 2
    limited = StoreHealth(messages.append, limit=0.0)
    with pytest.raises(StorageError, match="unreachable for"):
        limited.ride_out(lambda: refused.connect(), "giving up")
    assert not is_transient(optuna.exceptions.StorageInternalError("exceeding max length"))
    engine.dispose()
    refused.dispose()


@pytest.mark.postgres
def test_heartbeat_sweep_and_outage_through_the_grpc_proxy(pg_url, tmp_path):
    """The same mechanism through `fersearch storage-proxy` in front of PostgreSQL."""
    import socket

    from conftest import TINY_SPACE
    from test_service import _free_port, _start_storage_proxy

    from fersearch.config import DataConfig
    from fersearch.search.space import parse_space
    from fersearch.search.study import create_study

    port = _free_port()
    proxy = _start_storage_proxy(pg_url, port, stdout=subprocess.DEVNULL)
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    db = pg_url.rsplit("/", 1)[1]
    try:

        def answers() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(answers, "the proxy", [proxy], 60)
        url = f"grpc://127.0.0.1:{port}"
        study, _ = create_study("g", parse_space(TINY_SPACE, "t"), DataConfig(root=str(tmp_path)), None, url)
        stale = _running_since(study, 100)
        trial = study.ask()
        with Heartbeat(study, trial, 0.1, StoreHealth()) as beat:
            assert attrs.HEARTBEAT in study.get_trials()[trial.number].system_attrs
            swept = sweep_stale_trials(optuna.load_study(study_name="g", storage=open_storage(url)), grace=60)
            assert [(s.number, s.requeued) for s in swept] == [(stale.number, True)]  # not the beating one
            assert study.get_trials()[-1].system_attrs["retry_history"] == [stale.number]
            storage_of(study).set_trial_state_values(trial_id(trial), TrialState.FAIL)  # failed elsewhere
            _wait_for(lambda: beat.lost, "the heartbeat to notice")

        # the database behind the proxy refusing connections: ridden out until it is back
        running = study.ask()
        said = threading.Event()
        messages: list[str] = []
        health = StoreHealth(lambda m: (messages.append(m), said.set()))
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false'))
            terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
            c.execute(sa.text(terminate), {"d": db})

        def end_outage() -> None:  # once the caller has met the outage
            said.wait(timeout=60)
            with admin.connect() as c:
                c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))

        ender = threading.Thread(target=end_outage)
        ender.start()
        write = lambda: storage_of(study).set_trial_system_attr(trial_id(running), "k", 1)  # noqa: E731
        health.ride_out(write, "testing")
        ender.join(timeout=60)
        assert len(messages) == 2 and "unreachable" in messages[0] and "reachable again" in messages[1]
        assert study.get_trials()[running.number].system_attrs["k"] == 1
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()
        proxy.terminate()
        proxy.communicate(timeout=30)
