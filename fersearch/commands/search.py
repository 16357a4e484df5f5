"""`fersearch search` and `fersearch worker`: run trials of a study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import StorageOpt, StudyOpt, app, err


@app.command()
def search(
    study: StudyOpt,
    data: Annotated[Path, typer.Option(help="Dataset directory in an official layout.")],
    space: Annotated[str, typer.Option(help="Search-space YAML file or built-in name.")] = "default",
    storage: StorageOpt = None,
    n_trials: Annotated[
        int | None, typer.Option(help="Study-wide trial budget (all workers together).")
    ] = None,
    data_format: Annotated[str, typer.Option("--format", help="Dataset layout; auto detects it.")] = "auto",
    timeout: Annotated[float | None, typer.Option(help="Stop this worker after S seconds.")] = None,
    seed_recipes: Annotated[
        bool,
        typer.Option(
            "--seed-recipes",
            help="When creating the study, enqueue the seed documents' recipes (fersearch/presets.py) "
            "as its first trials.",
        ),
    ] = False,
) -> None:
    """Create the study if needed, then run one worker in this process."""
    from ..search.api import create_from_cli
    from ..search.worker import run_worker

    create_from_cli(study, data, space, storage, n_trials, data_format, err, seed_recipes=seed_recipes)
    run_worker(study, storage, timeout=timeout, console=err)


@app.command()
def worker(
    study: StudyOpt,
    storage: StorageOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    gpu: Annotated[
        str | None,
        typer.Option(help="CUDA device index, or auto: the first GPU no other worker here holds."),
    ] = None,
    artifacts: Annotated[
        str | None,
        typer.Option(help="Artifact store directory or s3://bucket (default $FERSEARCH_ARTIFACTS)."),
    ] = None,
) -> None:
    """Join an existing study and run trials until its budget is used up."""
    from ..search.worker import run_worker

    run_worker(study, storage, timeout=timeout, console=err, gpu=gpu, artifacts_dir=artifacts)
