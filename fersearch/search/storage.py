"""Where studies live: an embedded journal file by default, any SQLAlchemy URL otherwise.

Resolution order: ``--storage``, then ``$FERSEARCH_STORAGE``, then the embedded default
``./.fersearch/journal.log``. The embedded store is Optuna's JournalFileBackend: an append-only
log with file locking, so several local worker processes share one study without the lock errors
SQLite gives under concurrent writers. ``postgresql+psycopg2://`` (or any SQLAlchemy URL) gives
an RDBStorage with pre-ping, a small pool and a connect timeout. Passwords never reach a log
line or an error message: use ``mask_url``.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from ..errors import StorageError

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
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# A worker proves it is alive every HEARTBEAT_S; a trial silent for GRACE_S is failed and
# re-queued with the same parameters (RDB storages only: Optuna's journal has no heartbeat).
HEARTBEAT_S = int(os.environ.get("FERSEARCH_HEARTBEAT_INTERVAL", "20"))
GRACE_S = int(os.environ.get("FERSEARCH_GRACE_PERIOD", "60"))
MAX_RETRY = 3


def open_storage(url: str | None = None, heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """Open the storage a URL names. ``heartbeat=True`` is for workers: trials of a killed
    worker are then retried (and resume from their checkpoint) instead of staying RUNNING."""
    url = resolve_url(url)
    if url.startswith("journal:"):
        return _open_journal(Path(url.removeprefix("journal:")))
    if url.startswith("grpc://"):
        return _open_grpc(url)
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
        beat = {
            "heartbeat_interval": HEARTBEAT_S,
            "grace_period": GRACE_S,
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
            f"cannot open study storage {mask_url(url)}: {mask_url(reason)}. Check the server is "
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


def _open_journal(path: Path) -> JournalStorage:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open(2)-based lock works on any local filesystem (the symlink lock needs
        # symlink support, which some shared mounts lack).
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    except OSError as exc:
        raise StorageError(
            f"cannot open the embedded study store {str(path)!r}: {exc.strerror}; pass "
            f"--storage with a writable path or a database URL"
        ) from None
    return JournalStorage(backend)


def _open_grpc(url: str) -> optuna.storages.BaseStorage:
    """grpc://host:port: a `fersearch storage-proxy` in front of the database."""
    hostport = url.removeprefix("grpc://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StorageError(f"storage URL {url!r} must look like grpc://HOST:PORT")
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError:
        raise StorageError("grpc:// storage needs grpcio: `pip install grpcio protobuf`") from None
    return GrpcStorageProxy(host=host, port=int(port))
