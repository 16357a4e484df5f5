"""`fersearch weights list --space NAME|FILE [--seed-recipes]`: every weights source a study with
that space can use, and whether each is on this host. `fersearch weights pull` (same options,
plus --cache DIR) fetches the missing ones: the only command that downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._common import SpaceOpt, StorageOpt, app, check_output_dir, lit

RecipesOpt = Annotated[
    bool,
    typer.Option(
        "--seed-recipes",
        help="Also the backbones of the seed recipes (fersearch/search/presets.py), which a study "
        "created with --seed-recipes runs first.",
    ),
]

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
def list_weights(
    space: SpaceOpt = "default", seed_recipes: RecipesOpt = False, storage: StorageOpt = None
) -> None:
    """Each (backbone, pretrained) the space can sample: its timm/open_clip tag, repository and
    file or local path, and present/missing in the local cache. Downloads nothing. A
    ``pretrained: trial:STUDY/N`` source is looked up in --storage."""
    from ..search.space import load_space
    from ..search.weights import missing_line, space_sources

    sources = space_sources(load_space(space), seed_recipes, storage)
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


CacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Hugging Face cache folder to fill (default: HF_HUB_CACHE, where the loaders look); "
        "workers read it when their HF_HUB_CACHE points there.",
    ),
]
PULL_STYLE = {
    "downloaded": "green",
    "present": "green",
    "not needed": "dim",
    "unchecked": "yellow",
    "failed": "bold red",
    "cannot pull": "bold red",
}
PULL_WORD = {"present": "already present"}


@weights_app.command("pull")
def pull_weights(
    space: SpaceOpt = "default", seed_recipes: RecipesOpt = False, cache: CacheOpt = None
) -> None:
    """Download the missing weights files of every source the space can sample (Hugging Face
    cache layout, or where timm/open_clip keep URL files), a progress bar per file, and verify
    each by building its backbone. Files already present are skipped; exit code 2 when anything
    is still missing at the end (IR-50's file is put in place by hand)."""
    from ..errors import ModelError
    from ..models.pull import pull_weights as pull
    from ..progress import bar
    from ..search.space import load_space
    from ..search.weights import missing_line, space_pairs

    if cache is not None:
        check_output_dir(cache, "--cache")
    results = pull(space_pairs(load_space(space), seed_recipes), cache_dir=cache, progress=bar)
    out = Console()
    for r in results:
        s = r.source
        head = f"{lit(s.backbone)} (pretrained: {lit(s.pretrained_text)})"
        word = f"[{PULL_STYLE[r.outcome]}]{PULL_WORD.get(r.outcome, r.outcome)}[/]"
        if r.outcome in ("downloaded", "present"):
            out.print(f"{word} {head}: {lit(s.origin)} -> {lit(r.file)}")
        elif r.outcome == "cannot pull":
            out.print(f"{word} {lit(missing_line(s))}")
        elif r.outcome == "failed":
            out.print(f"{word} {head}: {lit(r.reason)}")
    counts = {k: sum(r.outcome == k for r in results) for k in PULL_STYLE}
    out.print(", ".join(f"{n} {PULL_WORD.get(k, k)}" for k, n in counts.items() if n) or "no sources")
    if not counts["downloaded"] and not counts["failed"]:
        out.print("nothing downloaded")
    stuck = [r for r in results if not r.ok]
    if stuck:
        names = ", ".join(f"{r.source.backbone} (pretrained: {r.source.pretrained_text})" for r in stuck)
        raise ModelError(
            f"{len(stuck)} weights source(s) of space {space!r} are still not usable on this host: "
            f"{names}; fix each as its line above says, then check with "
            f"`fersearch weights list --space {space}`"
        )
