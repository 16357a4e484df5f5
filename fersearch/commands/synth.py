"""`fersearch synth`: write a synthetic FER dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import app, check_output_dir, err, lit

CLASS_SETS = ("basic7", "compound14")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Directory to write the dataset to (RAF-DB layout).")],
    n: Annotated[
        int | None,
        typer.Option(
            help="Total images (train + test); default RAF-DB's 15,339 "
            "(compound14: 1,400; --context: 400 clips)."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    label_noise: Annotated[float, typer.Option(help="Fraction of labels flipped to another class.")] = 0.03,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also write preview.png, a contact sheet.")
    ] = False,
    classes: Annotated[
        str,
        typer.Option(
            help="basic7: RAF-DB's 7 emotions; compound14: RAF-CE's 14 compound classes with AU labels."
        ),
    ] = "basic7",
    context: Annotated[
        bool,
        typer.Option("--context", help="Clips of a face in a scene (RAER-style layout, face + body boxes)."),
    ] = False,
    frames: Annotated[int, typer.Option(help="Frames per clip with --context.")] = 4,
    difficulty: Annotated[
        str,
        typer.Option(
            help="basic7 only. standard: weak expressions among large nuisances (the default); "
            "easy: strong expressions, clean camera, for CPU-scale experiments with tiny models; "
            "hard: weaker expressions, more occlusion and degradation."
        ),
    ] = "standard",
) -> None:
    """Write a synthetic FER dataset of procedural faces in an official layout."""
    from ..errors import InvalidArgument
    from ..progress import bar

    check_output_dir(out, "--out")
    if classes not in CLASS_SETS:
        raise InvalidArgument(f"--classes must be one of {', '.join(CLASS_SETS)}; got {classes!r}")
    if difficulty != "standard" and (context or classes != "basic7"):
        raise InvalidArgument(
            f"--difficulty {difficulty} applies to the basic7 faces only; drop it, or drop "
            "--context / --classes compound14"
        )
    if context and classes != "basic7":
        raise InvalidArgument("--context writes RAER's five classes; use it without --classes compound14")
    if context:
        from ..data.synthetic_context import generate_context

        with bar("synthesising clips") as update:
            counts = generate_context(out, n=n or 400, size=size, frames=frames, seed=seed, progress=update)
        err.print(
            f"wrote {sum(map(sum, counts.values()))} clips of {frames} frames to {lit(out)} "
            "(RAER-style layout)"
        )
        return
    if classes == "compound14":
        from ..data.synthetic_compound import generate_compound

        with bar("synthesising compound faces") as update:
            counts = generate_compound(out, n=n or 1400, size=size, seed=seed, progress=update)
        err.print(f"wrote {sum(map(sum, counts.values()))} images to {lit(out)} (RAF-CE layout, AU labels)")
        return
    from ..data.synthetic import generate

    with bar("synthesising faces") as update:
        summary = generate(
            out,
            n=n,
            size=size,
            seed=seed,
            label_noise=label_noise,
            preview=preview,
            progress=update,
            difficulty=difficulty,
        )
    total = sum(sum(c) for c in summary.counts.values())
    err.print(f"wrote {total} images to {lit(summary.root)}")
    if summary.preview:
        err.print(f"preview: {lit(summary.preview)}")
