"""Create and load fersearch studies; rebuild their sampler and pruner in every process.

Optuna does not persist samplers or pruners, so everything a worker needs is stored on the study
as user attributes at creation (the validated space, the data settings, the trial budget) and
every worker rebuilds the same sampler and pruner from them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from .. import __version__
from ..config import DataConfig
from ..errors import StorageError, StudyNotFound
from . import attrs
from .deploy import sampler_options as deploy_sampler_options
from .liveness import sweep_stale_trials as sweep
from .pareto import directions, metric_names
from .presets import enqueue_presets
from .space import SearchSpace, parse_space
from .storage import mask_url, open_storage, resolve_url
from .warm_start import WarmStart, enqueue_warm_start


@dataclass
class StudySettings:
    space: SearchSpace
    data: DataConfig
    n_trials: int | None


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's sampler. With a ``seed``, each trial draws from its own generator, seeded by
    the seed and the trial's number (``trial_seed``): workers sharing a study never repeat each
    other's draws (with one seed each, every worker proposed the same first points), and a study
    is reproducible whatever the number of workers."""
    spec = space.sampler
    if spec.name == "random":
        cls, kwargs = optuna.samplers.RandomSampler, {}
    elif spec.name == "gp":
        # Gaussian-process BO models only complete trials; running ones are imputed, so parallel
        # workers do not propose the same point.
        cls = optuna.samplers.GPSampler
        kwargs = {"n_startup_trials": spec.n_startup_trials, "warn_independent_sampling": False}
    else:
        # constant_liar keeps parallel workers from proposing the same point while trials run.
        cls = optuna.samplers.TPESampler
        kwargs = {
            "n_startup_trials": spec.n_startup_trials,
            "multivariate": spec.multivariate,
            "constant_liar": True,
        }
    if space.deploy is not None and cls is not optuna.samplers.RandomSampler:
        kwargs |= deploy_sampler_options()  # learn where models exceed the budget
    if spec.seed is None:
        return cls(seed=None, **kwargs)
    return _seeded_per_trial(cls)(spec.seed, **kwargs)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` in a study whose space sets ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


_SEEDED_CLASSES: dict[type, type] = {}


def _seeded_per_trial(cls: type) -> type:
    """A subclass of the Optuna sampler ``cls`` that, before each trial, re-initialises itself
    with that trial's seed (through the public constructor: nothing it keeps between trials is
    needed, the history is read from the study)."""
    if cls not in _SEEDED_CLASSES:

        class TrialSeeded(cls):
            def __init__(self, seed: int, **kwargs):
                self.fersearch_seed, self.fersearch_kwargs = seed, kwargs
                cls.__init__(self, seed=seed, **kwargs)

            def before_trial(self, study, trial):
                seed = trial_seed(self.fersearch_seed, trial.number)
                cls.__init__(self, seed=seed, **self.fersearch_kwargs)
                cls.before_trial(self, study, trial)

        TrialSeeded.__name__ = TrialSeeded.__qualname__ = f"TrialSeeded{cls.__name__}"
        _SEEDED_CLASSES[cls] = TrialSeeded
    return _SEEDED_CLASSES[cls]


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    spec = space.pruner
    if spec.name == "none" or space.multi_objective:
        # Optuna's pruners refuse multi-objective studies: a Pareto search prunes on UAR by
        # fersearch's own rule (fersearch/search/pareto.py), with this same spec.
        return optuna.pruners.NopPruner()
    if spec.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
        )
    # The resource is the epoch: trials report after each epoch, steps 1..max_epochs.
    if spec.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.HyperbandPruner(
        min_resource=spec.min_resource,
        max_resource=space.max_epochs,
        reduction_factor=spec.reduction_factor,
    )


def study_exists(name: str, storage_url: str | None = None) -> bool:
    return name in study_names(open_storage(storage_url))


def study_names(storage) -> list[str]:
    return sorted(s.study_name for s in optuna.study.get_all_study_summaries(storage))


def create_study(
    name: str,
    space: SearchSpace,
    data: DataConfig,
    n_trials: int | None,
    storage_url: str | None = None,
    seed_recipes: bool = False,
    warm_start: WarmStart | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists. Returns (study, created).
    ``warm_start``: enqueue an earlier study's best configurations as the first trials, and
    ``seed_recipes`` the seed documents' presets after them, once, here."""
    storage = open_storage(storage_url)
    if name in study_names(storage):
        return load_study(name, storage_url, storage=storage)[0], False
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions(space),  # UAR maximised; deployment figures minimised
            sampler=make_sampler(space),
            pruner=make_pruner(space),
        )
    except optuna.exceptions.DuplicatedStudyError:
        # Another process created it between our check and our create: join it.
        return load_study(name, storage_url, storage=storage)[0], False
    if space.multi_objective:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still there in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(space))  # the dashboard's axis names
    study.set_user_attr(attrs.SPACE, space.model_dump(mode="json"))
    study.set_user_attr(attrs.DATA, data.model_dump(mode="json"))
    study.set_user_attr(attrs.BUDGET, n_trials)
    study.set_user_attr(attrs.VERSION, __version__)
    # ---- warm start and seed recipes: enqueued only by the process that created the study ----
    if warm_start is not None:
        study.set_user_attr(attrs.WARM_START, enqueue_warm_start(study, space, warm_start))
    if seed_recipes:
        study.set_user_attr(attrs.SEED_RECIPES, enqueue_presets(study, space))
    # ---- end warm start and seed recipes ----
    return study, True


def load_study(
    name: str, storage_url: str | None = None, storage=None, heartbeat: bool = False
) -> tuple[optuna.Study, StudySettings]:
    """The study and its stored settings, parsed once: the space they hold rebuilds the sampler
    and pruner (Optuna does not persist those)."""
    storage = storage or open_storage(storage_url, heartbeat=heartbeat)
    names = study_names(storage)
    if name not in names:
        where = mask_url(resolve_url(storage_url))
        raise StudyNotFound(
            f"no study named {name!r} in {where}; existing studies: "
            f"{', '.join(names) or 'none'}. Create it with `fersearch search --study {name} "
            f"--data DIR`"
        )
    stored = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    if attrs.SPACE not in stored:
        raise StorageError(f"study {name!r} was not created by fersearch (it has no stored search space)")
    cfg = _parse_settings(stored, name)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(cfg.space), pruner=make_pruner(cfg.space)
    )
    return study, cfg


