"""The training batch iterator: cached uint8 images -> albumentations pipeline -> uint8 batches.

Batches stay uint8 (B, S, S, 3) until the training loop moves them to the device and normalises
them there (a quarter of the bytes of float32 to copy). With ``num_workers > 0`` batches are
built in worker processes (torch's DataLoader, forked: workers see the cache's memory map and
share its pages). A worker writes its batch into a slot of a shared-memory ring allocated once
per loader and sends only the slot number; the main process copies the batch out. (Returning
the batch tensor itself makes torch move it into a fresh shared-memory segment per batch, whose
page faults cost more than the augmentation at 224 px.) Every batch is seeded from
(seed, epoch, step), so the images a trial sees do not depend on the number of workers.

The order of samples in an epoch is a shuffle of all samples, or any 1-D array of sample
indices the caller passes (a class-balancing sampler's output, physical oversampling as a
virtual index with repeats: no file is copied).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import InvalidArgument
from .augment import batch_augmenter, build_pipeline
from .views import num_views, pack

PREFETCH = 4  # batches each worker process prepares ahead
RING_MAX_BYTES = 2 << 30  # above this, batches go back through torch's own per-batch sharing


@dataclass(frozen=True)
class _Spec:
    """One batch to build: which samples, with which random seed, at which strength."""

    indices: np.ndarray
    seed: int
    strength: float
    slot: int = -1  # the ring slot to write into (worker processes), -1: return the batch
    tag: int = 0  # written next to the slot once the batch is complete


class _Batches(torch.utils.data.Dataset):
    """Builds one whole batch per item, so workers pay one IPC message per batch, not per image."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, pipeline: str, context: np.ndarray | None = None
    ):
        self.images, self.labels, self.pipeline, self.context = images, labels, pipeline, context
        self.size = int(images.shape[-2])
        self.views = num_views(images, context)
        self._augment: dict[float, Callable] = {}  # per process: strength -> batch augmenter
        self.ring: torch.Tensor | None = None  # (slots, B, S, S, 3V) uint8 in shared memory
        self.tags: torch.Tensor | None = None  # (slots,) int64: which batch each slot holds

    def __len__(self) -> int:  # unused: items are specs handed over by the sampler
        return 0

    def __getitem__(self, spec: _Spec) -> tuple:
        idx = spec.indices
        # a gathered copy (fancy indexing copies): (B, S, S, 3) uint8, or (B, S, S, 3V) holding
        # every view of a clip/context sample (see data.views)
        context = self.context[idx] if self.context is not None else None
        if spec.slot >= 0:
            self.tags[spec.slot] = -1  # being written
            batch = self.ring[spec.slot].numpy()
            if context is None and isinstance(self.images, np.ndarray) and self.images.ndim == 4:
                np.take(self.images, idx, axis=0, out=batch)
            else:
                batch[...] = pack(np.asarray(self.images[idx]), context)
        else:
            batch = pack(np.asarray(self.images[idx]), context)
        if self.pipeline != "none":
            augment = self._augment.get(spec.strength)
            if augment is None:
                augment = batch_augmenter(self.pipeline, self.size, spec.strength, views=self.views)
                self._augment[spec.strength] = augment
            augment(batch, spec.seed)
        labels = self.labels[idx]
        if spec.slot >= 0:
            self.tags[spec.slot] = spec.tag
            return spec.slot, labels, idx  # numpy: pickled by value, no shared-memory segment each
        return torch.from_numpy(batch), torch.from_numpy(labels), torch.from_numpy(idx)


def _as_is(item):
    return item


class _SpecSampler(torch.utils.data.Sampler):
    """Hands the current epoch's batch specs to the DataLoader; refilled before every epoch."""

    def __init__(self):
        self.specs: list[_Spec] = []

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


