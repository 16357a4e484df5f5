"""Search spaces: YAML -> validated SearchSpace -> Optuna suggestions -> TrialConfig.

A space file has ``fixed`` values, sampled ``params`` and the ``sampler``/``pruner`` settings::

    fixed:  {epochs: 6, image_size: 64}
    params:
      lr:         {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      head:       {type: categorical, choices: [linear, mlp]}
      head_hidden: {type: int, low: 64, high: 512, log: true, when: {head: mlp}}
    sampler: {name: tpe, n_startup_trials: 4}
    pruner:  {name: hyperband, min_resource: 1, reduction_factor: 3}

Everything is checked at load, like Optuna's distributions: unknown keys, low > high, a step
that is not positive, infinite or NaN numbers, values a TrialConfig would reject (out of its
bounds, or a fraction for an integer key), unknown backbones and model parts the space can
sample together that do not fit (fersearch/search/combinations.py) are errors naming the file
and the key. The file must be UTF-8 text and YAML whose mappings have no duplicated key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import MAX_SEED, TUNABLE_KEYS, DataConfig, TrialConfig, build_config, describe_validation_error
from ..errors import ConfigError, FersearchError, SearchSpaceError, one_of
from .combinations import check_model_combinations

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self):
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self):
        _check_range(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)
    when: dict[str, Any] | None = None

    @field_validator("choices")
    @classmethod
    def _scalars(cls, choices: list) -> list:
        # What Optuna can store as a categorical choice (and compare for equality).
        for i, c in enumerate(choices):
            if not (
                c is None or isinstance(c, bool | int | str) or (isinstance(c, float) and math.isfinite(c))
            ):
                raise ValueError(
                    f"choice {i} is {c!r}; choices must be numbers (finite), strings, true/false or null"
                )
        return choices


# Tagged by `type`: a bad entry is reported against its own kind only, not all three.
Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SamplerSpec(_Strict):
    name: Literal["tpe", "gp", "random"] = "tpe"
    n_startup_trials: int = Field(5, ge=0)
    multivariate: bool = True
    seed: int | None = Field(None, ge=0, le=MAX_SEED)


class PrunerSpec(_Strict):
    name: Literal["hyperband", "successive_halving", "median", "none"] = "hyperband"
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    # median; and in a multi-objective study, the trials that must reach a rung before any is
    # pruned there (fersearch/search/pareto.py)
    n_startup_trials: int = Field(3, ge=0)
    n_warmup_steps: int = Field(1, ge=0)  # median only


class DeployBudget(_Strict):
    """``deploy:`` what every trial's model must meet to be deployable (seed 004: under 100 ms per
    image, ensembles under 500 MB). Measured before the trial trains (fersearch/search/deploy.py):
    the latency of one predict call of ``batch`` images in ``tta_views`` views on ``device`` with
    ``threads`` CPU threads, and the size of the member file (``max_size_mb`` in MiB, 2**20
    bytes, as the reports print sizes)."""

    max_latency_ms: float | None = Field(None, gt=0)
    max_size_mb: float | None = Field(None, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(1, ge=1, le=256)
    batch: int = Field(1, ge=1, le=1024)
    tta_views: int = Field(1, ge=1, le=64)


# ``objectives:`` what a trial returns: validation UAR (maximised) first, then deployment
# figures measured before it trains (minimised). More than one makes a Pareto search.
Objective = Literal["uar", "latency_ms", "size_mb"]


class SearchSpace(_Strict):
    description: str = ""
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Param] = Field(default_factory=dict)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    deploy: DeployBudget | None = None
    objectives: list[Objective] = Field(default_factory=lambda: ["uar"])

    @model_validator(mode="after")
    def _check_objectives(self) -> SearchSpace:
        o = self.objectives
        if not o or o[0] != "uar" or len(set(o)) != len(o):
            raise ValueError(
                f"objectives: {o}: uar comes first, each objective once (such as [uar, latency_ms])"
            )
        measured = [x for x in o if x != "uar"]
        if measured and self.deploy is None:
            raise ValueError(
                f"objectives: {', '.join(measured)} needs the deployment cost measured: add a "
                f"deploy: section (such as deploy: {{device: cpu, threads: 1}})"
            )
        d = self.deploy
        if d is not None and d.max_latency_ms is None and d.max_size_mb is None and not measured:
            raise ValueError(
                "deploy needs max_latency_ms, max_size_mb or both (or objectives such as "
                "[uar, latency_ms] that it measures)"
            )
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def max_epochs(self) -> int:
        """The largest epoch budget any trial can get (Hyperband's max_resource)."""
        spec = self.params.get("epochs")
        if isinstance(spec, IntParam):
            return spec.high
        if isinstance(spec, CategoricalParam):
            return max(int(c) for c in spec.choices)
        return int(self.fixed.get("epochs", TrialConfig.model_fields["epochs"].default))


def _check_range(low, high, log, step) -> None:
    if low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got low={low})")
    if log and step is not None:
        raise ValueError("step and log cannot be used together")


MAX_SPACE_BYTES = 1 << 20  # search spaces are a few dozen lines


