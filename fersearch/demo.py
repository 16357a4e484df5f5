"""`fersearch demo`: the whole loop on a laptop in minutes, no server, built-in synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from rich.console import Console

from .finalize import finalize
from .progress import bar
from .search.api import create_from_cli
from .search.storage import open_storage
from .search.study import study_names
from .search.worker import run_worker

STUDY = "demo"


def run_demo(
    out: str | Path,
    n: int = 1200,
    trials: int = 8,
    top: int = 3,
    storage: str | None = None,
    space: str = "demo",
    size: int = 48,
    console: Console | None = None,
) -> dict[str, Path]:
    from .data.synthetic import generate

    console = console or Console(stderr=True)
    out = Path(out)
    data_dir = out / "data"
    # The demo keeps its study beside its data unless told otherwise, and starts it afresh.
    storage = storage or f"journal:{out / 'study.journal'}"

    params = {"n": n, "size": size, "seed": 0}
    stamp = data_dir / "synthetic.json"
    if _same_synth(stamp, params):
        console.print(f"reusing synthetic data in {data_dir}")
    else:
        with bar("1/3 synthesising faces", console) as update:
            generate(data_dir, n=n, size=size, seed=0, preview=True, progress=update)
        console.print(f"synthetic data: {data_dir} (look at {data_dir / 'preview.png'})")

    backend = open_storage(storage)
    if STUDY in study_names(backend):
        optuna.delete_study(study_name=STUDY, storage=backend)
    console.rule("2/3 search")
    create_from_cli(STUDY, data_dir, space, storage, trials, console=console)
    run_worker(STUDY, storage, console=console)
    console.rule("3/3 finalize")
    return finalize(STUDY, top, out / "report", storage, console=console)


def _same_synth(stamp: Path, params: dict) -> bool:
    if not stamp.is_file():
        return False
    try:
        saved = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    return all(saved.get(k) == v for k, v in params.items())
