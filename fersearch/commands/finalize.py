"""`fersearch finalize`: retrain the best trials and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import StorageOpt, StudyOpt, app, err


@app.command()
def finalize(
    study: StudyOpt,
    out: Annotated[Path, typer.Option(help="Output directory for report and ensemble.")],
    top: Annotated[int, typer.Option(help="Number of best trials to retrain and ensemble.")] = 5,
    storage: StorageOpt = None,
) -> None:
    """Retrain the top-K trials, ensemble them, evaluate once on test, write the report."""
    from ..finalize import finalize as run_finalize

    paths = run_finalize(study, top, out, storage, console=err)
    err.print(f"report: {paths['md']}")
    err.print(f"ensemble: {paths['ensemble']}")
