"""albumentations pipelines, progressive strength, TTA views, and the training batch loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersearch.config import DataConfig, TrialConfig
from fersearch.data import load_manifest
from fersearch.data.augment import build_pipeline, progressive_strength
from fersearch.data.decode import decode_split
from fersearch.data.loader import TrainLoader, make_train_loader
from fersearch.errors import InvalidArgument


@pytest.fixture(scope="module")
def arrays(tiny_data):
    m = load_manifest(DataConfig(root=str(tiny_data)))
    return decode_split(m, "train", 32), decode_split(m, "val", 32)


def mean_change(name: str, strength: float, images: np.ndarray) -> float:
    pipe = build_pipeline(name, 32, strength, seed=0)
    out = np.stack([pipe(image=img)["image"] for img in images])
    assert out.shape == images.shape and out.dtype == np.uint8
    return float(np.abs(out.astype(float) - images).mean())


def test_pipelines_keep_shape_and_scale_with_strength(arrays):
    images = np.asarray(arrays[0].images[:40])
    for name in ("basic", "strong"):
        weak, strong = mean_change(name, 0.3, images), mean_change(name, 2.0, images)
        assert 0 < weak < strong
    assert mean_change("strong", 1.0, images) > mean_change("basic", 1.0, images)


def test_strength_zero_only_flips(arrays):
    pipe = build_pipeline("basic", 32, 0.0, seed=0)
    for img in np.asarray(arrays[0].images[:10]):
        out = pipe(image=img)["image"]
        assert np.array_equal(out, img) or np.array_equal(out, img[:, ::-1])


def test_unknown_pipeline_and_bad_strength():
    with pytest.raises(
        InvalidArgument, match="unknown augmentation pipeline: got 'medium'; valid: none, basic, strong"
    ):
        build_pipeline("medium", 32)
    with pytest.raises(InvalidArgument, match="strength must be >= 0"):
        build_pipeline("basic", 32, -1)


def test_progressive_strength_steps_over_phases():
    got = [progressive_strength(e, epochs=10, phases=5, start=0.2, end=1.0) for e in range(10)]
    assert got == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0])
    assert progressive_strength(3, epochs=10, phases=1, start=0.2, end=1.0) == 1.0


def collect(loader: TrainLoader, epoch: int, order=None):
    xs, ys, idx = zip(*[(x.clone(), y.clone(), i.clone()) for x, y, i in loader.epoch(epoch, order)])
    return torch.cat(xs), torch.cat(ys), torch.cat(idx)


def test_loader_is_deterministic_whatever_the_workers(arrays):
    train = arrays[0]
    in_process = TrainLoader(train.images, train.labels, 32, pipeline="strong", num_workers=0, seed=5)
    workers = TrainLoader(train.images, train.labels, 32, pipeline="strong", num_workers=2, seed=5)
    try:
        for epoch in (0, 1):
            a, b = collect(in_process, epoch), collect(workers, epoch)
            assert all(torch.equal(u, v) for u, v in zip(a, b))
        x, y, idx = a
        assert x.dtype == torch.uint8 and x.shape == (in_process.steps() * 32, 32, 32, 3)
        assert torch.equal(y, torch.from_numpy(train.labels)[idx])
        assert len(set(idx.tolist())) == len(idx)  # a shuffle: no repeats
        assert not torch.equal(collect(in_process, 0)[2], collect(in_process, 1)[2])  # epochs differ
    finally:
        workers.close()


def test_loader_follows_a_given_order(arrays):
    train = arrays[0]
    loader = TrainLoader(train.images, train.labels, 8, pipeline="none")
    order = np.array([3, 3, 3, 0, 1, 1, 2, 5, 7, 7, 7, 7, 9, 9, 9, 9, 4])  # oversampling: repeats
    x, y, idx = collect(loader, 0, order)
    assert idx.tolist() == order[:16].tolist()  # last partial batch dropped
    assert torch.equal(x, torch.from_numpy(np.asarray(train.images)[order[:16]]))
    with pytest.raises(InvalidArgument, match="1-D array of indices"):
        next(iter(loader.epoch(0, np.array([0, len(train.labels)]))))


def test_fit_trains_through_the_loader(arrays):
    from dataclasses import replace

    from fersearch.train import fit

    train, val = arrays
    base = dict(
        data={"root": "x"}, backbone="test_resnet", image_size=32, epochs=2, batch_size=32, warmup_epochs=0
    )
    config = TrialConfig(**base, augment="strong", augment_strength=1.5, augment_strength_start=0.5,
                         augment_phases=2, num_workers=0)  # fmt: skip
    assert make_train_loader(TrialConfig(**base), train, 32) is None  # default: on-device path
    loader = make_train_loader(config, train, 32)
    assert loader.strength_at(0) == 0.5 and loader.strength_at(1) == 1.5
    small = replace(train, images=train.images[:64], labels=train.labels[:64])
    result = fit(
        config.model_copy(update={"epochs": 1}),
        small,
        replace(val, images=val.images[:32], labels=val.labels[:32]),
        7,
    )
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])


def test_basic_pipeline_on_the_device_matches_its_recipe():
    """augment_on: device: the basic recipe batched in torch. Strength 0 leaves only the flip;
    every view of a packed sample gets the same draw; the generator makes it repeatable."""
    import torch

    from fersearch.runtime import to_input
    from fersearch.train.augment import basic_on_device

    rng = np.random.default_rng(0)
    one = rng.integers(0, 255, (16, 24, 24, 3), dtype=np.uint8)
    images = torch.from_numpy(np.concatenate([one, one], axis=-1))  # two identical views
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    plain = to_input(images, mean, std)
    still = basic_on_device(images, mean, std, 0.0, torch.Generator().manual_seed(0))
    flipped = 0
    for i in range(16):
        same, mirror = (
            torch.allclose(still[i], plain[i], atol=1e-4),
            torch.allclose(still[i], plain[i].flip(-1), atol=1e-4),
        )
        assert same or mirror
        flipped += mirror and not same
    assert 2 <= flipped <= 14
    out = basic_on_device(images, mean, std, 1.0, torch.Generator().manual_seed(1))
    again = basic_on_device(images, mean, std, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and out.shape == plain.shape
    assert torch.equal(out[:, :3], out[:, 3:])  # both views alike
    changed = (out - plain).abs().flatten(1).mean(1)
    assert (changed > 0.05).sum() >= 8  # most samples really change
    # strength scales the change: at 0.25 the images move less than at 2
    weak = basic_on_device(images, mean, std, 0.25, torch.Generator().manual_seed(2))
    strong = basic_on_device(images, mean, std, 2.0, torch.Generator().manual_seed(2))
    unflip = lambda a: torch.minimum(
        (a - plain).abs().mean((1, 2, 3)), (a - plain.flip(-1)).abs().mean((1, 2, 3))
    )  # noqa: E731
    assert unflip(weak).mean() < unflip(strong).mean()


def test_device_augmentation_accepts_only_basic():
    from fersearch.config import build_config
    from fersearch.errors import ConfigError

    build_config({"data": {"root": "."}, "augment": "basic", "augment_on": "device"})
    with pytest.raises(ConfigError, match="augment_on: device runs the basic pipeline only"):
        build_config({"data": {"root": "."}, "augment": "strong", "augment_on": "device"})
