"""What every command module shares: the app, the stderr console, common options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="fersearch",
    help="Hyperparameter search for facial-expression-recognition models, built on Optuna.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Study storage: a postgresql+psycopg2:// URL, or a journal file path. "
        "Default: $FERSEARCH_STORAGE, else the embedded store ./.fersearch/journal.log",
    ),
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
