"""finalize keeps every per-sample array (AU targets, context views) when it refits on
train+val and when it cross-validates: both go through SplitArrays.concat / subset."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.progress import Progress

from fersearch.config import build_config
from fersearch.data.cache import SplitArrays
from fersearch.finalize import cv, pipeline, retrain
from fersearch.finalize.select import MemberSpec


def _split(n: int, offset: int) -> SplitArrays:
    rng = np.random.default_rng(offset)
    return SplitArrays(
        images=rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(n) % 2,
        paths=[f"img{offset + i}.jpg" for i in range(n)],
        context=rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
        au=rng.integers(0, 2, (n, 5), dtype=np.uint8),
    )


def test_subset_and_concat_carry_every_per_sample_array():
    a, b = _split(6, 0), _split(4, 100)
    both = SplitArrays.concat(a, b)
    assert both.paths == a.paths + b.paths
    for name in ("images", "labels", "context", "au"):
        assert np.array_equal(getattr(both, name), np.concatenate([getattr(a, name), getattr(b, name)]))
    part = both.subset([7, 0, 9])
    assert part.paths == ["img101.jpg", "img0.jpg", "img103.jpg"]
    assert np.array_equal(part.au, both.au[[7, 0, 9]]) and np.array_equal(
        part.context, both.context[[7, 0, 9]]
    )
    no_au = SplitArrays(a.images, a.labels, a.paths)  # a part without AU targets cannot fill them
    assert SplitArrays.concat(a, no_au).au is None


class _Trained(Exception):
    """Raised by the stand-in for train_member once it has seen its training data."""


@pytest.fixture
def trained_on(monkeypatch):
    seen = []

    def fake_train_member(spec, store, train, *args, **kw):
        seen.append(train)
        raise _Trained

    splits = {"train": _split(6, 0), "val": _split(4, 100)}
    for module in (cv, pipeline):
        monkeypatch.setattr(module, "train_member", fake_train_member)
    for module in (cv, retrain):  # cv reads train and val itself; finalize through retrain.Splits
        monkeypatch.setattr(module, "split_arrays", lambda manifest, split, size: splits[split])
    return seen


SPEC = MemberSpec(
    0, 0, build_config({"data": {"root": "."}, "backbone": "test_resnet", "image_size": 16}), 0.5
)
MANIFEST = SimpleNamespace(num_classes=2, class_names=("a", "b"))


def test_the_train_val_refit_trains_with_the_au_targets(trained_on, tmp_path: Path):
    with pytest.raises(_Trained), Progress(disable=True) as progress:
        store = retrain.MemberStore(tmp_path, "trainval")
        pipeline._train_members([SPEC], retrain.Splits(MANIFEST), store, [], progress, "refit", refit=True)
    [train] = trained_on
    assert len(train.paths) == 10 and train.au is not None and train.au.shape == (10, 5)


def test_cross_validation_folds_train_with_the_au_targets(trained_on, tmp_path: Path):
    with pytest.raises(_Trained):
        cv.cross_validate([SPEC], [1.0], np.zeros(2), "none", MANIFEST, 2, tmp_path)
    [train] = trained_on
    assert train.au is not None and len(train.au) == len(train.paths) == 5
