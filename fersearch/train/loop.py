"""fit(config, train, val): the training loop, readable top to bottom.

One epoch = the curriculum's plan for it (stage, class-weight cap, sampler, logit-adjust tau, LR
multiplier, augmentation strength) -> an index order from the sampler -> steps of: fetch +
augment a batch on the device, mix (mixup/cutmix), loss, backward, clip, optimiser (or SAM's
two passes), EMA -> SWA update -> validation UAR/WAR/macro-F1 (of the EMA weights when EMA is
on) -> a ``last`` checkpoint -> ``on_epoch`` (the search worker reports to Optuna there and may prune).

Never loses work: with ``checkpoint_dir`` every epoch ends with an atomic checkpoint of
everything needed to continue (weights, optimiser, schedule, EMA/SWA, RNG states, sampler
position); ``should_stop`` is polled between steps and, when set, an ``interrupted`` checkpoint
is written at the exact step and ``TrainingInterrupted`` raised. ``resume_from`` continues from
either, producing the same weights as an uninterrupted run on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import TrialConfig, comparable_config
from ..data.decode import SplitArrays
from ..data.loader import make_train_loader, strength_at
from ..data.sampling import class_prior, epoch_order, inverse_frequency_weights
from ..data.views import pack
from ..errors import ModelError
from ..metrics import summarize
from ..models import FERModel, create_model
from ..runtime import autocast, resolve_device, to_input
from . import checkpoint as ckpt
from .augment import basic_on_device, flip_and_shift
from .averaging import EMA, SWA
from .curriculum import epoch_at, epoch_plan
from .distill import Teacher, load_teacher
from .evaluate import predict_probs
from .losses import au_bce, distillation_kl, focal_loss, smooth_one_hot, soft_cross_entropy
from .mixing import mix_batch
from .optim import SAM, build_optimizer
from .schedule import LRSchedule, set_lr


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the run cannot continue meaningfully."""


class TrainingInterrupted(Exception):
    """A stop was requested; the state at ``epoch``/``step`` is saved at ``checkpoint``."""

    def __init__(self, checkpoint: Path | None, epoch: int, step: int):
        where = f"; saved {checkpoint}" if checkpoint else " (no checkpoint directory given)"
        super().__init__(f"interrupted at epoch {epoch} step {step}{where}")
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


@dataclass
class FitResult:
    model: FERModel  # holds the best weights on return (best epoch, or the SWA average)
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_uar: float = float("-inf")
    best_val_probs: np.ndarray | None = None
    best_source: str = "epoch"  # "epoch" or "swa"
    swa_metrics: dict | None = None
    resumed_from_epoch: int | None = None  # epoch (0-based) the run resumed in, if it did


