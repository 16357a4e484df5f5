"""The training batch iterator: cached uint8 images -> albumentations pipeline -> uint8 batches.

Batches stay uint8 (B, S, S, 3) until the training loop moves them to the device and normalises
them there (a quarter of the bytes of float32 to copy). With ``num_workers > 0`` batches are
built in worker processes (torch's DataLoader, forked: workers see the cache's memory map and
share its pages, nothing is copied or pickled per batch). With ``num_workers: 0`` (the default)
one background thread builds the next batches while the trainer uses the current one: the pixel
work is OpenCV and numpy, which release the GIL, so it overlaps the training step instead of
taking turns with it, and nothing crosses a process boundary. Every batch is seeded from
(seed, epoch, step), so the images a trial sees do not depend on the number of workers.

The order of samples in an epoch is a shuffle of all samples, or any 1-D array of sample
indices the caller passes (a class-balancing sampler's output, physical oversampling as a
virtual index with repeats: no file is copied).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidArgument
from .augment import batch_augmenter, build_pipeline, progressive_strength
from .views import num_views, pack


@dataclass(frozen=True)
class _Spec:
    """One batch to build: which samples, with which random seed, at which strength."""

    indices: np.ndarray
    seed: int
    strength: float


class _Batches(torch.utils.data.Dataset):
    """Builds one whole batch per item, so workers pay one IPC message per batch, not per image."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, pipeline: str, context: np.ndarray | None = None
    ):
        self.images, self.labels, self.pipeline, self.context = images, labels, pipeline, context
        self.size = int(images.shape[-2])
        self.views = num_views(images, context)
        self._augment: dict[float, Callable] = {}  # per process: strength -> batch augmenter

    def __len__(self) -> int:  # unused: items are specs handed over by the sampler
        return 0

    def __getitem__(self, spec: _Spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = spec.indices
        # a gathered copy (fancy indexing copies): (B, S, S, 3) uint8, or (B, S, S, 3V) holding
        # every view of a clip/context sample (see data.views)
        context = self.context[idx] if self.context is not None else None
        batch = pack(np.asarray(self.images[idx]), context)
        if self.pipeline != "none":
            augment = self._augment.get(spec.strength)
            if augment is None:  # basic: data.fast_basic; strong: the albumentations Compose per sample
                augment = batch_augmenter(self.pipeline, self.size, spec.strength, views=self.views)
                self._augment[spec.strength] = augment
            augment(batch, spec.seed)
        return torch.from_numpy(batch), torch.from_numpy(self.labels[idx]), torch.from_numpy(idx)


class _SpecSampler(torch.utils.data.Sampler):
    """Hands the current epoch's batch specs to the DataLoader; refilled before every epoch."""

    def __init__(self):
        self.specs: list[_Spec] = []

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def prefetched(items: Iterable, depth: int) -> Iterator:
    """``items`` iterated in a background thread, up to ``depth`` ahead of the consumer, in order.

    An exception raised while building an item is raised to the consumer at that item. Closing
    the iterator (``.close()``, or dropping it) stops the thread and waits for it, so two epochs
    never build batches at once; the thread starts with the first ``next``. ``items`` must not
    refer back to whatever holds this iterator: dropping it would leave a cycle that only the
    garbage collector frees, and the thread would run until then (a process that exited while
    such a thread ran aborted in 4 of 6 runs of bench/loader.py's first-batch script)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))

    thread = threading.Thread(target=produce, name="fersearch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = buffer.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class TrainLoader:
    """``for x, y, idx in loader.epoch(e, order=None)``: x (B, S, S, 3V) uint8, y (B,) int64, idx (B,);
    V = 1 for plain images (see data.views for clips and context).

    ``strength`` is the pipeline's strength, or a function epoch -> strength (progressive
    augmentation). The last partial batch is dropped (mixup and batch norm want full ones).
    ``prefetch``: with ``num_workers: 0``, how many batches a background thread builds ahead of
    the trainer (0: each batch is built when it is asked for, in the caller's thread).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        pipeline: str = "basic",
        strength: float | Callable[[int], float] = 1.0,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        context: np.ndarray | None = None,
        prefetch: int = 2,
    ):
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise InvalidArgument(f"num_workers must be >= 0, got {num_workers}")
        if prefetch < 0:
            raise InvalidArgument(f"prefetch must be >= 0 batches, got {prefetch}")
        if len(images) != len(labels):
            raise InvalidArgument(f"{len(images)} images but {len(labels)} labels")
        build_pipeline(pipeline, int(images.shape[-2]), 1.0)  # fail now on a bad name, not in a worker
        self.n = len(labels)
        self.batch_size = batch_size
        self.strength = strength
        self.seed = seed
        self.prefetch = prefetch
        self._current: Iterator | None = None  # the epoch a prefetch thread may be building
        self._dataset = _Batches(images, np.asarray(labels, dtype=np.int64), pipeline, context)
        self._sampler = _SpecSampler()
        self._loader = None
        if num_workers > 0:
            self._loader = torch.utils.data.DataLoader(
                self._dataset,
                sampler=self._sampler,
                batch_size=None,  # items are already batches
                num_workers=num_workers,
                persistent_workers=True,  # forked once per trial, reused every epoch
                prefetch_factor=4,
                pin_memory=pin_memory,
                # its workers' base seed from a generator of its own: drawn from torch's global
                # one, it would shift the trial's dropout draws whenever workers are used
                generator=torch.Generator().manual_seed(seed),
            )

    def steps(self, order: np.ndarray | None = None) -> int:
        return (self.n if order is None else len(order)) // self.batch_size

    def strength_at(self, epoch: int) -> float:
        return float(self.strength(epoch) if callable(self.strength) else self.strength)

    def epoch(
        self, epoch: int, order: np.ndarray | None = None, first_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of ``order`` (default: a shuffle of all samples). ``first_step``: ``order``
        is the rest of an epoch resumed at that step, so its batches take the random seeds of
        steps ``first_step``, ``first_step + 1``, ... and repeat the uninterrupted epoch exactly."""
        if order is None:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        else:
            order = np.asarray(order, dtype=np.int64)
            if order.ndim != 1 or (len(order) and (order.min() < 0 or order.max() >= self.n)):
                raise InvalidArgument(f"an epoch order must be a 1-D array of indices in 0..{self.n - 1}")
        strength = self.strength_at(epoch)
        steps = first_step + self.steps(order)
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(steps, dtype=np.uint32)[first_step:]
        bs = self.batch_size
        specs = [_Spec(order[i * bs : (i + 1) * bs], int(seeds[i]), strength) for i in range(len(seeds))]
        if self._loader is None:
            self._stop_prefetch()  # an epoch abandoned half way: its thread stops before this one
            dataset = self._dataset  # not self: the thread's work must not keep the loader alive
            batches = (dataset[spec] for spec in specs)
            if self.prefetch == 0:
                return batches
            self._current = prefetched(batches, self.prefetch)
            return self._current
        self._sampler.specs = specs
        return iter(self._loader)

    def _stop_prefetch(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        """Stop the prefetch thread or the worker processes now rather than when the loader is
        garbage-collected."""
        self._stop_prefetch()
        if self._loader is not None and self._loader._iterator is not None:
            self._loader._iterator._shutdown_workers()
        self._loader = None


def strength_at(config, epoch: int, stage_scale: list[float] | None = None) -> float:
    """The augmentation strength of ``epoch``: constant or progressive over ``augment_phases``,
    times the curriculum stage's multiplier, capped at 3."""
    end, start = config.augment_strength, config.augment_strength_start
    base = end
    if start is not None and config.augment_phases > 1:
        base = progressive_strength(epoch, config.epochs, config.augment_phases, start, end)
    scale = stage_scale[min(epoch, len(stage_scale) - 1)] if stage_scale else 1.0
    return min(3.0, base * scale)


def make_train_loader(
    config,
    train,
    batch_size: int,
    pin_memory: bool = False,
    use_context: bool = False,
    stage_scale: list[float] | None = None,
) -> TrainLoader | None:
    """The loader a TrialConfig asks for (augment, strength, progressive phases, num_workers, prefetch),
    or None when no albumentations pipeline is configured (the loop augments on the device).
    ``use_context``: pack the split's context views with the faces (fusion models);
    ``stage_scale``: a per-epoch multiplier of the strength (the curriculum's stage values)."""
    if getattr(config, "augment", None) is None or getattr(config, "augment_on", "cpu") == "device":
        return None

    def strength(epoch: int) -> float:
        return strength_at(config, epoch, stage_scale)

    return TrainLoader(
        train.images,
        train.labels,
        batch_size,
        pipeline=config.augment,
        strength=strength,
        num_workers=config.num_workers,
        seed=config.seed,
        pin_memory=pin_memory,
        context=train.context if use_context else None,
        prefetch=config.prefetch,
    )
