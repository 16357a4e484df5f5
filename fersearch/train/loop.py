"""fit(config, train, val): the training loop, readable top to bottom.

Every epoch ends with a validation pass whose UAR/WAR/macro-F1 go to ``on_epoch`` (the search
worker reports them to Optuna there, and may raise ``optuna.TrialPruned`` to stop early). The
weights of the best validation-UAR epoch are kept in memory and returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import TrialConfig
from ..data.decode import SplitArrays
from ..metrics import summarize
from ..models import FERModel, create_model
from .augment import flip_and_shift, to_input
from .evaluate import _autocast, predict_probs
from .losses import smooth_one_hot, soft_cross_entropy
from .mixing import mixup
from .schedule import warmup_cosine


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the run cannot continue meaningfully."""


@dataclass
class FitResult:
    model: FERModel  # holds the best epoch's weights on return
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_uar: float = float("-inf")
    best_val_probs: np.ndarray | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(
    config: TrialConfig,
    train: SplitArrays,
    val: SplitArrays,
    num_classes: int,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    keep: str = "best",
) -> FitResult:
    """keep="best": return the best validation-UAR epoch's weights; keep="last": the final
    epoch's (for a fixed-epoch refit, where ``val`` is not held out and must not select)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # shuffling, augmentation, mixup
    device = resolve_device(config.device)

    model = create_model(config, num_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    pre = model.preprocess
    if train.images.shape[1] != pre["image_size"]:
        raise ValueError(
            f"train images are {train.images.shape[1]} px but the model expects "
            f"{pre['image_size']} px; decode the split at the model's size"
        )

    # No weight decay on biases and norm parameters (the usual AdamW practice).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    n = len(train.labels)
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the last partial batch: mixup and BN want full ones
    scheduler = warmup_cosine(
        optimizer, config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch
    )

    images = torch.from_numpy(train.images)  # (N, H, W, 3) uint8, stays on the CPU
    labels = torch.from_numpy(train.labels)
    result = FitResult(model=model)
    best_state: dict[str, torch.Tensor] | None = None

    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            x = to_input(images[idx].to(device, non_blocking=True), pre["mean"], pre["std"])
            x = flip_and_shift(x, config.hflip, config.max_shift, gen)
            y = smooth_one_hot(labels[idx].to(device), num_classes, config.label_smoothing)
            x, y = mixup(x, y, config.mixup_alpha, gen)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)

            with _autocast(device):
                logits = model(x)["logits"]  # (B, K)
            loss = soft_cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch} step {step}")

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item()
            if on_batch is not None:
                on_batch(step + 1, steps_per_epoch)

        probs = predict_probs(model, val.images, pre, device)
        m = summarize(val.labels, probs.argmax(1), num_classes)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, steps_per_epoch),
            "lr": optimizer.param_groups[0]["lr"],
            "uar": m["uar"],
            "war": m["war"],
            "macro_f1": m["macro_f1"],
            "seconds": time.perf_counter() - t0,
        }
        result.history.append(record)
        if m["uar"] > result.best_uar or keep == "last":
            result.best_uar, result.best_epoch = m["uar"], epoch
            result.best_val_probs = probs
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(record)  # may raise optuna.TrialPruned

    if best_state is not None:
        model.load_state_dict(best_state)
    return result
