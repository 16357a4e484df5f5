"""What every command module shares: the app, the stderr console, common options."""

from __future__ import annotations

from pathlib import Path
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

# The options that define a study, shared by `create` and `search`.
DataOpt = Annotated[Path, typer.Option(help="Dataset directory in an official layout.")]
SpaceOpt = Annotated[str, typer.Option(help="Search-space YAML file or built-in name.")]
NTrialsOpt = Annotated[int | None, typer.Option(help="Study-wide trial budget (all workers together).")]
FormatOpt = Annotated[str, typer.Option("--format", help="Dataset layout; auto detects it.")]
SeedRecipesOpt = Annotated[
    bool,
    typer.Option(
        "--seed-recipes",
        help="When creating the study, enqueue the seed documents' recipes (fersearch/presets.py) "
        "as its first trials.",
    ),
]
