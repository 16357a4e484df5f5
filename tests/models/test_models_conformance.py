"""Every registered component, built tiny: forward shapes, a backward pass, finite outputs."""

from __future__ import annotations

import typing

import pytest
import torch

from fersearch.config import ATTENTION_BLOCKS, TrialConfig
from fersearch.errors import ConfigError, ModelError
from fersearch.models import (
    AUHead,
    HeadSpec,
    Neck,
    create_fusion,
    create_head,
    create_model,
    create_neck,
    create_pool,
    create_temporal,
    list_fusions,
    list_heads,
    list_necks,
    list_pools,
    list_temporal,
    validate_backbone,
)

from .conftest import CLIP_TINY, FER7


def _check_backward(out: torch.Tensor, params) -> None:
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in params if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def _literal(field: str) -> set:
    args = typing.get_args(TrialConfig.model_fields[field].annotation)
    flat = set()
    for a in args:
        flat |= set(typing.get_args(a)) if typing.get_origin(a) is typing.Literal else {a}
    return flat - {type(None)}


def test_config_choices_match_the_registries():
    assert set(ATTENTION_BLOCKS) == set(list_necks())
    assert _literal("pool") == set(list_pools())
    assert _literal("head") == set(list_heads())
    assert _literal("fusion") == set(list_fusions()) | {"none"}
    assert _literal("temporal") == set(list_temporal())


@pytest.mark.parametrize("name", list_necks())
def test_attention_block(name):
    block = create_neck(name, 24)
    x = torch.randn(2, 24, 5, 5, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    _check_backward(y, [x, *block.parameters()])


def test_attention_chain_and_pyramid():
    neck = Neck([8, 16, 32], attention="cbam+eca+se", fpn=True, fpn_dim=12)
    maps = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)]
    y = neck(maps)
    assert y.shape == (2, 12, 4, 4) and neck.out_channels == 12
    assert [type(m).__name__ for m in neck.attention] == [
        "CBAM",
        "EfficientChannelAttention",
        "SqueezeExcite",
    ]
    _check_backward(y, list(neck.parameters()))


@pytest.mark.parametrize("name", list_pools())
def test_pool(name):
    pool = create_pool(name, 16)
    tokens = torch.randn(3, 1 + 9, 16, requires_grad=True)  # one class token + a 3x3 grid
    y = pool(tokens, 1)
    assert y.shape == (3, 16)
    _check_backward(y, [tokens, *pool.parameters()])


def test_gem_interpolates_between_average_and_max():
    pool = create_pool("gem", 4)
    tokens = torch.rand(2, 9, 4) + 0.1
    with torch.no_grad():
        pool.p.fill_(1.0)
        torch.testing.assert_close(pool(tokens), tokens.mean(1))
        pool.p.fill_(200.0)
        torch.testing.assert_close(pool(tokens), tokens.amax(1), rtol=2e-2, atol=0)


def test_cls_pool_needs_a_class_token():
    with pytest.raises(ModelError, match="class token"):
        create_pool("cls", 8)(torch.randn(2, 4, 8), 0)


@pytest.mark.parametrize("name", list_fusions())
def test_fusion(name):
    fusion = create_fusion(name, 16, heads=4, layers=2)
    face = torch.randn(2, 5, 16, requires_grad=True)
    ctx = torch.randn(2, 7, 16, requires_grad=True)
    y = fusion(face, ctx)
    assert y.shape == face.shape
    _check_backward(y, [face, ctx, *fusion.parameters()])


@pytest.mark.parametrize("name", list_temporal())
def test_temporal(name):
    temporal = create_temporal(name, 16)
    x = torch.randn(2, 3, 5, 16, requires_grad=True)  # (B, T, N, C)
    y = temporal(x)
    assert y.shape == (2, 5, 16)
    _check_backward(y, [x, *temporal.parameters()])


@pytest.mark.parametrize("name", list_heads())
def test_head(name, cfg):
    config = cfg(backbone=CLIP_TINY, head=name, lstm_hidden=8, head_hidden=16)
    model = create_model(config, 7, FER7)  # the prompt head takes the CLIP text tower
    spec = HeadSpec(32, 7, config, pool="avg", backbone=model.backbone, class_names=FER7)
    if name == "prompt":
        model.backbone._text.append(model.head.text)  # hand the tower over a second time
    head = create_head(name, spec)
    tokens = torch.randn(3, 1 + 16, 32, requires_grad=True)
    features, logits = head(tokens, 1)
    assert logits.shape == (3, 7) and features.shape == (3, head.out_features)
    _check_backward(logits, [tokens, *head.parameters()])