class TrainLoader:
    """``for x, y, idx in loader.epoch(e, order=None)``: x (B, S, S, 3V) uint8, y (B,) int64, idx (B,);
    V = 1 for plain images (see data.views for clips and context).

    ``strength`` is the pipeline's strength, or a function epoch -> strength (progressive
    augmentation). The last partial batch is dropped (mixup and batch norm want full ones).
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
    ):
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise InvalidArgument(f"num_workers must be >= 0, got {num_workers}")
        if len(images) != len(labels):
            raise InvalidArgument(f"{len(images)} images but {len(labels)} labels")
        build_pipeline(pipeline, int(images.shape[-2]), 1.0)  # fail now on a bad name, not in a worker
        self.n = len(labels)
        self.batch_size = batch_size
        self.strength = strength
        self.seed = seed
        self._dataset = _Batches(images, np.asarray(labels, dtype=np.int64), pipeline, context)
        self._sampler = _SpecSampler()
        self._loader = None
        self._pin = pin_memory
        self._epochs = 0  # epoch() calls so far: part of every ring tag
        if num_workers > 0:
            # Ring slots: the DataLoader has at most num_workers * PREFETCH batches outstanding
            # past the one being handed out, and hands them out in order, so batch k may use
            # slot k % slots (checked per batch with the tags).
            slots = num_workers * PREFETCH + 2
            side = int(images.shape[-2])
            shape = (slots, batch_size, side, side, 3 * self._dataset.views)
            if int(np.prod(shape)) <= RING_MAX_BYTES:
                ring = torch.empty(0, dtype=torch.uint8)
                ring.set_(torch.UntypedStorage._new_shared(int(np.prod(shape))))
                # touched once here, before the workers fork, so no batch pays for fresh pages
                self._dataset.ring = ring.view(shape).zero_()
                self._dataset.tags = torch.full((slots,), -1, dtype=torch.int64).share_memory_()
            self._loader = torch.utils.data.DataLoader(
                self._dataset,
                sampler=self._sampler,
                batch_size=None,  # items are already batches
                collate_fn=_as_is,  # numpy labels stay numpy: pickled, not a shared segment each
                num_workers=num_workers,
                persistent_workers=True,  # forked once per trial, reused every epoch
                prefetch_factor=PREFETCH,
                pin_memory=pin_memory,
            )

    def steps(self, order: np.ndarray | None = None) -> int:
        return (self.n if order is None else len(order)) // self.batch_size

    def strength_at(self, epoch: int) -> float:
        return float(self.strength(epoch) if callable(self.strength) else self.strength)

    def epoch(self, epoch: int, order: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        if order is None:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        else:
            order = np.asarray(order, dtype=np.int64)
            if order.ndim != 1 or (len(order) and (order.min() < 0 or order.max() >= self.n)):
                raise InvalidArgument(f"an epoch order must be a 1-D array of indices in 0..{self.n - 1}")
        strength = self.strength_at(epoch)
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(self.steps(order), dtype=np.uint32)
        bs = self.batch_size
        specs = [_Spec(order[i * bs : (i + 1) * bs], int(seeds[i]), strength) for i in range(len(seeds))]
        if self._loader is None:
            return (self._dataset[spec] for spec in specs)
        ring = self._dataset.ring
        if ring is not None:
            self._epochs += 1
            tag = self._epochs << 32
            specs = [replace(spec, slot=k % len(ring), tag=tag + k) for k, spec in enumerate(specs)]
        self._sampler.specs = specs
        batches = iter(self._loader)
        return batches if ring is None else self._from_ring(batches, specs)

    def _from_ring(self, batches, specs: list[_Spec]) -> Iterator[tuple[torch.Tensor, ...]]:
        """The workers' ring slots as batches: each one copied out before the next is asked for."""
        ring, tags = self._dataset.ring, self._dataset.tags
        for spec, (slot, labels, idx) in zip(specs, batches):
            if slot != spec.slot or int(tags[slot]) != spec.tag:
                raise RuntimeError(f"loader ring: slot {slot} does not hold batch {spec.tag & 0xFFFFFFFF}")
            x = ring[slot].pin_memory() if self._pin else ring[slot].clone()
            if int(tags[slot]) != spec.tag:  # overwritten while copied: must not happen
                raise RuntimeError(f"loader ring: slot {slot} was overwritten while being read")
            yield x, torch.as_tensor(labels), torch.as_tensor(idx)

    def close(self) -> None:
        """Stop the worker processes now rather than when the loader is garbage-collected."""
        if self._loader is not None and self._loader._iterator is not None:
            self._loader._iterator._shutdown_workers()
        self._loader = None
        self._dataset.ring = self._dataset.tags = None


def strength_at(config, epoch: int, stage_scale: list[float] | None = None) -> float:
    """The augmentation strength of ``epoch``: constant or progressive over ``augment_phases``,
    times the curriculum stage's multiplier, capped at 3."""
    from .augment import progressive_strength

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
    """The loader a TrialConfig asks for (augment, strength, progressive phases, num_workers),
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
    )
