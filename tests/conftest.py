"""Shared fixtures: a tiny synthetic RAF-DB tree, a tiny search space, a throwaway PostgreSQL DB."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

PG_ADMIN_URL = os.environ.get("FERSEARCH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

# Sized so one trial takes a second or two on a CPU, and Hyperband has three rungs to prune at.
TINY_SPACE = {
    "description": "tests: one tiny backbone at 32 px",
    "fixed": {"image_size": 32, "epochs": 3, "warmup_epochs": 0, "backbone": "test_resnet", "batch_size": 32},
    "params": {
        "lr": {"type": "float", "low": 1.0e-5, "high": 3.0e-2, "log": True},
        "head": {"type": "categorical", "choices": ["linear", "mlp"]},
        "head_hidden": {"type": "int", "low": 16, "high": 64, "when": {"head": "mlp"}},
        "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
        "mixup_alpha": {"type": "float", "low": 0.0, "high": 0.4},
    },
    "sampler": {"name": "tpe", "n_startup_trials": 3, "seed": 0},
    "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from fersearch.data.synthetic import generate

    root = tmp_path_factory.mktemp("rafdb_tiny")
    generate(root, n=600, size=32, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spaces") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    return path


@pytest.fixture
def journal_url(tmp_path) -> str:
    return f"journal:{tmp_path / 'study.journal'}"


@pytest.fixture
def pg_url():
    """A uniquely named PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"fersearch_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
