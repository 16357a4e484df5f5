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
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for this process. Default: its share of the host's cores, the cores "
        "divided by the fersearch processes running here (counted again as they come and go).",
        min=1,
    ),
]

# The options that define a study, shared by `create` and `search`.
DataOpt = Annotated[Path, typer.Option(help="Dataset directory in an official layout.")]
SpaceOpt = Annotated[str, typer.Option(help="Search-space YAML file or built-in name.")]
NTrialsOpt = Annotated[int | None, typer.Option(help="Study-wide trial budget (all workers together).")]
FormatOpt = Annotated[str, typer.Option("--format", help="Dataset layout; auto detects it.")]
# How the study reads its data (stored on the study with the rest of its DataConfig).
FoldsOpt = Annotated[
    int | None,
    typer.Option(
        help="Stratified k-fold: validate on one of K folds of train instead of a held-out fraction."
    ),
]
FoldOpt = Annotated[int, typer.Option(help="With --folds K: which fold (0..K-1) is the validation split.")]
CropOpt = Annotated[
    str, typer.Option(help="face: crop to the dataset's face boxes where it has them; full: whole images.")
]
FramesOpt = Annotated[int, typer.Option(help="Clip datasets (raer layout): frames sampled per clip.")]


def create_study_from_options(
    study, data, space, storage, n_trials, data_format, seed_recipes, folds, fold, crop, frames
):
    """What `create` and `search` do with their shared study options."""
    from ..search.api import create_from_cli

    data_options = {"folds": folds, "fold": fold, "crop": crop, "frames": frames}
    return create_from_cli(
        study, data, space, storage, n_trials, data_format, err, seed_recipes, data_options=data_options
    )


SeedRecipesOpt = Annotated[
    bool,
    typer.Option(
        "--seed-recipes",
        help="When creating the study, enqueue the seed documents' recipes (fersearch/presets.py) "
        "as its first trials.",
    ),
]
