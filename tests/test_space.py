from pathlib import Path

import optuna
import pytest

from fersearch.config import DataConfig
from fersearch.errors import SearchSpaceError
from fersearch.search.space import BUILTIN_DIR, load_space, parse_space, resolve_config, sample_params

GOOD = {
    "fixed": {"epochs": 3, "image_size": 32},
    "params": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "head": {"type": "categorical", "choices": ["linear", "mlp"]},
        "head_hidden": {"type": "int", "low": 16, "high": 64, "when": {"head": "mlp"}},
        "backbone": {"type": "categorical", "choices": ["test_resnet"]},
    },
}


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_builtin_spaces_load(path: Path):
    space = load_space(path)
    assert space.params


def test_builtin_name_resolves():
    assert load_space("demo").fixed["image_size"] == 32


def _err(raw) -> str:
    with pytest.raises(SearchSpaceError) as info:
        parse_space(raw, source="space.yaml")
    return str(info.value)


def test_unknown_key_names_file_key_and_valid_keys():
    msg = _err({"params": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}})
    assert "space.yaml" in msg and "learning_rate" in msg and "lr" in msg


def test_unknown_top_level_key():
    msg = _err({**GOOD, "prunr": {}})
    assert "unknown key 'prunr'" in msg


def test_low_greater_than_high():
    msg = _err({"params": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}})
    assert "low (0.1) > high (0.01)" in msg and "params.lr" in msg


def test_value_outside_config_range():
    msg = _err({"params": {"dropout": {"type": "float", "low": 0.0, "high": 1.5}}})
    assert "params.dropout" in msg and "dropout" in msg


def test_unknown_backbone_lists_close_names():
    msg = _err({"params": {"backbone": {"type": "categorical", "choices": ["resnet181"]}}})
    assert "resnet181" in msg and "resnet18" in msg


def test_condition_must_name_a_categorical_choice():
    raw = {
        "params": {
            **GOOD["params"],
            "head_hidden": {**GOOD["params"]["head_hidden"], "when": {"head": "lstm"}},
        }
    }
    msg = _err(raw)
    assert "lstm" in msg and "linear" in msg


CLIP = "open_clip:test-clip-ViT"
BACKBONES = {"type": "categorical", "choices": ["test_resnet", CLIP]}


def test_a_prompt_head_the_space_can_pair_with_a_timm_backbone_is_refused_at_load():
    msg = _err(
        {"params": {"backbone": BACKBONES, "head": {"type": "categorical", "choices": ["linear", "prompt"]}}}
    )
    assert "backbone: test_resnet, head: prompt" in msg and "CLIP text tower" in msg
    assert "params.<key>.when" in msg


def test_the_same_parts_made_conditional_load():
    head = {"type": "categorical", "choices": ["prompt", "linear"], "when": {"backbone": CLIP}}
    space = parse_space({"params": {"backbone": BACKBONES, "head": head}})
    assert space.params["head"].when == {"backbone": CLIP}


def test_a_feature_pyramid_on_a_fixed_clip_tower_is_refused():
    msg = _err({"fixed": {"backbone": CLIP, "fpn": True}})
    assert "single-scale" in msg and "change the fixed values" in msg


@pytest.mark.parametrize(
    "params, said",
    [
        (
            {"fusion_heads": {"type": "int", "low": 1, "high": 8}},
            "fusion_heads 5 does not divide the token width 96",
        ),
        ({"fusion_heads": {"type": "int", "low": 4, "high": 8, "step": 4}}, None),
        (
            {
                "fpn": {"type": "categorical", "choices": [False, True]},
                "fpn_dim": {"type": "int", "low": 64, "high": 128},
            },
            "fusion_heads 8 does not divide the token width 65",
        ),
        (
            {
                "fpn": {"type": "categorical", "choices": [False, True]},
                "fpn_dim": {"type": "int", "low": 64, "high": 128, "step": 8, "when": {"fpn": True}},
            },
            None,
        ),
    ],
)
def test_fusion_heads_must_divide_every_width_the_space_can_sample(params, said):
    raw = {"fixed": {"backbone": "test_resnet", "fusion": "xattn"}, "params": params}
    if said is None:
        parse_space(raw)
    else:
        assert said in _err(raw)


def test_fixed_and_sampled_twice():
    msg = _err({"fixed": {"lr": 0.1}, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}})
    assert "both fixed and sampled" in msg


def test_conditional_sampling_and_resolution():
    space = parse_space(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_heads = set()
    for _ in range(12):
        trial = study.ask()
        params = sample_params(trial, space)
        seen_heads.add(params["head"])
        assert ("head_hidden" in params) == (params["head"] == "mlp")
        config = resolve_config(space, params, DataConfig(root="/data"), seed=trial.number)
        assert config.epochs == 3 and config.image_size == 32 and config.seed == trial.number
        study.tell(trial, 0.5)
    assert seen_heads == {"linear", "mlp"}


def test_max_epochs_from_fixed_or_sampled():
    assert parse_space(GOOD).max_epochs == 3
    raw = {"params": {"epochs": {"type": "int", "low": 2, "high": 9}}}
    assert parse_space(raw).max_epochs == 9


@pytest.mark.parametrize(
    "name, cls",
    [
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_sampler_names_build_optuna_samplers(name, cls):
    from fersearch.search.study import make_sampler

    space = parse_space({**GOOD, "sampler": {"name": name, "n_startup_trials": 2, "seed": 0}}, source="s")
    assert isinstance(make_sampler(space), cls)


def test_gp_sampler_runs_the_space_past_its_start_up_trials():
    """The GP sampler runs the space's parameters, the conditional one (head_hidden) included,
    past its start-up trials."""
    from fersearch.search.study import make_sampler

    space = parse_space({**GOOD, "sampler": {"name": "gp", "n_startup_trials": 3, "seed": 0}}, source="s")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(space))

    def objective(trial):
        p = sample_params(trial, space)
        return -abs(p["lr"] - 3e-3) - (0.01 if p["head"] == "mlp" else 0.0)

    study.optimize(objective, n_trials=8)
    assert len(study.trials) == 8 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert any("head_hidden" in t.params for t in study.trials if t.params["head"] == "mlp")


def test_unknown_sampler_lists_the_valid_names():
    msg = _err({**GOOD, "sampler": {"name": "cmaes"}})
    assert "cmaes" in msg and "tpe" in msg and "gp" in msg


def test_successive_halving_prunes_below_the_top_third_at_its_rung():
    """successive_halving: one rung at min_resource; a trial continues only if its value there is
    in the top 1/reduction_factor of the trials that reached it (the first one always does)."""
    from fersearch.search.study import make_pruner

    raw = {**GOOD, "pruner": {"name": "successive_halving", "min_resource": 2, "reduction_factor": 3}}
    pruner = make_pruner(parse_space(raw, source="s"))
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    pruned = []
    for value in (0.5, 0.2, 0.9, 0.1):  # the 2nd and 4th are below the best at step 2
        trial = study.ask()
        trial.report(value, 1)
        trial.report(value, 2)
        pruned.append(trial.should_prune())
        if pruned[-1]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    assert pruned == [False, True, False, True]
