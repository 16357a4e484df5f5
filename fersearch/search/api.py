"""Study creation as the CLI and the demo do it: validate everything first, then create."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ..config import DataConfig, describe_validation_error
from ..data import load_manifest
from ..errors import InvalidArgument
from . import attrs
from .space import load_space
from .storage import mask_url, resolve_url
from .study import create_study, settings


def create_from_cli(
    study: str,
    data: Path,
    space_file: str,
    storage: str | None,
    n_trials: int | None,
    data_format: str = "auto",
    console: Console | None = None,
    seed_recipes: bool = False,
    data_options: dict | None = None,
):
    if n_trials is not None and n_trials < 1:
        raise InvalidArgument(f"--n-trials must be at least 1 (got {n_trials})")
    space = load_space(space_file)
    try:
        data_cfg = DataConfig(
            root=str(Path(data).expanduser().resolve()), format=data_format, **(data_options or {})
        )
    except ValidationError as exc:
        raise InvalidArgument(f"invalid data options: {describe_validation_error(exc)}") from None
    manifest = load_manifest(data_cfg)  # fail now on a bad dataset, before touching the study
    data_cfg.format = manifest.format
    created_study, created = create_study(study, space, data_cfg, n_trials, storage, seed_recipes)
    if console is not None:
        where = escape(mask_url(resolve_url(storage)))
        if created:
            console.print(
                f"created study [bold]{escape(study)}[/] in {where}: {manifest.format} data, "
                f"{len(manifest.splits['train'])} train / {len(manifest.splits['val'])} val samples"
                f"{f' (fold {data_cfg.fold} of {data_cfg.folds})' if data_cfg.folds else ''}, "
                f"budget {n_trials or 'unlimited'} trials"
            )
            if seed_recipes:
                names = created_study.user_attrs[attrs.SEED_RECIPES]
                console.print(f"enqueued seed recipes as the first trials: {', '.join(names)}")
        else:
            existing = settings(created_study)
            console.print(
                f"joining existing study [bold]{escape(study)}[/] in {where} "
                f"(its stored space and data are used; budget {existing.n_trials or 'unlimited'})"
            )
            if seed_recipes:
                console.print("[yellow]--seed-recipes ignored: seed recipes are enqueued only at creation[/]")
    return created_study
