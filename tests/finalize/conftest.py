"""Fixtures for finalize tests: a real Optuna study whose complete trials carry fersearch
configs (added directly, so no search has to run), on the shared tiny synthetic dataset, and
finalize runs shared by the tests that read their outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import TINY_SPACE  # tests/conftest.py (pytest puts tests/ on sys.path)

from fersearch.config import DataConfig
from fersearch.ensemble.cost import torch_threads  # session fixtures use it too
from fersearch.search.space import parse_space
from fersearch.search.study import create_study


@pytest.fixture(autouse=True)
def one_thread():
    # Two shared cores: one intra-op thread avoids oversubscription (several times faster here).
    with torch_threads(1):
        yield


def make_study(storage_url: str, data_root, trials: list[dict], name: str = "fin"):
    """trials: [{"value": val UAR, "params": {config overrides}}] -> a fersearch study whose
    trials are COMPLETE with these values (Optuna's create_trial; nothing is trained)."""
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
                user_attrs={"config": config, "seed": config["seed"]},
            )
        )
    return study


# Four complete trials; trial 3 repeats trial 0's config with another seed and must be merged.
TRIALS = [
    {"value": 0.50, "params": {"lr": 3e-3}},
    {"value": 0.45, "params": {"lr": 1e-2, "head": "mlp", "head_hidden": 32}},
    {"value": 0.40, "params": {"lr": 1e-3, "label_smoothing": 0.0}},
    {"value": 0.30, "params": {"lr": 3e-3, "seed": 7}},
]


@dataclass
class Run:
    out: Path
    storage: str
    data: Path
    paths: dict
    events: list = field(default_factory=list)  # ("decode", split) / ("choose", what, n rows)


def _instrumented_finalize(tmp: Path, data: Path, storage: str, **kwargs) -> Run:
    """finalize with every split decode and every validation-driven choice logged in order."""
    import fersearch.data.decode as decode
    import fersearch.finalize.calibrate as calibrate
    import fersearch.finalize.pipeline as pipeline
    import fersearch.finalize.retrain as retrain
    import fersearch.finalize.weighting as weighting
    from fersearch.finalize import finalize

    events: list = []
    real_decode, real_greedy = decode.decode_split, weighting.greedy_select
    real_bias, real_views = calibrate.fit_bias, pipeline.choose_view_set
    real_fit = retrain.fit

    def logged_fit(config, *args, **kw):
        events.append(("fit", config.seed, config.epochs, kw.get("keep")))
        return real_fit(config, *args, **kw)

    def logged_decode(manifest, split, size, progress=None):
        events.append(("decode", split))
        return real_decode(manifest, split, size, progress)

    def logged(name, fn, labels_pos):
        def wrapper(*args, **kw):
            events.append(("choose", name, len(args[labels_pos])))
            return fn(*args, **kw)

        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "decode_split", logged_decode)
        mp.setattr(weighting, "greedy_select", logged("greedy_select", real_greedy, 1))
        mp.setattr(pipeline, "fit_bias", logged("fit_bias", real_bias, 1))
        mp.setattr(pipeline, "choose_view_set", logged("choose_view_set", real_views, 2))
        mp.setattr(retrain, "fit", logged_fit)
        out = tmp / "final"
        # ONNX export (tens of seconds per member here) is tested on its own, in test_pipeline
        kwargs.setdefault("onnx", False)
        paths = finalize("fin", kwargs.pop("top", 3), out, storage, latency_images=4, **kwargs)
    return Run(out, storage, data, paths, events)


@pytest.fixture(scope="session")
def finalized(tmp_path_factory, tiny_data) -> Run:
    """finalize --top 3 (train only), shared by the report, export, predict and browser tests."""
    tmp = tmp_path_factory.mktemp("finalize_train")
    storage = f"journal:{tmp / 'study.journal'}"
    make_study(storage, tiny_data, TRIALS)
    with torch_threads(1):
        return _instrumented_finalize(tmp, tiny_data, storage)


@pytest.fixture(scope="session")
def finalized_trainval(tmp_path_factory, tiny_data, finalized) -> Run:
    """finalize --top 2 --retrain-on train+val --cv 2 --tta flip, resumed from the --top 3 run's
    output directory: its train-only members are reused, only the refits and folds train."""
    import shutil

    tmp = tmp_path_factory.mktemp("finalize_trainval")
    shutil.copytree(finalized.out, tmp / "final")
    storage = finalized.storage
    with torch_threads(1):
        return _instrumented_finalize(
            tmp, tiny_data, storage, top=2, retrain_on="train+val", cv=2, tta_mode="flip"
        )
