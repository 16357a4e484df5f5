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
from ..errors import DataError, InvalidArgument
from . import attrs
from .space import load_space
from .storage import mask_url, resolve_url
from .study import create_study, study_exists
from .warm_start import DEFAULT_TOP, WarmStart, check_top, read_warm_start
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
    # an earlier study whose best complete trials are enqueued first (fersearch/search/warm_start.py)
    warm_start_from: str | None = None
    warm_start_top: int = DEFAULT_TOP
    warm_start_storage: str | None = None  # None: the new study's store
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
    """Check everything first (budget, space, data options, the dataset itself, the warm start's
    source study), then create the study, or join it if it exists; ``console``: say which
    happened."""
    o = options
    if o.n_trials is not None and o.n_trials < 1:
        raise InvalidArgument(f"--n-trials must be at least 1 (got {o.n_trials})")
    space = load_space(o.space)
    warm = _warm_start(o)
    # a missing weights file would fail every trial that samples it, mid-study: refuse now
    recipe_backbones = tuple(warm.backbones()) if warm else ()
    check_space_weights(space, str(o.space), o.seed_recipes, recipe_backbones, storage_url=o.storage)
    data_cfg = o.data_config()
    manifest = load_manifest(data_cfg)  # fail now on a bad dataset, before touching the study
    data_cfg.format = manifest.format
    _check_va(space, manifest, str(o.space))
    created_study, created = create_study(
        o.name, space, data_cfg, o.n_trials, o.storage, o.seed_recipes, warm_start=warm
    )
    if console is not None:
        where = escape(mask_url(resolve_url(o.storage)))
        if created:
            console.print(
                f"created study [bold]{escape(o.name)}[/] in {where}: {manifest.format} data, "
                f"{len(manifest.splits['train'])} train / {len(manifest.splits['val'])} val samples"
                f"{f' (fold {data_cfg.fold} of {data_cfg.folds})' if data_cfg.folds else ''}, "
                f"budget {o.n_trials or 'unlimited'} trials"
            )
            _say_enqueued(created_study, warm, console)
        else:
            budget = created_study.user_attrs.get(attrs.BUDGET)
            console.print(
                f"joining existing study [bold]{escape(o.name)}[/] in {where} "
                f"(its stored space and data are used; budget {budget or 'unlimited'})"
            )
            for flag, given in (("--seed-recipes", o.seed_recipes), ("--warm-start-from", o.warm_start_from)):
                if given:
                    console.print(f"[yellow]{flag} ignored: its trials are enqueued only at creation[/]")
    return created_study


def _check_va(space, manifest, source: str) -> None:
    """A space that can train the valence/arousal head needs VA values in the data: otherwise
    every such trial would fail on its first batch."""
    spec = space.params.get("va_head")
    wants = space.fixed.get("va_head") is True or (spec is not None and True in getattr(spec, "choices", ()))
    if wants and manifest.va_targets is None:
        raise DataError(
            f"{source}: va_head: true trains a valence/arousal head, but {str(manifest.root)!r} "
            f"({manifest.format}) has no valence/arousal values; use AffectNet's layout with its "
            f"valence and arousal columns, or drop va_head from the space"
        )


def _warm_start(o: StudyOptions) -> WarmStart | None:
    """The warm start's source trials, read (and checked) only when the study is to be created:
    a study that exists is joined, and its queue is left as it is."""
    if o.warm_start_from is None:
        if o.warm_start_storage is not None:
            raise InvalidArgument(
                "--warm-start-storage names where the --warm-start-from study lives; give "
                "--warm-start-from STUDY with it, or drop it"
            )
        return None
    check_top(o.warm_start_top)
    if study_exists(o.name, o.storage):
        return None
    return read_warm_start(o.warm_start_from, o.warm_start_storage or o.storage, o.warm_start_top)


def _say_enqueued(study: optuna.Study, warm: WarmStart | None, console: Console) -> None:
    if warm is not None:
        numbers = ", ".join(str(t.number) for t in warm.trials)
        fewer = f" (only {len(warm.trials)} distinct complete)" if len(warm.trials) < warm.top else ""
        console.print(
            f"enqueued the best {len(warm.trials)} configuration(s) of study "
            f"[bold]{escape(warm.study)}[/]{fewer} as the first trials: its trial(s) {numbers}"
        )
    names = study.user_attrs.get(attrs.SEED_RECIPES)
    if names:
        then = "after them" if warm is not None else "as the first trials"
        console.print(f"enqueued seed recipes {then}: {', '.join(names)}")
