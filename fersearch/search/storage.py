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
from pathlib import Path

import optuna
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


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    url = resolve_url(url)
    if url.startswith("journal:"):
        return _open_journal(Path(url.removeprefix("journal:")))
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
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, skip_compatibility_check=False)
    except Exception as exc:  # sqlalchemy raises OperationalError, ArgumentError, ImportError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"cannot open study storage {mask_url(url)}: {mask_url(reason)}. Check the server is "
            f"running and the URL (postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB), or omit "
            f"--storage to use the embedded store {DEFAULT_JOURNAL}"
        ) from None


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
