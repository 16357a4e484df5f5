"""Where studies live: an embedded journal file by default, any SQLAlchemy URL otherwise.

Resolution order: ``--storage``, then ``$FERSEARCH_STORAGE``, then the embedded default
``./.fersearch/journal.log``. The embedded store is Optuna's JournalFileBackend: an append-only
log with file locking, so several local worker processes share one study without the lock errors
SQLite gives under concurrent writers. ``postgresql+psycopg2://`` (or any SQLAlchemy URL) gives
an RDBStorage with pre-ping, a small pool and a connect timeout. Passwords never reach a log
line or an error message: use ``mask_url``.

A journal is checked when it is opened: a record that is not JSON, one Optuna cannot replay, or a
last record cut off mid-write (a crash or a full disk; Optuna would skip it silently and the trial
it was about would show the wrong state, then glue the next write onto it) is a StorageError
naming the file and line and the command that repairs it. ``grpc://`` waits a bounded time for
the proxy to answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from ..errors import StorageError
from .liveness import MAX_RETRY, env_seconds, timing

ENV_VAR = "FERSEARCH_STORAGE"
DEFAULT_JOURNAL = Path(".fersearch") / "journal.log"


def resolve_url(url: str | None) -> str:
    url = url or os.environ.get(ENV_VAR) or ""
    if not url:
        return f"journal:{DEFAULT_JOURNAL}"
    if "://" not in url and not url.startswith("journal:"):
        return f"journal:{url}"  # a bare path is a journal file
    return url


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db. Everything between
    ``://user:`` and the *last* '@' is masked: a password may itself contain '@' (or ':')."""
    return re.sub(r"(://[^:/\s]*:).*@", r"\1***@", url)


def _password(url: str) -> str:
    """What ``mask_url`` hides: the text between ``://user:`` and the last '@' ('' if none)."""
    m = re.search(r"://[^:/\s]*:(.*)@", url)
    return m.group(1) if m else ""


def _scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) with the URL masked and no piece of its password:
    a driver that split the URL at another '@' echoes the rest as a host name."""
    text = mask_url(text)
    for piece in sorted(re.split(r"[@:/]", _password(url)), key=len, reverse=True):
        if len(piece) >= 3:
            text = text.replace(piece, "***")
    return text


def open_storage(url: str | None = None, heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """Open the storage a URL names. ``heartbeat=True`` is for workers: trials of a killed
    worker are then retried (and resume from their checkpoint) instead of staying RUNNING."""
    url = resolve_url(url)
    if url.startswith("journal:"):
        return _open_journal(Path(url.removeprefix("journal:")))
    if url.startswith("grpc://"):
        return _open_grpc(url)
    if "@" in _password(url):
        # SQLAlchemy splits user:pass@host at the first '@': the password's tail would become
        # the host name, and the driver's error would print it.
        raise StorageError(
            f"the password in the storage URL {mask_url(url)} contains '@': percent-encode it "
            f"('@' -> %40, ':' -> %3A, '/' -> %2F), e.g. in Python urllib.parse.quote(password, safe='')"
        )
    if url.startswith("sqlite"):
        engine_kwargs: dict = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {
            "pool_pre_ping": True,  # not on by default: stale connections after a DB restart
            "pool_size": 2,  # PostgreSQL allows 100 connections; many workers share them
            "max_overflow": 2,
        }
        if url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    beat = {}
    if heartbeat:
        # Heartbeats have been "experimental" in Optuna since 2.x; the warning is noise here.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # On a database, Optuna's own heartbeat runs beside fersearch's (liveness.py, every
        # store): both with the same interval and grace period, and the same retry limit.
        beat_timing = timing()
        beat = {
            "heartbeat_interval": max(1, round(beat_timing.interval)),
            "grace_period": max(2, round(beat_timing.grace)),
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY, inherit_intermediate_values=True
            ),
        }
    try:
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
            except Exception as exc:
                # Opening runs several statements; a connection cut meanwhile is transient.
                if attempt == CONNECT_ATTEMPTS - 1 or not lost_connection(exc):
                    raise
                time.sleep(2.0**attempt)
    except Exception as exc:  # sqlalchemy raises OperationalError, ArgumentError, ImportError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"cannot open study storage {mask_url(url)}: {_scrub(reason, url)}. Check the server is "
            f"running and the URL (postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB), or omit "
            f"--storage to use the embedded store {DEFAULT_JOURNAL}"
        ) from None


CONNECT_ATTEMPTS = 4


def lost_connection(exc: BaseException | None) -> bool:
    """True when an open connection was dropped (database restart, pg_terminate_backend): worth
    a retry. A server that refuses to connect, or a wrong URL, is not."""
    while exc is not None:
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _LineCountingJournal(JournalFileBackend):
    """Optuna's journal file, remembering which line it read last, so that a record it cannot
    decode or replay is reported by its line number."""

    def __init__(self, path: str, lock_obj) -> None:
        super().__init__(path, lock_obj=lock_obj)
        self.line = 0  # 1-based number of the last record handed to the replay
        self.undecodable: int | None = None  # line of a record that is not JSON

    def read_logs(self, log_number_from: int):
        self.line = log_number_from
        logs = super().read_logs(log_number_from)
        while True:
            try:
                log = next(logs)
            except StopIteration:
                return
            except ValueError:  # JSONDecodeError, UnicodeDecodeError: raised one line late
                self.undecodable = self.line + 1
                raise
            self.line += 1
            yield log


def _open_journal(path: Path) -> JournalStorage:
    fix = "pass --storage with a writable file path or a database URL"
    if path.is_dir():
        raise StorageError(
            f"the study journal {str(path)!r} is a directory; {fix} (e.g. {path / 'journal.log'})"
        )
    if path.exists() and not path.is_file():
        raise StorageError(f"the study journal {str(path)!r} is not a regular file; {fix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open(2)-based lock works on any local filesystem (the symlink lock needs
        # symlink support, which some shared mounts lack).
        lock = JournalFileOpenLock(str(path))
        backend = _LineCountingJournal(str(path), lock)
    except OSError as exc:
        raise StorageError(
            f"cannot open the embedded study store {str(path)!r}: {exc.strerror}; {fix}"
        ) from None
    try:
        storage = JournalStorage(backend)
    except Exception as exc:  # a record Optuna cannot decode or apply: KeyError, TypeError...
        if backend.undecodable is not None:
            line, what = backend.undecodable, "is not a JSON journal record"
        else:
            line = max(backend.line, 1)
            what = f"is a record Optuna cannot replay ({type(exc).__name__}: {str(exc)[:80]})"
        raise StorageError(_damaged(path, line, what)) from None
    try:
        _check_journal_tail(path, lock)
    except OSError as exc:
        raise StorageError(f"cannot read the study journal {str(path)!r}: {exc.strerror}; {fix}") from None
    return storage


def _check_journal_tail(path: Path, lock) -> None:
    """The last record must be complete: Optuna skips a cut-off last line without a word (its
    trial then shows a stale state) and glues the next write onto it. Checked under the
    journal's lock, so a write in progress is not mistaken for damage."""
    if path.stat().st_size == 0:
        return
    lock.acquire()
    try:
        with open(path, "rb") as fh:
            tail = _last_line(fh)
    finally:
        lock.release()
    if not tail:
        return
    if not tail.endswith(b"\n"):
        raise StorageError(
            _damaged(
                path,
                _count_lines(path) + 1,
                f"is an incomplete last record ({len(tail)} bytes without a newline: a process "
                f"or the disk stopped in the middle of a write)",
            )
        )
    try:
        record = json.loads(tail)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        raise StorageError(
            _damaged(path, _count_lines(path), f"is not a journal record (it reads {tail[:40]!r})")
        )


