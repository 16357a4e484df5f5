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
    n: Annotated[int, typer.Option(help="Synthetic images in total.")] = 3000,
    trials: Annotated[int, typer.Option(help="Trials to search.")] = 10,
    top: Annotated[int, typer.Option(help="Trials to finalize.")] = 3,
    storage: StorageOpt = None,
) -> None:
    """The whole loop in minutes: synthesise data, search, finalize the top trials, report."""
    from ..demo import run_demo

    # It ends with the best validation UAR, the ensemble's test UAR and where the report is.
    run_demo(out, n=n, trials=trials, top=top, storage=storage, console=err)
