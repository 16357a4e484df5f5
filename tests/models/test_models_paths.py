"""Fusion with face and context inputs, clips over time, the Bi-LSTM's token sequence,
freezing of timm backbones, the seed search spaces, and one training run through fit()."""

from __future__ import annotations

import optuna
import pytest
import torch

from fersearch.config import DataConfig
from fersearch.errors import ModelError
from fersearch.models import create_model, param_groups
from fersearch.search.space import load_space, resolve_config, sample_params

from .conftest import CLIP_TINY, FER7


@pytest.mark.parametrize("fusion", ["xattn", "concat"])
@pytest.mark.parametrize("backbone", ["test_convnext", CLIP_TINY])
def test_fusion_reads_the_context(fusion, backbone, cfg):
    model = create_model(cfg(backbone=backbone, fusion=fusion, fusion_heads=4, fusion_layers=2), 7).eval()
    s = model.preprocess["image_size"]
    face, ctx_a, ctx_b = torch.randn(3, 2, 3, s, s).unbind(0)
    out_a = model(face, context=ctx_a)
    out_b = model(face, context=ctx_b)
    assert out_a["logits"].shape == (2, 7)
    assert not torch.allclose(out_a["logits"], out_b["logits"])  # the context changes the answer
    with pytest.raises(ModelError, match="context="):
        model(face)


def test_xattn_fusion_is_face_query_context_key_value(cfg):
    """Cross-attention output tokens follow the face tokens (one per face token), while the
    attended values come from the context: swapping context token order changes nothing."""
    model = create_model(cfg(backbone="test_resnet", fusion="xattn", fusion_heads=4), 7).eval()
    face_tokens = torch.randn(2, 5, 96)
    ctx_tokens = torch.randn(2, 9, 96)
    fused = model.fusion(face_tokens, ctx_tokens)
    assert fused.shape == face_tokens.shape
    torch.testing.assert_close(fused, model.fusion(face_tokens, ctx_tokens.flip(1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temporal", ["mean", "transformer"])
def test_clip_input_pools_over_frames(temporal, cfg):
    model = create_model(cfg(backbone=CLIP_TINY, temporal=temporal, fusion="concat"), 7).eval()
    clip = torch.randn(2, 4, 3, 32, 32)  # (B, T, 3, H, W)
    out = model(clip, context=torch.randn(2, 4, 3, 32, 32))
    assert out["logits"].shape == (2, 7)
    out["logits"].sum().backward()
    if temporal == "transformer":
        assert model.temporal.frame_embed.grad is not None


def test_mean_over_identical_frames_equals_one_frame(cfg):
    model = create_model(cfg(backbone="test_resnet", head="mlp"), 7).eval()
    frame = torch.randn(2, 3, 32, 32)
    still = frame[:, None].expand(-1, 5, -1, -1, -1)
    torch.testing.assert_close(model(still)["logits"], model(frame)["logits"], rtol=1e-5, atol=1e-5)


def test_bilstm_reads_the_49_tokens_of_a_7x7_map(cfg):
    model = create_model(cfg(head="bilstm", lstm_hidden=16, image_size=224), 7)
    seen = []
    model.head.lstm.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    out = model(torch.randn(1, 3, 224, 224))
    assert seen == [torch.Size([1, 49, 96])] and out["features"].shape == (1, 32)


def test_timm_partial_unfreezing(cfg):
    config = cfg(backbone="test_convnext", freeze_backbone=True, unfreeze_last=2, lr_backbone=1e-5)
    model = create_model(config, 7)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    # timm's grouping: the last two blocks are stages.3.blocks.{0,1} (the stage's downsample goes
    # with its first block); the final head norm goes with the last block
    last = ("model.stages.3.blocks.", "model.stages.3.downsample.", "model.head.norm")
    assert trainable and all(n.startswith(last) for n in trainable)
    assert any(".blocks.0." in n for n in trainable) and any(".blocks.1." in n for n in trainable)
    groups = {g["name"]: g for g in param_groups(model, config)}
    n_backbone = sum(len(g["params"]) for name, g in groups.items() if name.startswith("backbone"))
    assert n_backbone == len(trainable) and groups["backbone/decay"]["lr"] == 1e-5
    with pytest.raises(ModelError, match="exceeds"):
        create_model(cfg(backbone="test_convnext", freeze_backbone=True, unfreeze_last=99), 7)


TINY_SUBSTITUTE = {"open_clip:": CLIP_TINY, "convnext": "test_convnext", "efficientnet": "test_efficientnet"}


def _tiny(backbone: str) -> str:
    if backbone.startswith("swin"):
        return "test_vit"
    return next(v for k, v in TINY_SUBSTITUTE.items() if backbone.startswith(k))


@pytest.mark.parametrize("name", ["clip_caer", "convnext_emotenet", "efficientnet_bilstm", "compound_au"])
def test_seed_space_trials_build_and_run(name):
    """Sample trials from each seed space with the real sampler; every resolved config builds
    and runs (the real-size backbone swapped for a tiny one of the same family)."""
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_conditional = set()
    for _ in range(4):
        trial = study.ask()
        params = sample_params(trial, space)
        seen_conditional |= set(params) & {"lstm_hidden", "fusion_heads", "fpn_dim"}
        config = resolve_config(space, params, DataConfig(root="."), seed=trial.number)
        if "lstm_hidden" in params:
            assert config.head == "bilstm"
        if "fusion_heads" in params:
            assert config.fusion == "xattn"
        small = config.model_copy(
            update={
                "backbone": _tiny(config.backbone),
                "pretrained": False,
                "image_size": 64 if not config.backbone.startswith("open_clip:") else None,
                "lstm_hidden": min(config.lstm_hidden, 16),
                "fusion_heads": 4,
                "fpn_dim": 16,
                "head_hidden": 16,
            }
        )
        model = create_model(small, 5, FER7[:5])
        s = model.preprocess["image_size"]
        x = torch.randn(2, 3, s, s)
        out = model(x, context=torch.randn_like(x)) if small.fusion != "none" else model(x)
        assert out["logits"].shape == (2, 5) and torch.isfinite(out["logits"]).all()
        assert ("au_logits" in out) == (name == "compound_au")
        study.tell(trial, 0.5)


def test_fit_trains_a_clip_prompt_model(tiny_data, cfg):
    from fersearch.data import load_manifest
    from fersearch.data.decode import decode_split
    from fersearch.train import fit

    config = cfg(
        backbone=CLIP_TINY,
        head="prompt",
        epochs=1,
        batch_size=64,
        warmup_epochs=0,
        lr=1e-3,
        lr_prompt=1e-2,
        lr_backbone=1e-5,
        data={"root": str(tiny_data)},
    )
    manifest = load_manifest(config.data)
    train, val = decode_split(manifest, "train", 32), decode_split(manifest, "val", 32)
    k = len(manifest.class_names)
    torch.manual_seed(config.seed)  # fit seeds the same way before building: same initial weights
    initial = create_model(config, k)
    result = fit(config, train, val, num_classes=k)
    assert len(result.history) == 1 and 0.0 <= result.history[0]["uar"] <= 1.0
    assert result.history[0]["train_loss"] > 0
    trained = result.model.cpu()
    assert not torch.allclose(trained.head.ctx, initial.head.ctx)  # the prompt learned
    assert not torch.equal(trained.backbone.visual.proj, initial.backbone.visual.proj)  # at lr_backbone
    torch.testing.assert_close(
        trained.head.text.token_embedding.weight, initial.head.text.token_embedding.weight
    )