def _last_line(fh) -> bytes:
    """The bytes of a file's last line (with its newline, if it has one), read from the end."""
    end = fh.seek(0, os.SEEK_END)
    pos, chunk = end, b""
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        fh.seek(pos)
        chunk = fh.read(step) + chunk
        cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
        if cut >= 0:
            return chunk[cut + 1 :]
    return chunk


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def _damaged(path: Path, line: int, what: str) -> str:
    if line <= 1:
        return (
            f"{str(path)!r} is not an Optuna study journal: line 1 {what}. Nothing was changed. "
            f"Point --storage at the study's journal file (default {DEFAULT_JOURNAL}), or at a "
            f"new file to start afresh"
        )
    q, keep = shlex.quote(str(path)), line - 1
    after = _count_lines(path) - line
    lost = f"; the {after} record(s) after it are dropped too, rerun what they recorded" if after > 0 else ""
    return (
        f"the study journal {str(path)!r} is damaged: line {line} {what}. Nothing was changed. "
        f"To repair it, stop every worker, then keep the {keep} record(s) before that line{lost}: "
        f"`head -n {keep} {q} > {q}.repaired && mv {q} {q}.damaged && mv {q}.repaired {q}`"
    )


def _open_grpc(url: str) -> optuna.storages.BaseStorage:
    """grpc://host:port: a `fersearch storage-proxy` in front of the database."""
    hostport = url.removeprefix("grpc://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise StorageError(f"storage URL {url!r} must look like grpc://HOST:PORT (port 1-65535)")
    wait_s = env_seconds(GRPC_TIMEOUT_ENV, 10.0)
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError:
        raise StorageError("grpc:// storage needs grpcio: `pip install grpcio protobuf`") from None
    with warnings.catch_warnings():  # "experimental since 4.2": noise on every worker start
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = GrpcStorageProxy(host=host, port=int(port))
    try:
        # Optuna's client calls have no deadline: without this wait, a closed port raises deep
        # inside the first call and a silent one hangs forever.
        proxy.wait_server_ready(timeout=wait_s)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            f"no storage proxy answered at {url} within {wait_s:g} s; start one on "
            f"that host with `fersearch storage-proxy --storage DATABASE_URL`, check the host, port "
            f"and any SSH tunnel, or omit --storage to use the embedded store {DEFAULT_JOURNAL}"
        ) from None
    return proxy


GRPC_TIMEOUT_ENV = "FERSEARCH_GRPC_CONNECT_TIMEOUT"
