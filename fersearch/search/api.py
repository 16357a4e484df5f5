"""Study creation as the CLI and the demo do it: validate everything first, then create."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ..config import DataConfig, describe_validation_error
from ..data import load_manifest
from ..errors import InvalidArgument
from . import attrs
from .space import load_space
from .storage import mask_url, resolve_url
from .study import create_study
from .weights import check_space_weights


@dataclass(frozen=True)
class StudyOptions:
    """What creating a study asks for (`fersearch create`, `fersearch search`, the demo): its
    name, data, space, store and budget, and how its data is read. Joining a study that exists
    uses only the name and the store: the rest was stored when it was created."""

    name: str
    data: Path | str
    space: str = "default"
    storage: str | None = None
    n_trials: int | None = None
    data_format: str = "auto"
    seed_recipes: bool = False
    # how the data is read (DataConfig); None: DataConfig's default
    folds: int | None = None
    fold: int = 0
    crop: str = "face"
    frames: int = 1
    val_fraction: float | None = None

    def data_config(self) -> DataConfig:
        given = {"folds": self.folds, "fold": self.fold, "crop": self.crop, "frames": self.frames}
        if self.val_fraction is not None:
            given["val_fraction"] = self.val_fraction
        try:
            root = str(Path(self.data).expanduser().resolve())
            return DataConfig(root=root, format=self.data_format, **given)
        except ValidationError as exc:
            raise InvalidArgument(f"invalid data options: {describe_validation_error(exc)}") from None


def create_or_join(options: StudyOptions, console: Console | None = None) -> optuna.Study:
    """Check everything first (budget, space, data options, the dataset itself), then create
    the study, or join it if it exists; ``console``: say which happened."""
    o = options
    if o.n_trials is not None and o.n_trials < 1:
        raise InvalidArgument(f"--n-trials must be at least 1 (got {o.n_trials})")
    space = load_space(o.space)
    # a missing weights file would fail every trial that samples it, mid-study: refuse now
    check_space_weights(space, str(o.space), o.seed_recipes)
    data_cfg = o.data_config()
    manifest = load_manifest(data_cfg)  # fail now on a bad dataset, before touching the study
    data_cfg.format = manifest.format
    created_study, created = create_study(o.name, space, data_cfg, o.n_trials, o.storage, o.seed_recipes)
    if console is not None:
        where = escape(mask_url(resolve_url(o.storage)))
        if created:
            console.print(
                f"created study [bold]{escape(o.name)}[/] in {where}: {manifest.format} data, "
                f"{len(manifest.splits['train'])} train / {len(manifest.splits['val'])} val samples"
                f"{f' (fold {data_cfg.fold} of {data_cfg.folds})' if data_cfg.folds else ''}, "
                f"budget {o.n_trials or 'unlimited'} trials"
            )
            if o.seed_recipes:
                names = created_study.user_attrs[attrs.SEED_RECIPES]
                console.print(f"enqueued seed recipes as the first trials: {', '.join(names)}")
        else:
            budget = created_study.user_attrs.get(attrs.BUDGET)
            console.print(
                f"joining existing study [bold]{escape(o.name)}[/] in {where} "
                f"(its stored space and data are used; budget {budget or 'unlimited'})"
            )
            if o.seed_recipes:
                console.print("[yellow]--seed-recipes ignored: seed recipes are enqueued only at creation[/]")
    return created_study
