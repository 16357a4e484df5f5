"""`fersearch synth`: write a synthetic FER dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import app, err


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
    from ..data.synthetic import generate
    from ..progress import bar

    with bar("synthesising faces") as update:
        summary = generate(
            out, n=n, size=size, seed=seed, label_noise=label_noise, preview=preview, progress=update
        )
    total = sum(sum(c) for c in summary.counts.values())
    err.print(f"wrote {total} images to {summary.root}")
    if summary.preview:
        err.print(f"preview: {summary.preview}")
