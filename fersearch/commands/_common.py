"""What every command module shares: the app, the stderr console, common options."""

from __future__ import annotations

import math
import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="fersearch",
    help="Hyperparameter search for facial-expression-recognition models, built on Optuna.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def lit(value: object) -> str:
    """A user-supplied string (path, name, class, file name) printed literally through the
    rich console: '[/bold]' in a file name prints as itself instead of styling or crashing."""
    return escape(str(value))


def _first_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def check_output_dir(path: Path, option: str) -> Path:
    """A folder to write into, checked before any work: an existing file (``--out /etc/passwd``),
    a file on the way to it, or a folder that cannot be written is an InvalidArgument now, not a
    traceback hours later."""
    from ..errors import InvalidArgument

    path = Path(path).expanduser()
    base = _first_existing(path)
    shown = f"{option} {str(path)!r}"
    if not base.is_dir():
        what = "is" if base == path else f"lies under {str(base)!r}, which is"
        raise InvalidArgument(f"{shown} {what} an existing file, not a folder; give a folder path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InvalidArgument(f"{shown}: cannot write in {str(base)!r}; give a writable folder")
    return path


def check_output_file(path: Path, option: str) -> Path:
    """A file to write, checked before any work: a folder, or a path under a file or an
    unwritable folder, is an InvalidArgument."""
    from ..errors import InvalidArgument

    path = Path(path).expanduser()
    shown = f"{option} {str(path)!r}"
    if path.is_dir():
        raise InvalidArgument(f"{shown} is a folder; give a file path such as {path / 'predictions.csv'}")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise InvalidArgument(f"{shown} is not writable; give another file path")
        return path
    base = _first_existing(path.parent)
    if not base.is_dir():
        raise InvalidArgument(f"{shown} lies under {str(base)!r}, which is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InvalidArgument(f"{shown}: cannot write in {str(base)!r}; give a writable folder")
    return path


def check_timeout(seconds: float | None) -> float | None:
    from ..errors import InvalidArgument

    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise InvalidArgument(
            f"--timeout must be a positive number of seconds (got {seconds}); omit it to run on"
        )
    return seconds


def check_port(port: int) -> int:
    from ..errors import InvalidArgument

    if not 1 <= port <= 65535:
        raise InvalidArgument(f"--port must be in 1..65535 (got {port})")
    return port


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Study storage: a postgresql+psycopg2:// URL, or a journal file path. "
        "Default: $FERSEARCH_STORAGE, else the embedded store ./.fersearch/journal.log",
    ),
]
# Optuna keeps study names of up to 512 characters in a database (its indexed string length).
MAX_STUDY_NAME = 512
_MARKUP_TAG = re.compile(r"\[[a-z#/@][^\[]*?\]")


def check_study_name(name: str) -> str:
    """Reject names that would print wrongly or not at all: empty, padded with spaces, control
    characters (a newline splits the one-line messages; ESC drives the terminal), console style
    tags such as ``[/bold]`` (the console would eat or choke on them), or longer than a database
    stores. Any other name is fine; its checkpoint folder is made safe separately
    (``fersearch.search.trial_state.study_folder_name``)."""
    from rich.markup import escape

    from ..errors import InvalidArgument

    fix = "choose a name of letters, digits, '-', '_' or '.', such as s1 or raf-convnext"
    if not name.strip():
        raise InvalidArgument(f"--study must not be empty (got {name!r}); {fix}")
    if name != name.strip():
        raise InvalidArgument(f"--study {name!r} starts or ends with whitespace; {fix}")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise InvalidArgument(f"--study {name!r} contains the control character {bad!r}; {fix}")
    if len(name) > MAX_STUDY_NAME:
        raise InvalidArgument(
            f"--study is {len(name)} characters long; at most {MAX_STUDY_NAME} are stored; {fix}"
        )
    if escape(name) != name:
        tag = _MARKUP_TAG.search(name)
        what = f"{tag.group(0)!r}, which the console reads as a style tag" if tag else "a trailing backslash"
        raise InvalidArgument(f"--study {name!r} contains {what}; {fix}")
    return name


StudyOpt = Annotated[str, typer.Option("--study", help="Study name.", callback=check_study_name)]
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


def study_options(arguments: dict):
    """StudyOptions from the arguments of `create` or `search`, whose study options are named as
    its fields (``--study`` gives the name)."""
    from dataclasses import fields

    from ..search.api import StudyOptions

    names = {f.name for f in fields(StudyOptions)} - {"name"}
    return StudyOptions(name=arguments["study"], **{k: v for k, v in arguments.items() if k in names})


SeedRecipesOpt = Annotated[
    bool,
    typer.Option(
        "--seed-recipes",
        help="When creating the study, enqueue the seed documents' recipes (fersearch/search/presets.py) "
        "as its first trials.",
    ),
]
# Warm start (fersearch/search/warm_start.py): options of `create` and `search`, StudyOptions fields.
WarmStartFromOpt = Annotated[
    str | None,
    typer.Option(
        "--warm-start-from",
        help="When creating the study, enqueue the best complete trials of this earlier study (same "
        "or other dataset) as its first trials; what the new space cannot hold is listed on each.",
    ),
]
WarmStartTopOpt = Annotated[
    int, typer.Option("--warm-start-top", help="With --warm-start-from: how many of its best trials.")
]
WarmStartStorageOpt = Annotated[
    str | None,
    typer.Option(
        "--warm-start-storage",
        help="With --warm-start-from: the store that holds that study. Default: the new study's store.",
    ),
]
# Experiment tracking (fersearch/search/tracking.py): options of `worker`, `search` and `finalize`.
TensorBoardOpt = Annotated[
    Path | None,
    typer.Option(
        "--tensorboard",
        help="Write TensorBoard event files under DIR, one run per trial (per-epoch loss, val "
        "UAR/WAR/macro F1, learning rate, curriculum stage, hyperparameters): tensorboard --logdir DIR.",
    ),
]
MlflowOpt = Annotated[
    str | None,
    typer.Option(
        "--mlflow",
        help="Also log every finished trial to this MLflow tracking URI (optuna-integration's "
        "MLflowCallback; needs `pip install optuna-integration mlflow`).",
    ),
]


def check_tracking(tensorboard: Path | None, mlflow: str | None = None) -> None:
    """--tensorboard DIR and --mlflow URI, checked before any work: a file or an unwritable
    folder, a package that is not installed."""
    from ..search.tracking import TensorBoard, mlflow_callback

    if tensorboard is not None:
        TensorBoard(check_output_dir(tensorboard, "--tensorboard"))
    mlflow_callback(mlflow)