class _NoDuplicateKeysLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently: a second `fixed:` would drop the first one's values without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line {first.start_mark.line + 1}); "
                    f"keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML text file through the safe loader, duplicate keys refused; every failure is one
    SearchSpaceError line naming the file (and the line, where YAML knows it)."""
    try:
        size = path.stat().st_size
        if size > MAX_SPACE_BYTES:
            raise SearchSpaceError(
                f"{path}: {size} bytes is not a search space (they are a few KB of YAML); "
                f"check the path given to --space"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise SearchSpaceError(
            f"{path}: cannot read it ({exc.strerror}); check the path given to --space"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SearchSpaceError(
            f"{path}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"a search space is a YAML text file, see search_spaces/demo.yaml"
        ) from None
    try:
        return yaml.load(text, Loader=_NoDuplicateKeysLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: where, and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file. A bare name like 'demo' means search_spaces/demo.yaml."""
    path = resolve_space_path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SearchSpaceError(
            f"{path}: expected a mapping with fixed/params/sampler/pruner, got {type(raw).__name__}"
        )
    return parse_space(raw, source=str(path))


def resolve_space_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    builtin = BUILTIN_DIR / f"{p.name.removesuffix('.yaml')}.yaml"
    if p.parent == Path(".") and builtin.is_file():
        return builtin
    names = sorted(f.stem for f in BUILTIN_DIR.glob("*.yaml"))
    raise SearchSpaceError(
        f"search space file {str(path)!r} not found; give a path to a YAML file or a built-in "
        f"name ({', '.join(names)})"
    )


def parse_space(raw: dict, source: str = "<space>") -> SearchSpace:
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise SearchSpaceError(f"{source}: {describe_validation_error(exc)}") from None
    _check_keys(space, source)
    return space


def _check_keys(space: SearchSpace, source: str) -> None:
    from ..models import validate_backbone  # timm import is slow; only when validating

    for section in ("fixed", "params"):
        for key in getattr(space, section):
            if key not in TUNABLE_KEYS:
                raise SearchSpaceError(f"{source}: {section}.{key}: unknown key; {_suggest(key)}")
    both = set(space.fixed) & set(space.params)
    if both:
        raise SearchSpaceError(f"{source}: {sorted(both)} are both fixed and sampled; keep one")

    dummy = {"data": {"root": "."}, **space.fixed}
    _validate_values(dummy, source, "fixed")
    for key, spec in space.params.items():
        values = spec.choices if isinstance(spec, CategoricalParam) else [spec.low, spec.high]
        for value in values:
            _validate_values({**dummy, key: value}, source, f"params.{key}")
        if isinstance(spec, FloatParam) and spec.low < spec.high:
            # A value in between, not a whole number: a float parameter for an integer key
            # passes at low=1.0 and high=8.0, but every sample like 4.37 would fail in the worker.
            mid = spec.low + (spec.high - spec.low) * 0.4375
            mid = mid if not float(mid).is_integer() else math.nextafter(mid, spec.high)
            try:
                build_config({**dummy, key: mid})
            except ConfigError:
                raise SearchSpaceError(
                    f"{source}: params.{key}: type float samples fractions such as {mid:g}, which "
                    f"{key} does not take; use type: int (or categorical)"
                ) from None
        if spec.when:
            for cond_key, cond_val in spec.when.items():
                parent = space.params.get(cond_key)
                if not isinstance(parent, CategoricalParam):
                    raise SearchSpaceError(
                        f"{source}: params.{key}.when: {cond_key!r} must be a categorical "
                        f"parameter defined in params"
                    )
                wanted = cond_val if isinstance(cond_val, list) else [cond_val]
                bad = [v for v in wanted if v not in parent.choices]
                if bad:
                    raise SearchSpaceError(
                        f"{source}: params.{key}.when.{cond_key}: {one_of(bad[0], parent.choices)}"
                    )
    backbones = []
    if "backbone" in space.fixed:
        backbones.append(space.fixed["backbone"])
    if isinstance(space.params.get("backbone"), CategoricalParam):
        backbones.extend(space.params["backbone"].choices)
    for name in backbones:
        try:
            validate_backbone(str(name))
        except FersearchError as exc:
            raise SearchSpaceError(f"{source}: backbone: {exc}") from None
    check_model_combinations(space.fixed, space.params, source)


# Names people type from other tools, mapped to fersearch's keys.
_ALIASES = {
    "learning_rate": "lr",
    "wd": "weight_decay",
    "bs": "batch_size",
    "model": "backbone",
    "num_epochs": "epochs",
    "smoothing": "label_smoothing",
    "mixup": "mixup_alpha",
}


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, TUNABLE_KEYS, n=3, cutoff=0.6)
    if key in _ALIASES:
        close = [_ALIASES[key], *close]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}{one_of(key, TUNABLE_KEYS, limit=len(TUNABLE_KEYS))}"


def _validate_values(values: dict, source: str, where: str) -> None:
    try:
        build_config(values)
    except ConfigError as exc:
        raise SearchSpaceError(f"{source}: {where}: {exc}") from None


def sample_params(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for every active parameter, in file order (conditions see earlier ones)."""
    params: dict[str, Any] = {}
    for key, spec in space.params.items():
        if spec.when and not all(
            params.get(k) in (v if isinstance(v, list) else [v]) for k, v in spec.when.items()
        ):
            continue
        if isinstance(spec, FloatParam):
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, IntParam):
            params[key] = trial.suggest_int(key, spec.low, spec.high, log=spec.log, step=spec.step)
        else:
            params[key] = trial.suggest_categorical(key, spec.choices)
    return params


def resolve_config(space: SearchSpace, params: dict[str, Any], data: DataConfig, seed: int) -> TrialConfig:
    values = {"seed": seed, **space.fixed, **params, "data": data.model_dump()}
    return build_config(values)
