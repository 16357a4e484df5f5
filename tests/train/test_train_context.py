"""Clip and face/context datasets through training: packing, augmentation, fusion, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from fersearch.config import build_config
from fersearch.data import load_manifest
from fersearch.data.augment import augment_packed, build_pipeline
from fersearch.data.decode import decode_split
from fersearch.data.views import pack, split_views
from fersearch.errors import ModelError
from fersearch.models import create_model
from fersearch.runtime import to_input
from fersearch.train import fit
from fersearch.train.augment import flip_and_shift


@pytest.fixture(scope="module")
def raer(tmp_path_factory):
    from fersearch.data.synthetic_context import generate_context

    root = tmp_path_factory.mktemp("raer")
    generate_context(root, n=90, size=40, frames=3, seed=0)
    return root


def tiny_config(root, **over):
    values = {
        "data": {"root": str(root), "frames": over.pop("frames", 1)},
        "backbone": "test_resnet",
        "image_size": 32,
        "epochs": 2,
        "batch_size": 16,
        "warmup_epochs": 0,
        "fusion_heads": 2,
        "device": "cpu",
        **over,
    }
    return build_config(values)


def test_pack_orders_frames_then_context_and_the_model_unpacks_it():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 3, 8, 8, 3), dtype=np.uint8)
    context = rng.integers(0, 255, (2, 3, 8, 8, 3), dtype=np.uint8)
    packed = pack(frames, context)
    assert packed.shape == (2, 8, 8, 18)
    views = split_views(packed[1])
    assert all(np.array_equal(views[t], frames[1, t]) for t in range(3))
    assert all(np.array_equal(views[3 + t], context[1, t]) for t in range(3))
    assert np.array_equal(pack(frames[:, 0]), frames[:, 0])  # a plain image batch passes unchanged

    cfg = tiny_config("/nonexistent", fusion="xattn", frames=3)
    torch.manual_seed(0)
    model = create_model(cfg, 5).eval()
    pre = model.preprocess

    def norm(arr):
        return to_input(torch.from_numpy(np.ascontiguousarray(arr)), pre["mean"], pre["std"])

    x = norm(packed)
    face, ctx = (norm(a.reshape(6, 8, 8, 3)).unflatten(0, (2, 3)) for a in (frames, context))
    with torch.no_grad():
        assert torch.allclose(model(x)["logits"], model(face, context=ctx)["logits"], atol=1e-5)
    with pytest.raises(ModelError, match="3 channels per view"):
        model(torch.zeros(2, 15, 8, 8))


def test_every_view_of_a_sample_gets_the_same_augmentation():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    sample = np.concatenate([image, image, image], axis=-1)  # three identical views
    pipe = build_pipeline("strong", 24, 1.5, views=3)
    changed = 0
    for seed in range(5):
        pipe.set_random_seed(seed)
        out = split_views(augment_packed(pipe, sample))
        changed += not np.array_equal(out[0], image)
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    assert changed >= 4  # the pipeline really transforms (the same way for every view)
    x = torch.from_numpy(np.stack([sample] * 4)).permute(0, 3, 1, 2).float()
    y = flip_and_shift(x, True, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 0:3], y[:, 3:6]) and torch.equal(y[:, 0:3], y[:, 6:9])


@pytest.mark.parametrize(
    "over",
    [
        {"fusion": "xattn", "frames": 3, "temporal": "transformer", "mixup_alpha": 0.2, "swa_start": 0.5},
        {"fusion": "concat", "augment": "basic", "cutmix_alpha": 0.3},
        {"frames": 3, "augment": "strong"},
        {"fusion": "concat", "frames": 2, "augment": "basic", "augment_on": "device"},
    ],
    ids=["xattn-clips", "concat-albumentations", "clips-faces-only", "concat-clips-device-augment"],
)
def test_fit_on_clips_and_context(raer, over):
    cfg = tiny_config(raer, **over)
    manifest = load_manifest(cfg.data)
    assert manifest.frames == cfg.data.frames
    train, val = decode_split(manifest, "train", 32), decode_split(manifest, "val", 32)
    frames = cfg.data.frames
    assert train.images.shape[1:] == ((frames, 32, 32, 3) if frames > 1 else (32, 32, 3))
    assert train.context is not None and train.context.shape == train.images.shape
    result = fit(cfg, train, val, manifest.num_classes, class_names=list(manifest.class_names))
    assert result.best_val_probs.shape == (len(val.labels), manifest.num_classes)
    assert np.allclose(result.best_val_probs.sum(1), 1.0, atol=1e-4)
    assert len(result.history) == 2 and all(np.isfinite(r["train_loss"]) for r in result.history)


def test_fusion_without_context_views_is_a_clear_error(tiny_data):
    cfg = tiny_config(tiny_data, fusion="xattn")
    manifest = load_manifest(cfg.data)
    train, val = decode_split(manifest, "train", 32), decode_split(manifest, "val", 32)
    with pytest.raises(ModelError, match="no context views.*raer layout"):
        fit(cfg, train, val, manifest.num_classes)


def test_search_and_finalize_a_fusion_model_on_clips_through_the_cli(raer, tmp_path, capsys):
    from fersearch.cli import main

    space = {
        "fixed": {
            "image_size": 32,
            "epochs": 2,
            "warmup_epochs": 0,
            "backbone": "test_resnet",
            "batch_size": 16,
            "fusion_heads": 2,
            "temporal": "transformer",
        },
        "params": {
            "fusion": {"type": "categorical", "choices": ["xattn", "concat"]},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    space_file = tmp_path / "fusion.yaml"
    space_file.write_text(yaml.safe_dump(space))
    storage = str(tmp_path / "journal.log")
    common = ["--study", "ctx", "--storage", storage]
    argv = ["search", *common, "--data", str(raer), "--space", str(space_file), "--n-trials", "2"]
    argv += ["--frames", "2"]
    assert main(argv) == 0
    out = tmp_path / "final"
    assert main(["finalize", *common, "--top", "1", "--out", str(out), "--no-onnx"]) == 0
    import json

    report = json.loads((out / "report.json").read_text())
    n_test = len(load_manifest(build_config({"data": {"root": str(raer)}}).data).splits["test"])
    assert report["test"]["n"] == n_test
    member = report["members"][0]["config"]
    assert member["fusion"] in ("xattn", "concat") and member["data"]["frames"] == 2
