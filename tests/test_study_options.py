"""`create` and `search` hand their study options to the library as one StudyOptions, matched by
name: an option renamed on one side would otherwise silently fall back to its default."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from fersearch.commands._common import study_options
from fersearch.commands.search import search
from fersearch.commands.service import create
from fersearch.errors import InvalidArgument
from fersearch.search.api import StudyOptions
from fersearch.search.study import load_study, make_pruner, make_sampler

CLI_FIELDS = {f.name for f in dataclasses.fields(StudyOptions)} - {"name", "val_fraction"}  # (demo only)


@pytest.mark.parametrize("command", [create, search])
def test_create_and_search_take_every_study_option_under_its_field_name(command):
    params = set(inspect.signature(command).parameters)
    assert CLI_FIELDS <= params, f"{command.__name__} lacks {sorted(CLI_FIELDS - params)}"
    arguments = {p: f"value of {p}" for p in params}
    options = study_options(arguments)
    assert options.name == "value of study"
    assert all(getattr(options, f) == f"value of {f}" for f in CLI_FIELDS)


def test_bad_data_options_are_one_clear_error(tmp_path):
    with pytest.raises(
        InvalidArgument, match="invalid data options: fold must be in 0..2 for folds=3, got 5"
    ):
        StudyOptions("s", tmp_path, folds=3, fold=5).data_config()


def test_load_study_returns_the_settings_it_parsed(tmp_path, tiny_data, tiny_space):
    from fersearch.search.api import create_or_join

    url = f"journal:{tmp_path / 'j.log'}"
    create_or_join(StudyOptions("s", tiny_data, str(tiny_space), url, n_trials=3, val_fraction=0.2))
    study, cfg = load_study("s", url)
    assert study.study_name == "s" and cfg.n_trials == 3
    assert cfg.data.val_fraction == 0.2 and cfg.data.root == str(tiny_data.resolve())
    # the sampler and pruner are rebuilt from the parsed space (Optuna does not store them)
    assert type(study.sampler) is type(make_sampler(cfg.space))
    assert type(study.pruner) is type(make_pruner(cfg.space))