def settings(study: optuna.Study) -> StudySettings:
    """The settings stored on a study already open (``load_study`` returns them with it)."""
    return _parse_settings(study.user_attrs, study.study_name)


def _parse_settings(stored: dict, name: str) -> StudySettings:
    return StudySettings(
        space=parse_space(stored[attrs.SPACE], source=f"study {name!r}"),
        data=DataConfig.model_validate(stored[attrs.DATA]),
        n_trials=stored.get(attrs.BUDGET),
    )


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that use up the budget: started ones, minus surplus ones ended unrun, and
    failed ones that were re-queued: interrupted ones and heartbeat-stale ones (their copies
    count instead)."""
    return counted_among(study.get_trials(deepcopy=False))


def counted_among(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """``counted_trials`` for a list of trials already read (all of one study's)."""
    retried = {n for t in trials for n in t.system_attrs.get(attrs.RETRY_HISTORY, [])}
    return [
        t
        for t in trials
        if t.state != TrialState.WAITING
        and not t.user_attrs.get(attrs.SURPLUS)
        and not t.user_attrs.get(attrs.INTERRUPTED)
        and not (t.state == TrialState.FAIL and t.number in retried)
    ]


def sweep_stale_trials(study: optuna.Study) -> None:
    """Fail and re-queue trials whose worker stopped beating (fersearch/search/liveness.py), on
    every store. Workers do it between trials; ``fersearch status`` does it too."""
    sweep(study)
