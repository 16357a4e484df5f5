"""pretrained: false | true | <tag> | <path>: local files round-trip, missing weights fail fast."""

from __future__ import annotations

import time

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

from fersearch.errors import ModelError
from fersearch.models import create_model

from .conftest import CLIP_TINY


def _save(module: torch.nn.Module, path):
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def _assert_same(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_local_safetensors_file_round_trips(tmp_path, cfg, no_network):
    source = timm.create_model("test_convnext", num_classes=0)
    path = tmp_path / "convnext.safetensors"
    _save(source, path)
    model = create_model(cfg(backbone="test_convnext", pretrained=str(path)), 7)
    _assert_same(model.backbone.model, source)
    # a directory holding the one weights file works the same
    again = create_model(cfg(backbone="test_convnext", pretrained=str(tmp_path)), 7)
    _assert_same(again.backbone.model, source)


def test_timm_checkpoint_with_classifier_loads_into_the_backbone(tmp_path, cfg, no_network):
    source = timm.create_model("test_resnet", num_classes=1000)  # as published: with its fc
    path = tmp_path / "r.safetensors"
    _save(source, path)
    model = create_model(cfg(backbone="test_resnet", pretrained=str(path)), 7)
    torch.testing.assert_close(model.backbone.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_hugging_face_cache_directory(tmp_path, cfg, no_network):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<sha>/file}."""
    source = timm.create_model("test_resnet", num_classes=0)
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    _save(source, repo / "snapshots" / sha / "model.safetensors")
    model = create_model(cfg(pretrained=str(tmp_path / "hub")), 7)
    _assert_same(model.backbone.model, source)


def test_default_space_backbone_loads_its_tagged_checkpoint_from_the_cache(
    tmp_path, cfg, no_network, monkeypatch
):
    """``backbone: efficientnet_b0.ra_in1k`` with ``pretrained: true`` (the default space's way
    of naming a checkpoint) reads timm/efficientnet_b0.ra_in1k from the Hugging Face cache."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source = timm.create_model("efficientnet_b0", num_classes=1000)  # as published: with its classifier
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--timm--efficientnet_b0.ra_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    _save(source, repo / "snapshots" / sha / "model.safetensors")
    model = create_model(cfg(backbone="efficientnet_b0.ra_in1k", pretrained=True, image_size=224), 7)
    torch.testing.assert_close(model.backbone.model.conv_stem.weight, source.conv_stem.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.model.conv_head.weight, source.conv_head.weight, rtol=0, atol=0)


def test_missing_pretrained_tag_offline_is_one_clear_fast_error(tmp_path, cfg, no_network, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as info:
        create_model(cfg(pretrained=True), 7)
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert (
        "'test_resnet.r160_in1k'" in msg
        and "timm/test_resnet.r160_in1k" in msg
        and "model.safetensors" in msg
    )
    assert "FERSEARCH_ALLOW_DOWNLOAD=1" in msg and "pretrained: false" in msg
    with pytest.raises(ModelError, match="timm/vit_base_patch16_clip_224.openai"):
        create_model(cfg(backbone="open_clip:ViT-B-16", pretrained="openai"), 7)
    print(f"missing-weights errors raised in {elapsed:.3f}s")  # no network: no_network would fail


def test_offline_guard_wins_over_the_download_switch(tmp_path, cfg, no_network, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("FERSEARCH_ALLOW_DOWNLOAD", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in"):
        create_model(cfg(pretrained="r160_in1k"), 7)


def test_unknown_tags_and_bad_paths(tmp_path, cfg, no_network):
    with pytest.raises(ModelError, match="unknown pretrained tag 'nope' for test_resnet; valid: r160_in1k"):
        create_model(cfg(pretrained="nope"), 7)
    with pytest.raises(ModelError, match="valid: openai, laion400m_e31"):
        create_model(cfg(backbone="open_clip:ViT-B-32", pretrained="nope"), 7)
    with pytest.raises(ModelError, match="not found"):
        create_model(cfg(pretrained=str(tmp_path / "missing.safetensors")), 7)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match="not a weights file"):
        create_model(cfg(pretrained=str(tmp_path / "notes.txt")), 7)
    wrong = tmp_path / "wrong.safetensors"
    _save(timm.create_model("test_convnext", num_classes=0), wrong)
    with pytest.raises(ModelError, match="do not fit it"):
        create_model(cfg(pretrained=str(wrong)), 7)


def test_open_clip_local_file(tmp_path, cfg, no_network):
    import open_clip

    clip = open_clip.create_model("test-clip-ViT")
    path = tmp_path / "clip.safetensors"
    _save(clip, path)
    model = create_model(cfg(backbone=CLIP_TINY, pretrained=str(path), head="prompt"), 7)
    _assert_same(model.backbone.visual, clip.visual)
    torch.testing.assert_close(model.head.text.token_embedding.weight, clip.token_embedding.weight)