def get_batch(
    train: SplitArrays,
    idx: torch.Tensor,
    config: TrialConfig,
    preprocess: dict,
    device: torch.device,
    generator: torch.Generator,
    use_context: bool = False,
    aug_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rows ``idx`` of the train arrays -> augmented input (B, 3V, S, S), labels (B,), AU targets
    (B, A) or None. V = 1 for plain images; clip frames and (with ``use_context``) context views
    are packed as channels, so one flip/shift moves every view of a sample alike.
    ``aug_scale``: the strength of the on-device basic pipeline (``augment_on: device``), else
    the curriculum stage's multiplier of ``max_shift``."""
    rows = idx.numpy()
    context = train.context[rows] if use_context else None
    images = torch.from_numpy(pack(train.images[rows], context))  # (B, S, S, 3V) uint8, CPU
    images = images.to(device, non_blocking=True)
    if config.augment == "basic" and config.augment_on == "device":
        x = basic_on_device(images, preprocess["mean"], preprocess["std"], aug_scale, generator)
    else:
        x = to_input(images, preprocess["mean"], preprocess["std"])
        x = flip_and_shift(x, config.hflip, min(0.49, config.max_shift * aug_scale), generator)
    labels = torch.from_numpy(train.labels[idx.numpy()]).to(device)
    au = getattr(train, "au", None)  # (N, A) float in [0, 1], NaN = unlabelled; optional
    au = torch.from_numpy(np.asarray(au)[idx.numpy()]).float().to(device) if au is not None else None
    return x, labels, au


def loader_batch(batch, train: SplitArrays, preprocess: dict, device: torch.device):
    """A (uint8 images, labels, indices) batch from the data loader -> what get_batch returns."""
    images, labels, idx = batch
    x = to_input(images.to(device, non_blocking=True), preprocess["mean"], preprocess["std"])
    au = getattr(train, "au", None)
    au = torch.from_numpy(np.asarray(au)[np.asarray(idx)]).float().to(device) if au is not None else None
    return x, labels.to(device), au


def fit(
    config: TrialConfig,
    train: SplitArrays,
    val: SplitArrays,
    num_classes: int,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    model: torch.nn.Module | None = None,
    keep: str = "best",
    class_names: list[str] | None = None,
) -> FitResult:
    """Train ``config`` on ``train``, validating on ``val`` every epoch. ``model`` overrides
    ``create_model`` (tests use tiny stand-ins); it must carry a ``preprocess`` dict.
    ``class_names`` feed the prompt head's text prompts. Clip datasets train on all their frames,
    and a fusion model (``config.fusion``) on their context views too.
    keep="best": return the best validation-UAR epoch's weights; keep="last": the final
    epoch's (for a fixed-epoch refit, where ``val`` is not held out and must not select)."""
    E, K = config.epochs, num_classes
    torch.manual_seed(config.seed)  # weight init, dropout
    gen = torch.Generator().manual_seed(config.seed)  # augmentation and mixing
    device = resolve_device(config.device)

    use_context = config.fusion != "none"
    if use_context and (train.context is None or val.context is None):
        raise ModelError(
            f"fusion {config.fusion!r} fuses face and context views, but this dataset has no context "
            f"views; use a clip dataset in the raer layout (`fersearch synth --context`), or fusion: none"
        )
    model = (model if model is not None else create_model(config, K, class_names)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    pre = model.preprocess
    if train.images.shape[-2] != pre["image_size"]:
        raise ValueError(
            f"train images are {train.images.shape[-2]} px but the model expects "
            f"{pre['image_size']} px; decode the split at the model's size"
        )
    n = len(train.labels)
    batch_size = min(config.batch_size, n)

    # What stays fixed for the whole run.
    plan = epoch_plan(config)  # per-epoch stage, cap, tau, sampler, LR multiplier
    log_prior = torch.log(torch.as_tensor(class_prior(train.labels, K), dtype=torch.float32)).to(device)
    optimizer = build_optimizer(model, config)
    schedule = LRSchedule(config)
    self_distill = config.self_distill_start is not None
    ema = EMA(model, config.ema_decay or 0.999) if (config.ema_decay > 0 or self_distill) else None
    swa = SWA(model) if config.swa_start is not None else None
    swa_epoch = epoch_at(config.swa_start, E) if swa else E
    distill_epoch = epoch_at(config.self_distill_start, E) if self_distill else E
    teacher = load_teacher(config.teacher, K).to(device) if config.teacher else None

    result = FitResult(model=model)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch, start_step, carried_loss = 0, 0, 0.0
    if resume_from is not None:
        start_epoch, start_step, carried_loss, best_state = _restore(
            resume_from, config, model, optimizer, schedule, ema, swa, gen, result
        )
        result.resumed_from_epoch = start_epoch
        for rec in result.history:  # replay, so callers see every epoch exactly once per run
            if on_epoch is not None:
                on_epoch({**rec, "restored": True})

    def save(name: str, epoch: int, step: int, loss_sum: float) -> Path | None:
        if checkpoint_dir is None:
            return None
        tensors, state = _training_state(
            config, model, optimizer, schedule, ema, swa, gen, result, best_state, epoch, step, loss_sum
        )
        return ckpt.save_checkpoint(checkpoint_dir, name, tensors, state)

    def loss_of(x, labels_soft, au, class_weights, tau, teacher_probs):
        with autocast(device):
            out = model(x)  # {"logits": (B, K), "features": ..., optional "au_logits": (B, A)}
        logits = out["logits"]
        if config.loss == "focal":
            task = focal_loss(logits, labels_soft, config.focal_gamma, class_weights, log_prior, tau)
        else:
            task = soft_cross_entropy(logits, labels_soft, class_weights, log_prior, tau)
        if teacher_probs is not None:  # Hinton KD on the raw (unadjusted) logits
            kd = distillation_kl(logits, teacher_probs, config.distill_temperature)
            task = (1 - config.distill_alpha) * task + config.distill_alpha * kd
        if au is not None and "au_logits" in out and config.au_loss_weight > 0:
            task = task + config.au_loss_weight * au_bce(out["au_logits"], au)
        return task

    loader = make_train_loader(
        config,
        train,
        batch_size,
        pin_memory=device.type == "cuda",
        use_context=use_context,
        stage_scale=[p.aug for p in plan],
    )
    val_context = val.context if use_context else None
    try:  # the loader's thread or worker processes stop however training ends (pruned, interrupted)
        for epoch in range(start_epoch, E):
            t0 = time.perf_counter()
            stage = plan[epoch]
            order = epoch_order(
                stage.sampler, train.labels, K, config.seed, epoch, config.oversample_per_class
            )
            steps = len(order) // batch_size  # drop the last partial batch: mixup and BN want full ones
            cw = inverse_frequency_weights(train.labels, K, stage.cap) if stage.cap is not None else None
            class_weights = torch.as_tensor(cw, device=device) if cw is not None else None
            in_swa = epoch >= swa_epoch
            first_step = start_step if epoch == start_epoch else 0
            loss_sum = carried_loss if epoch == start_epoch else 0.0
            # on-device basic pipeline: its strength this epoch; else the stage's shift multiplier
            aug = stage.aug
            if config.augment_on == "device":
                aug = strength_at(config, epoch, [p.aug for p in plan])
            model.train()
            # Albumentations pipelines run on the CPU in the data loader (fersearch.data.loader),
            # in the sampler's order; without one, get_batch augments on the device.
            batches = None
            if loader is not None:
                rest = order[first_step * batch_size : steps * batch_size].numpy()  # resumed: from first_step
                batches = iter(loader.epoch(epoch, order=rest, first_step=first_step))
            for step in range(first_step, steps):
                if should_stop is not None and should_stop():
                    path = save(ckpt.INTERRUPTED, epoch, step, loss_sum)
                    raise TrainingInterrupted(path, epoch, step)
                factor = schedule.lr_factor(epoch + step / steps, stage.lr_mult, in_swa)
                set_lr(optimizer, factor, config.swa_lr)

                if batches is None:
                    idx = order[step * batch_size : (step + 1) * batch_size]
                    x, labels, au = get_batch(train, idx, config, pre, device, gen, use_context, aug)
                else:
                    x, labels, au = loader_batch(next(batches), train, pre, device)
                y = smooth_one_hot(labels, K, config.label_smoothing)  # (B, K) soft targets
                targets = [y] if au is None else [y, au]
                x, targets = mix_batch(
                    x,
                    targets,
                    gen,
                    config.mixup_alpha,
                    config.cutmix_alpha,
                    config.mix_prob,
                    config.cutmix_switch_prob,
                )
                y, au = targets[0], (targets[1] if au is not None else None)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                teacher_probs = None
                if teacher is not None:
                    teacher_probs = teacher.probs(x, pre, config.distill_temperature)
                elif ema is not None and epoch >= distill_epoch:  # self-distillation (seed 001)
                    teacher_probs = Teacher([(ema.module, pre)]).probs(x, pre, config.distill_temperature)

                loss = loss_of(x, y, au, class_weights, stage.tau, teacher_probs)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch} step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if isinstance(optimizer, SAM):  # second pass at the sharpest nearby point
                    _clip(model, config)
                    optimizer.first_step()
                    optimizer.zero_grad(set_to_none=True)
                    loss_of(x, y, au, class_weights, stage.tau, teacher_probs).backward()
                    _clip(model, config)
                    optimizer.second_step()
                else:
                    _clip(model, config)
                    optimizer.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += loss.item()
                if on_batch is not None:
                    on_batch(step + 1, steps)

            if swa is not None and in_swa:
                swa.update(model)
            scored = ema.module if (ema is not None and config.ema_decay > 0) else model
            probs = predict_probs(scored, val.images, pre, device, context=val_context)
            m = summarize(val.labels, probs.argmax(1), K)
            schedule.end_epoch(m["uar"])
            record = {
                "epoch": epoch,
                "stage": stage.stage,
                "cap": stage.cap,
                "tau": stage.tau,
                "sampler": stage.sampler,
                "aug": stage.aug,
                "train_loss": loss_sum / max(1, steps),
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
                best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            save(ckpt.LAST, epoch + 1, 0, 0.0)
            if on_epoch is not None:
                on_epoch(record)  # may raise optuna.TrialPruned
    finally:
        if loader is not None:
            loader.close()

    if swa is not None and swa.n_averaged > 0:
        best_state = _finish_swa(swa, train, config, pre, device, val, K, result, best_state, use_context)
    if best_state is not None:
        model.load_state_dict(best_state)
        if result.best_val_probs is None:  # the best epoch was before a resume
            result.best_val_probs = predict_probs(model, val.images, pre, device, context=val_context)
    if checkpoint_dir is not None:
        info = {"epoch": result.best_epoch, "val_uar": result.best_uar, "source": result.best_source}
        ckpt.save_model_checkpoint(checkpoint_dir, model, config.to_json_dict(), info)
    return result


def _clip(model: torch.nn.Module, config: TrialConfig) -> None:
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)


def _finish_swa(swa, train, config, pre, device, val, K, result, best_state, use_context):
    """BN statistics for the averaged weights (one unaugmented pass over train), then keep the
    average if it validates better than the best single epoch."""
    bs = min(config.batch_size, len(train.labels))

    def rows(arrays, i):
        context = arrays.context[i : i + bs] if use_context else None
        return torch.from_numpy(pack(arrays.images[i : i + bs], context)).to(device)

    batches = (
        to_input(rows(train, i), pre["mean"], pre["std"]) for i in range(0, len(train.labels) - bs + 1, bs)
    )
    swa.update_bn(batches)
    probs = predict_probs(swa.module, val.images, pre, device, context=val.context if use_context else None)
    m = summarize(val.labels, probs.argmax(1), K)
    result.swa_metrics = {k: m[k] for k in ("uar", "war", "macro_f1")} | {"n_averaged": swa.n_averaged}
    if m["uar"] > result.best_uar:
        result.best_uar, result.best_val_probs, result.best_source = m["uar"], probs, "swa"
        return {k: v.detach().clone() for k, v in swa.module.state_dict().items()}
    return best_state


# ---- checkpoint <-> training state -------------------------------------------------------------


def _training_state(
    config, model, optimizer, schedule, ema, swa, gen, result, best_state, epoch, step, loss_sum
):
    opt_tensors, opt_rest = ckpt.optimizer_to_flat(optimizer.state_dict())
    tensors = {
        **ckpt.prefixed("model", model.state_dict()),
        **ckpt.prefixed("optim", opt_tensors),
        **ckpt.rng_tensors(gen),
    }
    if ema is not None:
        tensors.update(ckpt.prefixed("ema", ema.state_tensors()))
    if swa is not None:
        tensors.update(ckpt.prefixed("swa", swa.state_tensors()))
    if best_state is not None:
        tensors.update(ckpt.prefixed("best", best_state))
    state = {
        "kind": "training",
        "config": config.to_json_dict(),
        "epoch": epoch,  # the epoch to run (next)
        "step": step,  # the step in it to run next; 0 = the epoch has not started
        "loss_sum": loss_sum,  # of the steps already run in this epoch
        "optimizer": opt_rest,
        "schedule": schedule.state_dict(),
        "ema_n": ema.n_averaged if ema is not None else None,
        "swa_n": swa.n_averaged if swa is not None else None,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_uar": result.best_uar if math.isfinite(result.best_uar) else None,
        "torch_version": torch.__version__,
    }
    return tensors, state


def _restore(path, config, model, optimizer, schedule, ema, swa, gen, result):
    tensors, state = ckpt.load_checkpoint(path)
    if state.get("kind") != "training":
        raise ModelError(
            f"{str(path)!r} holds model weights only; resume needs a 'last' or 'interrupted' checkpoint"
        )
    saved, mine = comparable_config(state["config"]), comparable_config(config.to_json_dict())
    diff = sorted(k for k in mine if saved.get(k) != mine[k])
    if diff:
        raise ModelError(
            f"checkpoint {str(path)!r} was written by a different configuration (differs in "
            f"{', '.join(diff)}); resume it with its own config, stored in the checkpoint"
        )
    model.load_state_dict(ckpt.unprefixed("model", tensors))
    optimizer.load_state_dict(ckpt.optimizer_from_flat(ckpt.unprefixed("optim", tensors), state["optimizer"]))
    schedule.load_state_dict(state["schedule"])
    if ema is not None:
        ema.load_state_tensors(ckpt.unprefixed("ema", tensors), state["ema_n"] or 0)
    if swa is not None:
        swa.load_state_tensors(ckpt.unprefixed("swa", tensors), state["swa_n"] or 0)
    ckpt.restore_rng(tensors, gen)
    result.history = list(state["history"])
    result.best_epoch = state["best_epoch"]
    result.best_uar = state["best_uar"] if state["best_uar"] is not None else float("-inf")
    best = ckpt.unprefixed("best", tensors) or None
    return state["epoch"], state["step"], state["loss_sum"], best
