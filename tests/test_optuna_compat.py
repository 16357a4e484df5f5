"""One test per use of Optuna's private API (fersearch/search/optuna_compat.py), against the
installed Optuna, on the embedded journal store workers use by default."""

from __future__ import annotations

import optuna

from fersearch.search.optuna_compat import frozen_at_ask, storage_of, trial_id
from fersearch.search.storage import open_storage


def _study(tmp_path) -> optuna.Study:
    return optuna.create_study(study_name="c", storage=open_storage(f"journal:{tmp_path / 'j.log'}"))


def test_storage_of_is_the_storage_the_study_writes_to(tmp_path):
    study = _study(tmp_path)
    storage = storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    trial = study.ask()
    storage.set_trial_system_attr(trial_id(trial), "k", 1)
    assert study.get_trials()[0].system_attrs["k"] == 1


def test_trial_id_of_a_live_and_a_frozen_trial_names_the_same_stored_trial(tmp_path):
    study = _study(tmp_path)
    study.ask()
    trial = study.ask()
    frozen = study.get_trials()[1]
    assert trial_id(trial) == trial_id(frozen)
    assert storage_of(study).get_trial(trial_id(trial)).number == trial.number == 1


def test_frozen_at_ask_is_the_trial_as_ask_read_it_without_a_round_trip(tmp_path):
    study = _study(tmp_path)
    study.enqueue_trial({"x": 0.5})
    trial = study.ask()
    calls = []
    storage = storage_of(study)
    original = storage.get_trial
    storage.get_trial = lambda *a: calls.append(a) or original(*a)
    frozen = frozen_at_ask(study, trial)
    assert calls == []  # Optuna still keeps it on the Trial
    assert frozen.number == trial.number and frozen.system_attrs["fixed_params"] == {"x": 0.5}
