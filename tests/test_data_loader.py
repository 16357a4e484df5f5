"""The training loader's background thread (``num_workers: 0``): the same batches as building each
one on demand, built ahead of the trainer, errors raised at their batch, no thread left behind."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

from fersearch.data.loader import TrainLoader
from fersearch.errors import InvalidArgument


def faces(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class Recorded:
    """An image array whose batch reads are recorded (and can be made to fail)."""

    def __init__(self, images: np.ndarray, fail_at: int | None = None):
        self.images, self.shape, self.fail_at = images, images.shape, fail_at
        self.reads = 0
        self.read = threading.Condition()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx):
        with self.read:
            self.reads += 1
            self.read.notify_all()
            if self.reads == self.fail_at:
                raise OSError(f"read {self.reads} failed")
        return self.images[idx]

    def wait_reads(self, n: int, timeout: float) -> bool:
        with self.read:
            return self.read.wait_for(lambda: self.reads >= n, timeout)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fersearch-prefetch" and t.is_alive()]


@pytest.mark.parametrize("pipeline", ["basic", "strong"])
def test_prefetched_batches_equal_batches_built_on_demand(pipeline):
    images, labels = faces(120, 24), np.arange(120) % 7
    ahead = TrainLoader(images, labels, 16, pipeline=pipeline, seed=4)
    on_demand = TrainLoader(images, labels, 16, pipeline=pipeline, seed=4, prefetch=0)
    assert ahead.prefetch == 2
    half = iter(ahead.epoch(0))
    next(half)  # an epoch abandoned after one batch
    for epoch in (0, 1):
        a = [(x.clone(), y, i) for x, y, i in ahead.epoch(epoch)]
        b = list(on_demand.epoch(epoch))
        assert len(a) == len(b) == 7
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    ahead.close()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_are_built_ahead_of_the_trainer(prefetch):
    source = Recorded(faces(96, 16))
    loader = TrainLoader(source, np.zeros(96, np.int64), 16, pipeline="basic", prefetch=prefetch)
    batches = loader.epoch(0)
    next(batches)  # the trainer holds batch 0 and has not asked for more
    built_ahead = source.wait_reads(1 + prefetch + 1, timeout=0.5 if prefetch == 0 else 10)
    # two more batches are read while the trainer works on batch 0 (the queue holds two, the
    # thread is building a third), and none without the thread
    assert built_ahead == (prefetch > 0)
    assert len(list(batches)) == 5
    loader.close()


def test_an_error_building_a_batch_reaches_the_trainer_at_that_batch():
    source = Recorded(faces(64, 16), fail_at=3)
    loader = TrainLoader(source, np.zeros(64, np.int64), 16, pipeline="basic")
    batches = loader.epoch(0)
    got = [next(batches), next(batches)]
    with pytest.raises(OSError, match="read 3 failed"):
        next(batches)
    assert len(got) == 2 and not prefetch_threads()
    loader.close()


def test_a_new_epoch_or_close_stops_the_previous_thread():
    loader = TrainLoader(faces(96, 16), np.zeros(96, np.int64), 16, pipeline="basic")
    for epoch in range(3):
        next(iter(loader.epoch(epoch)))  # abandoned after one batch each time
        assert len(prefetch_threads()) == 1
    loader.close()
    assert not prefetch_threads()
    with pytest.raises(InvalidArgument, match="prefetch must be >= 0"):
        TrainLoader(faces(8, 16), np.zeros(8, np.int64), 4, prefetch=-1)


def test_dropping_a_loader_mid_epoch_stops_its_thread_without_the_garbage_collector():
    """A trial that ends without ``close()`` (a caller's own loop, an exception) leaves no thread
    running: the epoch's thread does not keep its loader alive, so dropping them stops it."""
    gc.disable()  # only reference counting may free them here
    try:
        loader = TrainLoader(faces(96, 16), np.zeros(96, np.int64), 16, pipeline="basic")
        next(iter(loader.epoch(0)))
        assert len(prefetch_threads()) == 1
        del loader
        assert not prefetch_threads()
    finally:
        gc.enable()
