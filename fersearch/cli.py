"""Command line: one thin command per verb; the work happens in the library.

A FersearchError (bad input the user can fix) is one line on stderr and exit code 2, never a
traceback. ``main(argv)`` is what the console script and the tests call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import FersearchError

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


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Directory to write the dataset to (RAF-DB layout).")],
    n: Annotated[
        int | None, typer.Option(help="Total images (train + test); default RAF-DB's 15,339.")
    ] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    label_noise: Annotated[float, typer.Option(help="Fraction of labels flipped to another class.")] = 0.03,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also write preview.png, a contact sheet.")
    ] = False,
) -> None:
    """Write a synthetic FER dataset of procedural faces in RAF-DB's official layout."""
    from .data.synthetic import generate
    from .progress import bar

    with bar("synthesising faces") as update:
        summary = generate(
            out, n=n, size=size, seed=seed, label_noise=label_noise, preview=preview, progress=update
        )
    total = sum(sum(c) for c in summary.counts.values())
    err.print(f"wrote {total} images to {summary.root}")
    if summary.preview:
        err.print(f"preview: {summary.preview}")


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
) -> None:
    """Create the study if needed, then run one worker in this process."""
    from .search.api import create_from_cli
    from .search.worker import run_worker

    create_from_cli(study, data, space, storage, n_trials, data_format, err)
    run_worker(study, storage, timeout=timeout, console=err)


@app.command()
def worker(
    study: StudyOpt,
    storage: StorageOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
) -> None:
    """Join an existing study and run trials until its budget is used up."""
    from .search.worker import run_worker

    run_worker(study, storage, timeout=timeout, console=err)


@app.command()
def finalize(
    study: StudyOpt,
    out: Annotated[Path, typer.Option(help="Output directory for report and ensemble.")],
    top: Annotated[int, typer.Option(help="Number of best trials to retrain and ensemble.")] = 5,
    storage: StorageOpt = None,
) -> None:
    """Retrain the top-K trials, ensemble them, evaluate once on test, write the report."""
    from .finalize import finalize as run_finalize

    paths = run_finalize(study, top, out, storage, console=err)
    err.print(f"report: {paths['md']}")
    err.print(f"ensemble: {paths['ensemble']}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working directory for data, study and report.")] = Path(
        "fersearch-demo"
    ),
    n: Annotated[int, typer.Option(help="Synthetic images in total.")] = 3000,
    trials: Annotated[int, typer.Option(help="Trials to search.")] = 10,
    top: Annotated[int, typer.Option(help="Trials to finalize.")] = 3,
    storage: StorageOpt = None,
) -> None:
    """The whole loop in minutes: synthesise data, search, finalize the top trials, report."""
    from .demo import run_demo

    paths = run_demo(out, n=n, trials=trials, top=top, storage=storage, console=err)
    err.print(f"\n[bold green]done.[/] report: {paths['md']}")


def main(argv: list[str] | None = None) -> int:
    import optuna

    # fersearch prints its own one-line summaries; Optuna's INFO lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command = typer.main.get_command(app)
    try:
        # standalone mode: the CLI framework prints usage errors itself and exits with 2.
        command.main(args=argv, prog_name="fersearch", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FersearchError as exc:
        print(f"fersearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fersearch: interrupted", file=sys.stderr)
        return 130
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
