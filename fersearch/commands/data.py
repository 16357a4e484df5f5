"""`fersearch data inspect DIR` and `fersearch data prepare DIR --size PX`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import app, err, lit

data_app = typer.Typer(
    help="Inspect a dataset, or build its decode-once cache ahead of time.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

FormatOpt = Annotated[str, typer.Option("--format", help="Dataset layout; auto detects it and says which.")]


@data_app.command("inspect")
def inspect(
    root: Annotated[Path, typer.Argument(help="Dataset directory, as unpacked.")],
    data_format: FormatOpt = "auto",
    show: Annotated[int, typer.Option(help="Bad files to list by path.")] = 20,
) -> None:
    """Layout, classes, counts per split, imbalance ratio, image sizes, corrupt or missing files."""
    from ..data.inspect import inspect_dataset
    from ..progress import bar

    with bar("checking images", console=err) as update:
        rep = inspect_dataset(root, data_format, progress=update)
    err.print(f"layout: [bold]{lit(rep.format)}[/] ({lit(rep.description)})")
    err.print(f"root: {lit(rep.root)}")
    table = Table("class", *rep.counts, title=f"{len(rep.class_names)} classes, {rep.total} samples")
    for k, name in enumerate(rep.class_names):
        table.add_row(lit(name), *(str(c[k]) for c in rep.counts.values()))
    table.add_row("[bold]total[/]", *(str(sum(c)) for c in rep.counts.values()))
    ratios = [f"{r:.1f}" if r is not None else "-" for r in rep.imbalance.values()]
    table.add_row("[bold]imbalance (max/min)[/]", *ratios)
    err.print(table)
    if rep.au_names:
        err.print(f"action-unit labels: {lit(', '.join(rep.au_names))}")
    top = ", ".join(f"{w}x{h} ({n})" for (w, h), n in rep.sizes.most_common(5))
    err.print(f"image sizes: {top or 'none readable'}" + (" ..." if len(rep.sizes) > 5 else ""))
    for note in rep.notes:
        err.print(f"note: {lit(note)}")
    if rep.bad:
        err.print(f"[yellow]{len(rep.bad)} of {rep.checked} files are missing or unreadable:[/]")
        for ref, why in list(rep.bad.items())[:show]:
            err.print(f"  {lit(rep.root / ref)}: {lit(why)}")
        if len(rep.bad) > show:
            err.print(f"  ... and {len(rep.bad) - show} more (--show N lists more)")
    else:
        err.print(f"all {rep.checked} files readable")


@data_app.command("prepare")
def prepare(
    root: Annotated[Path, typer.Argument(help="Dataset directory, as unpacked.")],
    size: Annotated[int, typer.Option("--size", help="Image side in pixels (the model's input size).")],
    data_format: FormatOpt = "auto",
    crop: Annotated[
        str, typer.Option(help="face: crop to the dataset's face boxes; full: never crop.")
    ] = "face",
    frames: Annotated[int, typer.Option(help="Frames per clip (clip datasets).")] = 1,
    val_fraction: Annotated[float, typer.Option(help="Validation share carved from train.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the validation split.")] = 0,
) -> None:
    """Build the decode-once cache of every split now, so no trial waits for it."""
    from ..config import MAX_SEED
    from ..data import read_dataset, with_validation
    from ..data.cache import load_split
    from ..errors import InvalidArgument
    from ..progress import bar

    if not 8 <= size <= 1024:
        raise InvalidArgument(f"--size must be 8..1024 pixels, got {size}")
    if frames < 1:
        raise InvalidArgument(f"--frames must be >= 1, got {frames}")
    # The bounds a study's DataConfig sets: a cache prepared here must be one a study can use.
    low, high = _bounds("val_fraction")
    if not low < val_fraction < high:  # also refuses NaN
        raise InvalidArgument(
            f"--val-fraction must be above {low:g} and below {high:g} (got {val_fraction:g}); "
            f"0.1 carves 10% of train off for validation"
        )
    if not 0 <= split_seed <= MAX_SEED:
        raise InvalidArgument(f"--split-seed must be in 0..{MAX_SEED} (got {split_seed})")
    if crop not in ("face", "full"):
        raise InvalidArgument(f"--crop must be face or full (got {crop!r})")
    manifest = with_validation(read_dataset(root, data_format), val_fraction, split_seed)
    err.print(f"layout: [bold]{lit(manifest.format)}[/]")
    for split in manifest.splits:
        with bar(f"caching {split} at {size}px", console=err) as update:
            arrays = load_split(manifest, split, size, crop=crop, frames=frames, progress=update)
        line = f"{split}: {len(arrays.labels)} samples -> {lit(arrays.cache_file)}"
        if arrays.skipped:
            line += f" ([yellow]{len(arrays.skipped)} skipped[/], e.g. {lit(arrays.skipped[0])}: "
            line += f"{lit(arrays.skip_reasons[arrays.skipped[0]])})"
        err.print(line)


def _bounds(field: str) -> tuple[float, float]:
    """The exclusive (gt, lt) bounds DataConfig puts on ``field``."""
    from ..config import DataConfig

    meta = DataConfig.model_fields[field].metadata
    return next(m.gt for m in meta if hasattr(m, "gt")), next(m.lt for m in meta if hasattr(m, "lt"))
