"""``backbone: ir50``: face.evoLVe's IR-50 key layout loads key for key, broken files are clear
errors, the maps and preprocessing are the face network's, and check_config agrees with building.

The layout facts below are read off face.evoLVe's ``backbone/model_irse.py`` (``IR_50``): units
[3, 4, 14, 3] at 64/128/256/512 channels, each stage's first unit strided, a Conv1x1+BN shortcut
only where the width changes (a parameter-free MaxPool2d(1, stride) elsewhere), and an
``output_layer`` of BN2d, Dropout, Flatten, Linear(512*7*7, 512), BN1d.
"""

from __future__ import annotations

import itertools

import optuna
import pytest
import torch
from safetensors.torch import save_file

from fersearch.config import DataConfig
from fersearch.errors import ModelError
from fersearch.models import (
    backbone_preprocess,
    check_config,
    create_backbone,
    create_model,
    preprocess_for,
    validate_backbone,
)
from fersearch.models.backbones.ir50 import IR50_FILE
from fersearch.search.space import CategoricalParam, load_space, resolve_config, sample_params

from .conftest import FER7


def published_layout(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights as face.evoLVe's release holds them: the body's keys plus the
    face-embedding ``output_layer`` that FER does not use."""
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    bn2d, linear, bn1d = (
        torch.nn.BatchNorm2d(512),
        torch.nn.Linear(512 * 7 * 7, 512),
        torch.nn.BatchNorm1d(512),
    )
    for index, module in ((0, bn2d), (3, linear), (4, bn1d)):
        state |= {f"output_layer.{index}.{k}": v for k, v in module.state_dict().items()}
    return state


def _assert_loaded(model, state: dict) -> None:
    own = model.backbone.state_dict()
    body = {k for k in state if not k.startswith("output_layer.")}
    assert set(own) == body
    for k in own:
        torch.testing.assert_close(own[k], state[k], rtol=0, atol=0, msg=k)


@pytest.fixture
def source():
    """A random IR-50 with non-trivial BatchNorm statistics, so running stats are compared too."""
    backbone = create_backbone("ir50")
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return backbone


def test_key_layout_is_face_evolves_ir50(source):
    shapes = {k: tuple(v.shape) for k, v in source.state_dict().items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["input_layer.2.weight"] == (64,)  # PReLU
    assert shapes["body.0.res_layer.0.weight"] == (64,)  # BN first: a pre-activation unit
    assert shapes["body.0.res_layer.1.weight"] == (64, 64, 3, 3)
    assert shapes["body.0.res_layer.2.weight"] == (64,)  # PReLU
    assert shapes["body.3.res_layer.3.weight"] == (128, 128, 3, 3)
    assert shapes["body.23.res_layer.4.running_var"] == (512,)
    units = {int(k.split(".")[1]) for k in shapes if k.startswith("body.")}
    assert units == set(range(24))
    conv_shortcuts = {int(k.split(".")[1]) for k in shapes if ".shortcut_layer.0.weight" in k}
    assert conv_shortcuts == {3, 7, 21}
    assert shapes["body.21.shortcut_layer.0.weight"] == (512, 256, 1, 1)
    assert not any(k.startswith("output_layer.") for k in shapes)  # FER reads the maps


@pytest.mark.parametrize("legacy", [True, False], ids=["torch<1.6 format", "zip format"])
def test_published_state_dict_loads_through_pretrained_path(tmp_path, cfg, no_network, source, legacy):
    """torch.save of the state dict, as the 2019 release was made (then PyTorch's legacy
    format), read with weights_only=True; the output_layer keys are skipped."""
    state = published_layout(source)
    path = tmp_path / IR50_FILE
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    model = create_model(cfg(backbone="ir50", pretrained=str(path)), 7)
    _assert_loaded(model, state)


def test_safetensors_and_files_without_the_embedding_layer_load(tmp_path, cfg, no_network, source):
    state = source.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "ir50.safetensors"))
    _assert_loaded(
        create_model(cfg(backbone="ir50", pretrained=str(tmp_path / "ir50.safetensors")), 7), state
    )


def test_files_from_before_batchnorm_counters_load(tmp_path, cfg, source):
    state = {k: v for k, v in published_layout(source).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = create_model(cfg(backbone="ir50", pretrained=str(tmp_path / "old.pth")), 7)
    torch.testing.assert_close(model.backbone.body[5].res_layer[1].weight, state["body.5.res_layer.1.weight"])


def _broken(state: dict, case: str) -> dict:
    state = dict(state)
    if case == "missing":
        del state["body.5.res_layer.1.weight"]
    elif case == "renamed":
        state["body.5.res_layer.1.kernel"] = state.pop("body.5.res_layer.1.weight")
    elif case == "wrong shape":
        state["body.5.res_layer.1.weight"] = torch.zeros(128, 128, 1, 1)
    return state


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", r"missing body\.5\.res_layer\.1\.weight\)"),
        ("renamed", r"missing body\.5\.res_layer\.1\.weight; unexpected body\.5\.res_layer\.1\.kernel"),
        (
            "wrong shape",
            r"wrong shape body\.5\.res_layer\.1\.weight \(128, 128, 1, 1\) \(expected \(128, 128, 3, 3\)\)",
        ),
    ],
)
def test_a_state_dict_that_does_not_fit_is_a_clear_error(tmp_path, cfg, source, case, expected):
    path = tmp_path / "broken.pth"
    torch.save(_broken(source.state_dict(), case), path)
    with pytest.raises(ModelError, match=expected) as info:
        create_model(cfg(backbone="ir50", pretrained=str(path)), 7)
    assert IR50_FILE in str(info.value) and str(path) in str(info.value)


def test_pickled_objects_are_refused_not_unpickled(tmp_path, cfg):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a module, not a state dict
    with pytest.raises(ModelError, match="pickled objects besides tensors.*weights_only=True"):
        create_model(cfg(backbone="ir50", pretrained=str(path)), 7)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ModelError, match="not a flat state dict of tensors"):
        create_model(cfg(backbone="ir50", pretrained=str(tmp_path / "ckpt.pth")), 7)


def test_pretrained_true_reads_the_release_from_torch_hub_and_never_downloads(
    tmp_path, cfg, no_network, monkeypatch, source
):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / IR50_FILE
    with pytest.raises(ModelError) as info:
        create_model(cfg(backbone="ir50", pretrained=True), 7)
    msg = str(info.value)
    assert str(expected) in msg and "MS-Celeb-1M" in msg and "never downloaded" in msg
    assert "pretrained: false" in msg
    with pytest.raises(ModelError, match=f"no pretrained tags.*{IR50_FILE}"):
        create_model(cfg(backbone="ir50", pretrained="ms1m"), 7)
    expected.parent.mkdir(parents=True)
    state = published_layout(source)
    torch.save(state, expected)
    _assert_loaded(create_model(cfg(backbone="ir50", pretrained=True), 7), state)


def test_forward_at_112_gives_the_stage_maps():
    x = torch.randn(2, 3, 112, 112)
    single, multi = create_backbone("ir50").eval(), create_backbone("ir50", multi_scale=True).eval()
    with torch.no_grad():
        maps = single(x).maps
        pyramid = multi(x).maps
    assert [tuple(m.shape) for m in maps] == [(2, 512, 7, 7)] and single.channels == [512]
    assert [tuple(m.shape) for m in pyramid] == [(2, 128, 28, 28), (2, 256, 14, 14), (2, 512, 7, 7)]
    assert multi.channels == [128, 256, 512]
    assert single(x).prefix is None


def test_model_owns_the_face_preprocessing(cfg):
    face = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "image_size": 112}
    assert backbone_preprocess("ir50") == face
    config = cfg(backbone="ir50", image_size=None)
    assert preprocess_for(config) == face
    model = create_model(config, 7).eval()
    assert model.preprocess == face
    assert model(torch.randn(1, 3, 112, 112))["logits"].shape == (1, 7)
    assert create_model(cfg(backbone="ir50", image_size=96), 7).preprocess["image_size"] == 96


def test_the_bare_name_is_ir50s_and_near_misses_point_to_it():
    validate_backbone("ir50")
    for typo in ("IR50", "ir_50"):
        with pytest.raises(ModelError, match="did you mean ir50"):
            validate_backbone(typo)
    validate_backbone("resnet50")  # other bare names stay timm's


def test_partial_unfreezing_counts_residual_units(cfg):
    model = create_model(cfg(backbone="ir50", freeze_backbone=True, unfreeze_last=3), 7)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert {n.split(".")[1] for n in trainable} == {"21", "22", "23"}  # the last stage's units
    assert all(n.startswith("body.") for n in trainable)
    with pytest.raises(ModelError, match="exceeds the 25 blocks"):  # the stem and 24 units
        create_model(cfg(backbone="ir50", freeze_backbone=True, unfreeze_last=26), 7)


GRID = list(itertools.product(["linear", "prompt"], [False, True], [("none", 8), ("xattn", 3), ("xattn", 4)]))


@pytest.mark.parametrize("head, fpn, fusion", GRID, ids=str)
def test_check_config_agrees_with_building(cfg, head, fpn, fusion):
    config = cfg(backbone="ir50", head=head, fpn=fpn, fpn_dim=48, fusion=fusion[0], fusion_heads=fusion[1])
    verdicts = []
    for attempt in (lambda: create_model(config, 7, FER7), lambda: check_config(config)):
        try:
            attempt()
            verdicts.append(None)
        except ModelError as exc:
            verdicts.append(str(exc))
    assert verdicts[0] == verdicts[1]
    # a prompt head needs CLIP's text tower; 3 heads do not divide ir50's 512 channels (the
    # pyramid's 48 they do)
    refused = head == "prompt" or (fusion == ("xattn", 3) and not fpn)
    assert (verdicts[1] is not None) == refused
    if head == "prompt":
        assert "needs a CLIP text tower; backbone 'ir50' has none" in verdicts[1]


def test_face_space_samples_ir50_against_imagenet_backbones():
    space = load_space("face")  # checks every model combination it can sample on load
    spec = space.params["backbone"]
    assert isinstance(spec, CategoricalParam) and "ir50" in spec.choices
    assert {"resnet50", "convnext_tiny"} <= set(spec.choices)
    assert space.fixed.get("pretrained") is True and "lr_backbone" in space.params
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    built = set()
    for _ in range(12):
        trial = study.ask()
        params = sample_params(trial, space)
        config = resolve_config(space, params, DataConfig(root="."), seed=trial.number)
        study.tell(trial, 0.5)
        if config.backbone != "ir50" or config.fpn in built:
            continue
        built.add(config.fpn)
        small = config.model_copy(
            update={"pretrained": False, "image_size": 32, "fpn_dim": 16, "head_hidden": 16}
        )
        out = create_model(small, 7)(torch.randn(2, 3, 32, 32))
        assert out["logits"].shape == (2, 7) and torch.isfinite(out["logits"]).all()
    assert built  # at least one ir50 trial was sampled and built