def test_au_head():
    head = AUHead(16, 18)
    f = torch.randn(4, 16, requires_grad=True)
    y = head(f)
    assert y.shape == (4, 18)
    _check_backward(y, [f, *head.parameters()])


# Whole models: every backbone kind with every neck / head / extra at a tiny size.
MODELS = [
    {"backbone": "test_resnet"},
    {
        "backbone": "test_resnet",
        "head": "mlp",
        "head_layers": 2,
        "head_hidden": 16,
        "dropout": 0.4,
        "head_dropout": 0.6,
    },
    {
        "backbone": "test_efficientnet",
        "attention": "dual",
        "head": "bilstm",
        "lstm_hidden": 16,
        "lstm_layers": 2,
    },
    {"backbone": "test_convnext", "fpn": True, "fpn_dim": 24, "attention": "cbam+eca+se", "pool": "gem"},
    {"backbone": "test_convnext", "pool": "attn", "au_classes": 5},
    {"backbone": "test_vit", "image_size": 64, "head": "mlp", "head_hidden": 16},
    {"backbone": "test_vit", "image_size": 64, "fpn": True, "fpn_dim": 16},
    {"backbone": CLIP_TINY},
    {"backbone": CLIP_TINY, "head": "prompt", "prompt_ctx": 2},
    {
        "backbone": CLIP_TINY,
        "head": "prompt",
        "prompt_class_specific": True,
        "attention": "se",
        "au_classes": 3,
    },
    {"backbone": CLIP_TINY, "head": "bilstm", "lstm_hidden": 8},
    {"backbone": "ir50"},  # the face family: real size (no tiny variant), at 32 px
    {"backbone": "ir50", "fpn": True, "fpn_dim": 16, "attention": "se"},
]


@pytest.mark.parametrize("values", MODELS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v)[:60])
def test_model(values, cfg):
    config = cfg(**values)
    model = create_model(config, 7, FER7)
    size = model.preprocess["image_size"]
    out = model(torch.randn(2, 3, size, size))
    assert out["logits"].shape == (2, 7)
    assert out["features"].shape == (2, model.head.out_features)
    assert ("au_logits" in out) == bool(config.au_classes)
    if config.au_classes:
        assert out["au_logits"].shape == (2, config.au_classes)
    loss = out["logits"].logsumexp(-1).mean() + out.get("au_logits", torch.zeros(1)).mean()
    assert torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable and not missing, missing


def test_model_owns_its_preprocessing(cfg):
    pre = create_model(cfg(backbone="test_efficientnet", image_size=None), 7).preprocess
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406]) and pre["image_size"] == 160
    clip = create_model(cfg(backbone=CLIP_TINY), 7).preprocess
    assert clip["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073]) and clip["image_size"] == 32


def test_unknown_names_list_the_valid_ones(cfg):
    with pytest.raises(ModelError, match="valid: bilstm, linear, mlp, prompt"):
        create_head("lstm", HeadSpec(8, 2, cfg()))
    with pytest.raises(ModelError, match="did you mean cbam"):
        create_neck("cbma", 8)
    with pytest.raises(ConfigError, match="valid: cbam, dual, eca, se"):
        cfg(attention="cbam+bogus")
    with pytest.raises(ModelError, match="did you mean open_clip:ViT-B-16"):
        validate_backbone("open_clip:ViT-B-61")
    with pytest.raises(ModelError, match="valid prefixes: open_clip:"):
        validate_backbone("hf:resnet18")


def test_invalid_combinations_are_clear_errors(cfg):
    with pytest.raises(ModelError, match="open_clip backbone"):
        create_model(cfg(head="prompt"), 7)
    with pytest.raises(ModelError, match="fpn"):
        create_model(cfg(backbone=CLIP_TINY, fpn=True), 7)
    with pytest.raises(ModelError, match="does not divide"):
        create_model(cfg(fusion="xattn", fusion_heads=7), 7)
    with pytest.raises(ModelError, match=r"needs 3\d tokens, CLIP.s text tower takes 32"):
        create_model(cfg(backbone=CLIP_TINY, head="prompt", prompt_ctx=32), 7, FER7)
    with pytest.raises(ModelError, match="freeze_backbone"):
        create_model(cfg(unfreeze_last=2), 7)
