"""Progress bars, one look for every command: ``bar`` (a plain ``update(done, total)``
callback) and ``tasks`` (several rows, for finalize's stages and a worker's trials)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def bar(description: str, console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """``with bar("doing x") as update: ... update(done, total)``. The bar appears with the first
    update, so work that fails before it starts (a wrong path, an unknown layout) prints its error
    alone, and work with nothing to do (a cache already built) prints no empty bar."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if progress.live.is_started:
            progress.stop()


def tasks(console: Console, info: bool = False) -> Progress:
    """A rich Progress for several rows (``add_task`` / ``advance`` / ``remove_task``);
    ``info=True`` adds a column for each task's ``info`` field (a trial's latest figures)."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=console)
