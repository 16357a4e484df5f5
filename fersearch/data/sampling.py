"""Class balancing for imbalanced FER data: class weights and per-epoch index orders.

Three ways to see rare classes more often, all seeded so a run repeats exactly:

* ``inverse_frequency_weights``: w_k = N / (K * n_k) (mean weight 1 over the samples, sklearn's
  "balanced"), clipped at a cap so a class with a handful of images cannot dominate the loss.
* ``weighted_order``: a class-weighted sampler; each epoch draws N indices with replacement, a
  sample's chance proportional to 1 / n_(its class), so every class is drawn equally often.
* ``oversample_order``: physical oversampling to ``per_class`` images of every class as a virtual
  index (seed 001's "8,000 per class" without writing copies to disk): whole copies of a small
  class first, then a random remainder; a larger class is subsampled without replacement.

An order is a 1-D int64 tensor of row indices into the train arrays; the loader takes one per
epoch. ``epoch_generator(seed, epoch)`` makes the order a pure function of (seed, epoch), so a
resumed run draws exactly the orders the interrupted one would have.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

SamplerKind = Literal["random", "weighted", "oversample"]
SAMPLERS: tuple[str, ...] = ("random", "weighted", "oversample")


def class_counts(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels, minlength=num_classes)[:num_classes]


def class_prior(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Empirical class frequencies; an absent class gets half a count so log(prior) stays finite."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    counts[counts == 0] = 0.5
    return counts / counts.sum()


def inverse_frequency_weights(
    labels: np.ndarray | torch.Tensor, num_classes: int, cap: float | None
) -> np.ndarray:
    """(K,) float32: N / (K * n_k), clipped at ``cap`` (None: not clipped). Absent classes get the
    cap (they never occur as targets, so the value only matters for soft mixup targets)."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    n = counts.sum()
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, n / (num_classes * np.maximum(counts, 1)), np.inf)
    if cap is not None:
        w = np.minimum(w, cap)
    w[~np.isfinite(w)] = 1.0 if cap is None else cap
    return w.astype(np.float32)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # A large odd multiplier keeps (seed, epoch) pairs from colliding for any realistic budget.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63 - 1))


def random_order(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def weighted_order(
    labels: np.ndarray, num_classes: int, generator: torch.Generator, n: int | None = None
) -> torch.Tensor:
    """``n`` (default len(labels)) indices drawn with replacement, each class equally likely."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    per_sample = 1.0 / counts[np.asarray(labels, dtype=np.int64)]
    weights = torch.as_tensor(per_sample, dtype=torch.float64)
    return torch.multinomial(weights, n or len(labels), replacement=True, generator=generator)


def oversample_order(
    labels: np.ndarray, num_classes: int, per_class: int, generator: torch.Generator
) -> torch.Tensor:
    """Exactly ``per_class`` indices of every present class, shuffled together."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1 (got {per_class})")
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    parts = []
    for k in range(num_classes):
        members = torch.nonzero(labels_t == k).flatten()
        if len(members) == 0:
            continue
        copies, remainder = divmod(per_class, len(members))
        extra = members[torch.randperm(len(members), generator=generator)[:remainder]]
        parts.append(torch.cat([members.repeat(copies), extra]))
    order = torch.cat(parts)
    return order[torch.randperm(len(order), generator=generator)]


def epoch_order(
    kind: str,
    labels: np.ndarray,
    num_classes: int,
    seed: int,
    epoch: int,
    per_class: int | None = None,
) -> torch.Tensor:
    """The index order for one epoch: a pure function of its arguments."""
    gen = epoch_generator(seed, epoch)
    if kind == "random":
        return random_order(len(labels), gen)
    if kind == "weighted":
        return weighted_order(labels, num_classes, gen)
    if kind == "oversample":
        # None: oversample every class up to the largest one.
        target = per_class or int(class_counts(labels, num_classes).max())
        return oversample_order(labels, num_classes, target, gen)
    raise ValueError(f"unknown sampler {kind!r}; valid: {', '.join(SAMPLERS)}")
