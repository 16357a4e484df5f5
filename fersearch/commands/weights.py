"""`fersearch weights list --space NAME|FILE [--seed-recipes]`: every weights source a study with
that space can use, and whether each is on this host."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ._common import SeedRecipesOpt, SpaceOpt, app, lit

weights_app = typer.Typer(
    help="The pretrained weights a search space needs, and whether they are on this host.",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")

STATUS_STYLE = {
    "present": "green",
    "missing": "bold red",
    "invalid": "bold red",
    "not needed": "dim",
    "unchecked": "yellow",
}


@weights_app.command("list")
def list_weights(space: SpaceOpt = "default", seed_recipes: SeedRecipesOpt = False) -> None:
    """Each (backbone, pretrained) the space can sample: its timm/open_clip tag, repository and
    file or local path, and present/missing in the local cache. Downloads nothing."""
    from ..search.space import load_space
    from ..search.weights import missing_line, space_sources

    sources = space_sources(load_space(space), seed_recipes)
    table = Table("backbone", "pretrained", "source", "published as", "local file", "status")
    for s in sources:
        kind = f"{s.kind} {s.tag}" if s.tag else s.kind
        status = f"[{STATUS_STYLE[s.status]}]{s.status}[/]"
        table.add_row(
            lit(s.backbone), lit(s.pretrained_text), kind, lit(s.origin), lit(s.path or "-"), status
        )
    out = Console()
    out.print(table)
    counts = {k: sum(s.status == k for s in sources) for k in STATUS_STYLE}
    out.print(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no sources")
    for s in sources:
        if s.status in ("missing", "invalid"):
            out.print(f"[{STATUS_STYLE[s.status]}]{s.status}[/] {lit(missing_line(s))}")
