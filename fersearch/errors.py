"""Errors a user can act on.

Every message says what was received, what is valid, and what to do next. The CLI prints
``FersearchError`` as one line on stderr and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class FersearchError(Exception):
    """Base class: an error caused by input the user can fix."""


class InvalidArgument(FersearchError):
    """A command-line argument or function argument is outside its valid range."""


class DataError(FersearchError):
    """A dataset directory is missing, unreadable, or not in a known layout."""


class SearchSpaceError(FersearchError):
    """A search-space file is malformed (unknown key, low > high, unknown choice...)."""


class ConfigError(FersearchError):
    """A trial configuration is invalid."""


class StorageError(FersearchError):
    """The study storage cannot be reached or opened."""


class StudyNotFound(FersearchError):
    """The named study does not exist in the storage."""


class ModelError(FersearchError):
    """A backbone, head or weights file cannot be created or loaded."""


class TrialsFailing(FersearchError):
    """Trials failed one after another in one worker: the cause is not one trial's."""


def one_of(received: object, valid, limit: int = 20) -> str:
    """Format 'got X; valid: a, b, c' for messages, truncating long lists."""
    valid = list(valid)
    shown = ", ".join(map(str, valid[:limit]))
    if len(valid) > limit:
        shown += f", ... ({len(valid) - limit} more)"
    return f"got {received!r}; valid: {shown}"
