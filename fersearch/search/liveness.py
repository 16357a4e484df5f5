"""Liveness: a killed worker's trial is retried, and a worker rides out a storage outage.

Optuna's own heartbeat exists only for RDB storages and runs only under ``study.optimize``
(optuna#3293); Optuna 5.0's JournalStorage, fersearch's default store, has none. So fersearch
keeps its own, on every store it offers (journal file, PostgreSQL, the gRPC proxy), through
nothing but the storage's trial attributes:

- while a worker runs a trial, a background thread (``Heartbeat``) writes the wall-clock time
  into the trial's system attribute ``fersearch:heartbeat`` every
  ``$FERSEARCH_HEARTBEAT_INTERVAL`` seconds (default 20);
- a RUNNING trial whose last sign of life (that attribute, or its start time if later) is more
  than ``$FERSEARCH_GRACE_PERIOD`` seconds old (default 60) is stale: any worker, between two
  trials, and ``fersearch status`` fail it and re-queue a copy with Optuna's
  ``RetryHeartbeatStaleTrialCallback`` (same parameters, user attributes and so checkpoint
  directory, ``retry_history``; at most ``MAX_RETRY`` times). The copy resumes from the dead
  trial's last checkpoint. Failing is first-come: the storage lets one worker end a trial, the
  others get ``UpdateFinishedTrialError`` and leave it alone;
- a worker that finds its own trial failed that way (its heartbeat was late: a storage outage,
  a stalled host) stops training it (``TrialLost``); the copy goes on from the checkpoint.

The hosts' clocks must agree to well within the grace period (NTP does).

Storage outages: every storage call a worker makes goes through ``StoreHealth.ride_out``, which
retries a dropped or refused connection with backoff for up to ``OUTAGE_LIMIT_S``, says so once
a minute, and says when the storage is back. A worker that has just seen an outage does not
judge other workers' heartbeats until a grace period after it ended: they were cut off too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ..errors import InvalidArgument, StorageError
from . import attrs
from .optuna_compat import storage_of, trial_id

INTERVAL_ENV = "FERSEARCH_HEARTBEAT_INTERVAL"
GRACE_ENV = "FERSEARCH_GRACE_PERIOD"
OUTAGE_LIMIT_S = 30 * 60.0  # a worker gives up after this long without its storage
REPORT_EVERY_S = 60.0  # an outage is reported once a minute
MAX_BACKOFF_S = 10.0

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    interval: float  # seconds between heartbeats
    grace: float  # a trial silent for longer is stale


MAX_RETRY = 3  # a trial whose workers keep dying is re-queued at most this often


def env_seconds(env: str, default: float) -> float:
    """A duration in seconds from an environment variable (read when called, so a bad value is
    one clear error where it is used, not a crash on import)."""
    raw = os.environ.get(env, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise InvalidArgument(f"{env} must be a number of seconds (got {raw!r})") from None
    if not 0 < value < float("inf"):
        raise InvalidArgument(f"{env} must be a finite number of seconds above 0 (got {raw!r})")
    return value


def timing() -> Timing:
    """The heartbeat interval and grace period from the environment (read on every call)."""
    interval, grace = env_seconds(INTERVAL_ENV, 20.0), env_seconds(GRACE_ENV, 60.0)
    if grace <= interval:
        raise InvalidArgument(
            f"{GRACE_ENV} ({grace:g} s) must be longer than {INTERVAL_ENV} ({interval:g} s), "
            f"or a live worker's trial would be taken for dead; e.g. three intervals"
        )
    return Timing(interval, grace)


class TrialLost(Exception):
    """This worker's trial was failed as stale (by another worker or `status`) and re-queued:
    stop training it; the copy resumes from its checkpoint."""


def is_transient(exc: BaseException | None) -> bool:
    """A dropped, refused or timed-out storage connection (worth waiting for), as opposed to a
    bad request or an error in fersearch."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
            return True
        if _grpc_unavailable(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _grpc_unavailable(exc: BaseException) -> bool:
    try:
        import grpc
    except ImportError:
        return False
    if not isinstance(exc, grpc.RpcError) or not hasattr(exc, "code"):
        return False
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return True  # the proxy is down or cut off
    # The proxy maps a finished trial, a missing one and a bad value to their own codes; what it
    # does not map arrives as UNKNOWN without its cause: measured, its database refusing
    # connections arrives so ("Exception calling application: An exception is raised during
    # the commit...").
    details = exc.details() if hasattr(exc, "details") else ""
    return exc.code() == grpc.StatusCode.UNKNOWN and "Exception calling application" in (details or "")


class StoreHealth:
    """One per worker process: rides out storage outages and tells the user about them, once
    a minute, whichever thread (training, heartbeat) meets them."""

    def __init__(self, say: Callable[[str], None] | None = None, limit: float = OUTAGE_LIMIT_S):
        self.say = say or (lambda message: log.warning("%s", message))
        self.limit = limit
        self._lock = threading.Lock()
        self._down_since: float | None = None  # monotonic time of the first failure
        self._told = False  # the current outage was reported
        self._back_at: float | None = None  # monotonic time the last outage ended
        self._last_said = -REPORT_EVERY_S  # a storm of short cuts is reported once a minute too

    def failed(self, exc: BaseException, what: str) -> float:
        """Note a transient failure; returns how long the storage has been unreachable."""
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since, self._told = now, False
            down = now - self._down_since
            if now - self._last_said >= REPORT_EVERY_S:
                cause = _first_line(exc)
                if self._told:
                    message = f"study storage still unreachable after {down:.0f} s ({cause}); retrying"
                else:
                    message = f"study storage unreachable ({cause}) while {what}; retrying with backoff"
                self._told, self._last_said = True, now
                self.say(message)
        return down

    def ok(self) -> None:
        """Note a storage call that worked."""
        if self._down_since is None:  # the common case, without the lock
            return
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                return
            down, told = now - self._down_since, self._told
            self._down_since, self._back_at = None, now
        if told:
            self.say(f"study storage reachable again after {down:.0f} s; going on")

    def settled(self, grace: float) -> bool:
        """No outage now and none ended within ``grace`` seconds: other workers' heartbeats can
        be judged (during and just after an outage they could not beat either)."""
        with self._lock:
            if self._down_since is not None:
                return False
            return self._back_at is None or time.monotonic() - self._back_at >= grace

    def ride_out(self, call: Callable[[], T], what: str, stop: Callable[[], bool] | None = None) -> T:
        """``call()``, again and again with backoff while the storage is unreachable, up to
        ``limit`` seconds (then StorageError) or until ``stop()`` says the worker is stopping."""
        delay = 0.5
        while True:
            try:
                result = call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                down = self.failed(exc, what)
                if down > self.limit:
                    raise StorageError(
                        f"the study storage has been unreachable for {down / 60:.0f} min "
                        f"({_first_line(exc)}); giving up while {what}. A trial left RUNNING is "
                        f"re-queued from its checkpoint once its heartbeat is stale"
                    ) from None
                _sleep(delay, stop)
                if stop is not None and stop():
                    raise StorageError(
                        f"stopped while the study storage was unreachable ({what}); a trial left "
                        f"RUNNING is re-queued from its checkpoint once its heartbeat is stale"
                    ) from None
                delay = min(MAX_BACKOFF_S, delay * 2)
                continue
            self.ok()
            return result


def _first_line(exc: BaseException) -> str:
    inner = exc
    while inner.__cause__ is not None:  # optuna wraps the driver's error: show the driver's
        inner = inner.__cause__
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


def _sleep(seconds: float, stop: Callable[[], bool] | None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop is not None and stop()):
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


class Heartbeat:
    """Refreshes ``fersearch:heartbeat`` on one running trial from a daemon thread.

    ``lost`` turns True when the storage refuses a beat because the trial has ended: some other
    process failed it as stale. The training loop polls ``check()``."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float, health: StoreHealth):
        self.storage = storage_of(study)
        self.trial_id = trial_id(trial)
        self.number = trial.number
        self.interval = interval
        self.health = health
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.number}", daemon=True)

    def beat(self) -> None:
        self.storage.set_trial_system_attr(self.trial_id, attrs.HEARTBEAT, time.time())

    def __enter__(self) -> Heartbeat:
        try:
            self.health.ride_out(self.beat, f"starting trial {self.number}")
        except UpdateFinishedTrialError:
            self.lost = True
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        if self.lost:
            raise TrialLost(f"trial {self.number}")

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait) and not self.lost:
            try:
                self.beat()
            except UpdateFinishedTrialError:
                if not self._stop.is_set():
                    self.lost = True
                return
            except Exception as exc:
                if self._stop.is_set():
                    return
                if is_transient(exc):
                    self.health.failed(exc, f"sending trial {self.number}'s heartbeat")
                    wait = min(self.interval, 2.0)  # beat again as soon as the storage is back
                else:
                    log.warning("trial %s: heartbeat not sent: %s", self.number, _first_line(exc))
                    wait = self.interval
                continue
            self.health.ok()
            wait = self.interval


def last_sign_of_life(t: FrozenTrial) -> float:
    """Wall-clock time of a trial's last heartbeat, or of its start if later (a re-queued copy
    inherits the dead trial's system attributes, its heartbeat among them)."""
    beat = t.system_attrs.get(attrs.HEARTBEAT)
    start = t.datetime_start.timestamp() if t.datetime_start is not None else 0.0
    return max(float(beat) if isinstance(beat, (int, float)) else 0.0, start)


def stale_trials(trials, grace: float, now: float | None = None) -> list[FrozenTrial]:
    """The RUNNING trials among ``trials`` silent for more than ``grace`` seconds."""
    now = time.time() if now is None else now
    return [t for t in trials if t.state == TrialState.RUNNING and now - last_sign_of_life(t) > grace]


@dataclass(frozen=True)
class Swept:
    number: int
    silent_s: float  # seconds since its last sign of life
    requeued: bool  # False: it was retried MAX_RETRY times already


def sweep_stale_trials(
    study: optuna.Study, health: StoreHealth | None = None, grace: float | None = None
) -> list[Swept]:
    """Fail every stale trial of the study and re-queue a copy that resumes from its checkpoint.
    Several processes may sweep at once: the storage lets one of them fail each trial."""
    grace = timing().grace if grace is None else grace
    health = health or StoreHealth()
    if not health.settled(grace):
        return []
    running = health.ride_out(
        lambda: study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), "looking for stale trials"
    )
    swept = []
    for candidate in stale_trials(running, grace):
        done = health.ride_out(lambda c=candidate: _fail_if_stale(study, c, grace), "failing a stale trial")
        if done is None:
            continue
        failed, silent = done
        requeued = health.ride_out(lambda f=failed: _requeue(study, f), f"re-queuing trial {failed.number}")
        swept.append(Swept(failed.number, silent, requeued))
    return swept


def _fail_if_stale(study: optuna.Study, t: FrozenTrial, grace: float) -> tuple[FrozenTrial, float] | None:
    storage = storage_of(study)
    fresh = storage.get_trial(trial_id(t))  # read again just before: it may have beaten since
    if not stale_trials([fresh], grace):
        return None
    silent = time.time() - last_sign_of_life(fresh)
    try:
        if not storage.set_trial_state_values(trial_id(t), TrialState.FAIL):
            return None
    except UpdateFinishedTrialError:
        return None  # another process failed it first, or it has just finished
    return storage.get_trial(trial_id(t)), silent


def _requeue(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Optuna's retry callback, made safe to call again after a dropped connection: it adds no
    second copy when the first one got through."""
    for t in study.get_trials(deepcopy=False):
        if failed.number in t.system_attrs.get(attrs.RETRY_HISTORY, ()):
            return True
    if len(failed.system_attrs.get(attrs.RETRY_HISTORY, ())) >= MAX_RETRY:
        return False
    with warnings.catch_warnings():  # "experimental since v2.8": noise in a worker's log
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY, inherit_intermediate_values=True)
    retry(study, failed)
    return True
