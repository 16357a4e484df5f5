"""Every use of Optuna's private API in fersearch's search package, in one place.

Optuna gives no public way to reach a study's storage object or a trial's storage id, and the
liveness mechanism (fersearch/search/liveness.py) and the trial budget (budget.py) need both: a
heartbeat is a system attribute written by trial id, and a stale trial is failed by id. Each
function here names the private attribute it reads; tests/test_optuna_compat.py checks each one
against the installed Optuna, so an upgrade that renames one fails there, not in a worker.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes (``Study._storage``)."""
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (``Trial._trial_id`` / ``FrozenTrial._trial_id``), as opposed
    to its number within the study."""
    return trial._trial_id


def frozen_at_ask(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as ``ask()`` read it (``Trial._cached_frozen_trial``, no round trip); read from
    the storage when an Optuna version no longer keeps it."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    return cached if cached is not None else storage_of(study).get_trial(trial_id(trial))
