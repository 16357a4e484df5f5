"""`fersearch demo`: the whole loop on synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import StorageOpt, app, err


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working directory for data, study and report.")] = Path(
        "fersearch-demo"
    ),
    n: Annotated[int, typer.Option(help="Synthetic images in total.")] = 1200,
    trials: Annotated[int, typer.Option(help="Trials to search.")] = 8,
    top: Annotated[int, typer.Option(help="Trials to finalize.")] = 3,
    storage: StorageOpt = None,
) -> None:
    """The whole loop in minutes: synthesise data, search, finalize the top trials, report."""
    from ..demo import run_demo

    paths = run_demo(out, n=n, trials=trials, top=top, storage=storage, console=err)
    err.print(f"\n[bold green]done.[/] report: {paths['md']}")
