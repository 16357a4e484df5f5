"""Fixtures for finalize tests: a real Optuna study whose complete trials carry fersearch
configs (added directly, so no search has to run), on the shared tiny synthetic dataset."""

from __future__ import annotations

import pytest
import torch

from fersearch.config import DataConfig
from fersearch.search.space import parse_space
from fersearch.search.study import create_study

from ..conftest import TINY_SPACE


@pytest.fixture(autouse=True)
def one_thread():
    # Two shared cores: one intra-op thread avoids oversubscription (5x faster here).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_study(storage_url: str, data_root, trials: list[dict], name: str = "fin"):
    """trials: [{"value": val UAR, "params": {...config overrides}}] -> a fersearch study."""
    import optuna

    space = parse_space(TINY_SPACE, source="test")
    data = DataConfig(root=str(data_root))
    study, _ = create_study(name, space, data, n_trials=len(trials), storage_url=storage_url)
    base = {"data": data.model_dump(mode="json"), **TINY_SPACE["fixed"], "epochs": 2}
    for i, t in enumerate(trials):
        config = {**base, "seed": i, **t.get("params", {})}
        study.add_trial(
            optuna.trial.create_trial(
                value=t["value"],
                params={},
                distributions={},
                user_attrs={"config": config, "seed": config["seed"], "best_epoch": 2},
            )
        )
    return study
