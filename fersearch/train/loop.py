"""fit(config, train, val): the training loop, readable top to bottom.

One epoch = the curriculum's plan for it (stage, class-weight cap, sampler, logit-adjust tau, LR
multiplier, augmentation strength) -> an index order from the sampler -> steps of: fetch +
augment a batch on the device, mix (mixup/cutmix), loss, backward, clip, optimiser (or SAM's
two passes), EMA -> SWA update -> validation UAR/WAR/macro-F1 (of the EMA weights when EMA is
on; with a VA head and VA labels also valence/arousal CCC and RMSE) -> a ``last`` checkpoint
-> ``on_epoch`` (the search worker reports to Optuna there and may prune).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import TrialConfig
from ..data.decode import SplitArrays
from ..data.loader import make_train_loader, strength_at
from ..data.sampling import class_prior, epoch_order, inverse_frequency_weights
from ..data.views import pack
from ..errors import ModelError
from ..metrics import summarize, va_scores
from ..models import create_model, without_finetune_source
from ..models.pretrained import finetune_kind
from ..runtime import autocast, resolve_device, to_input
from .augment import basic_on_device, flip_and_shift
from .checkpoint import INTERRUPTED, LAST, save_checkpoint, save_model_checkpoint
from .curriculum import epoch_at, epoch_plan
from .distill import Teacher, load_teacher
from .evaluate import predict_outputs, predict_probs
from .finetune import read_finetune_source
from .losses import au_bce, distillation_kl, focal_loss, smooth_one_hot, soft_cross_entropy, va_ccc_loss
from .mixing import mix_batch
from .optim import SAM
from .schedule import set_lr
from .state import FitResult, TrainState

# Reading a loss on the host waits for the device: on an accelerator the losses stay there and are
# read (and checked for NaN/Inf) once per this many steps, at the epoch's end and before a stop's
# checkpoint; on the CPU, where reading costs nothing, every step.
DEVICE_LOSS_CHECK_STEPS = 32


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the run cannot continue meaningfully."""


class TrainingInterrupted(Exception):
    """A stop was requested; the state at ``epoch``/``step`` is saved at ``checkpoint``."""

    def __init__(self, checkpoint: Path | None, epoch: int, step: int):
        where = f"; saved {checkpoint}" if checkpoint else " (no checkpoint directory given)"
        super().__init__(f"interrupted at epoch {epoch} step {step}{where}")
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


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
    labels = torch.from_numpy(train.labels[idx.numpy()]).to(device, non_blocking=True)
    au = getattr(train, "au", None)  # (N, A) float in [0, 1], NaN = unlabelled; optional
    au = _rows_to(au, idx.numpy(), device)
    return x, labels, au


def _rows_to(au, rows, device: torch.device) -> torch.Tensor | None:
    """AU target rows as float on ``device``, copied without waiting for the device."""
    if au is None:
        return None
    return torch.from_numpy(np.asarray(au)[np.asarray(rows)]).float().to(device, non_blocking=True)


def loader_batch(batch, train: SplitArrays, preprocess: dict, device: torch.device):
    """A (uint8 images, labels, indices) batch from the data loader -> what get_batch returns,
    and the rows' valence/arousal (B, 2) or None (see ``_batches``)."""
    images, labels, idx = batch
    x = to_input(images.to(device, non_blocking=True), preprocess["mean"], preprocess["std"])
    au = _rows_to(getattr(train, "au", None), idx, device)
    va = _rows_to(getattr(train, "va", None), idx, device)
    return x, labels.to(device, non_blocking=True), au, va


@dataclass
class _Run:
    """What stays fixed for the whole run."""

    config: TrialConfig
    num_classes: int
    device: torch.device
    pre: dict  # the model's preprocessing: mean, std, image_size
    plan: list  # per-epoch curriculum: stage, cap, tau, sampler, LR multiplier, augmentation
    batch_size: int
    use_context: bool
    log_prior: torch.Tensor
    swa_epoch: int  # SWA averages from this epoch on (the epoch count: never)
    check_every: int  # steps between reads of the loss on the host (DEVICE_LOSS_CHECK_STEPS)
    teacher: Teacher | None  # distillation from a finished model (config.teacher)
    self_teacher: Teacher | None  # self-distillation from the EMA weights
    distill_epoch: int  # self-distillation starts at this epoch


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
    torch.manual_seed(config.seed)  # weight init, dropout
    gen = torch.Generator().manual_seed(config.seed)  # augmentation and mixing
    device = resolve_device(config.device)
    model = _model(config, train, val, num_classes, model, class_names, device, resume_from is not None)
    st = TrainState.start(config, model, gen)
    run = _setup(config, train, num_classes, model.preprocess, device, st)
    start_epoch, start_step, carried_loss = 0, 0, 0.0
    if resume_from is not None:
        start_epoch, start_step, carried_loss = st.restore(resume_from)
        for rec in st.result.history:  # replay, so callers see every epoch exactly once per run
            if on_epoch is not None:
                on_epoch({**rec, "restored": True})

    def save(name: str, epoch: int, step: int, loss_sum: float) -> Path | None:
        if checkpoint_dir is None:
            return None
        return save_checkpoint(checkpoint_dir, name, *st.to_checkpoint(epoch, step, loss_sum))

    stage_aug = [p.aug for p in run.plan]
    pin = device.type == "cuda"
    loader = make_train_loader(
        config, train, run.batch_size, pin_memory=pin, use_context=run.use_context, stage_scale=stage_aug
    )
    try:  # the loader's thread or worker processes stop however training ends (pruned, interrupted)
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            resumed = epoch == start_epoch
            first_step, loss_sum = (start_step, carried_loss) if resumed else (0, 0.0)
            steps, loss_sum = _train_epoch(
                run, st, train, loader, epoch, first_step, loss_sum, save, should_stop, on_batch
            )
            record = _validate(run, st, val, epoch, loss_sum / max(1, steps), keep)
            record["seconds"] = time.perf_counter() - t0
            save(LAST, epoch + 1, 0, 0.0)
            if on_epoch is not None:
                on_epoch(record)  # may raise optuna.TrialPruned
    finally:
        if loader is not None:
            loader.close()
    return _finish(run, st, train, val, checkpoint_dir)


def _model(config, train, val, num_classes, model, class_names, device, resuming: bool) -> torch.nn.Module:
    if config.fusion != "none" and (train.context is None or val.context is None):
        raise ModelError(
            f"fusion {config.fusion!r} fuses face and context views, but this dataset has no context "
            f"views; use a clip dataset in the raer layout (`fersearch synth --context`), or fusion: none"
        )
    if config.va_head and (getattr(train, "va", None) is None or getattr(val, "va", None) is None):
        raise ModelError(
            "va_head: true trains a valence/arousal head, but this dataset has no valence/arousal "
            "values; use AffectNet (its CSV's valence and arousal columns, or the "
            "<id>_val.npy/<id>_aro.npy annotations), or va_head: false"
        )
    if model is None and finetune_kind(config.pretrained):
        # fine-tuning from a finished model; a resumed run's checkpoint holds the weights already
        if resuming:
            model = create_model(without_finetune_source(config), num_classes, class_names)
        else:
            source = read_finetune_source(config.pretrained)
            model = create_model(config, num_classes, class_names, init=source)
    model = (model if model is not None else create_model(config, num_classes, class_names)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if train.images.shape[-2] != model.preprocess["image_size"]:
        raise ValueError(
            f"train images are {train.images.shape[-2]} px but the model expects "
            f"{model.preprocess['image_size']} px; decode the split at the model's size"
        )
    return model


def _setup(config, train, num_classes, pre, device, st: TrainState) -> _Run:
    E = config.epochs
    prior = torch.as_tensor(class_prior(train.labels, num_classes), dtype=torch.float32)
    self_distill = config.self_distill_start is not None
    return _Run(
        config=config,
        num_classes=num_classes,
        device=device,
        pre=pre,
        plan=epoch_plan(config),
        batch_size=min(config.batch_size, len(train.labels)),
        use_context=config.fusion != "none",
        log_prior=torch.log(prior).to(device),
        check_every=1 if device.type == "cpu" else DEVICE_LOSS_CHECK_STEPS,
        swa_epoch=epoch_at(config.swa_start, E) if st.swa else E,
        teacher=load_teacher(config.teacher, num_classes).to(device) if config.teacher else None,
        self_teacher=Teacher([(st.ema.module, pre)]) if (self_distill and st.ema is not None) else None,
        distill_epoch=epoch_at(config.self_distill_start, E) if self_distill else E,
    )


def _batches(run: _Run, st: TrainState, train, loader, epoch: int, order, first_step: int, steps: int, aug):
    """The epoch's batches from ``first_step`` on, as (input, labels, AU targets, VA targets):
    from the data loader when an albumentations pipeline runs on the CPU, else built and
    augmented here. VA targets (B, 2), NaN = unlabelled, only when the model has a VA head."""
    va = getattr(train, "va", None) if run.config.va_head else None
    bs = run.batch_size
    if loader is not None:
        rest = order[first_step * bs : steps * bs].numpy()  # resumed: from first_step
        for batch in loader.epoch(epoch, order=rest, first_step=first_step):
            x, labels, au, va_rows = loader_batch(batch, train, run.pre, run.device)
            yield x, labels, au, (va_rows if va is not None else None)
        return
    for step in range(first_step, steps):
        idx = order[step * bs : (step + 1) * bs]
        x, labels, au = get_batch(train, idx, run.config, run.pre, run.device, st.gen, run.use_context, aug)
        yield x, labels, au, _rows_to(va, idx.numpy(), run.device)


def _train_epoch(run: _Run, st: TrainState, train, loader, epoch, first_step, loss_sum, save, stop, on_batch):
    """The epoch's optimisation steps from ``first_step``; (steps in the epoch, the loss sum)."""
    config, stage, K = run.config, run.plan[epoch], run.num_classes
    order = epoch_order(stage.sampler, train.labels, K, config.seed, epoch, config.oversample_per_class)
    steps = len(order) // run.batch_size  # drop the last partial batch: mixup and BN want full ones
    cw = inverse_frequency_weights(train.labels, K, stage.cap) if stage.cap is not None else None
    class_weights = torch.as_tensor(cw, device=run.device) if cw is not None else None
    in_swa = epoch >= run.swa_epoch
    # on-device basic pipeline: its strength this epoch; else the stage's shift multiplier
    aug = stage.aug
    if config.augment_on == "device":
        aug = strength_at(config, epoch, [p.aug for p in run.plan])
    st.model.train()
    batches = _batches(run, st, train, loader, epoch, order, first_step, steps, aug)
    losses = _Losses(epoch, loss_sum, first_step)
    for step in range(first_step, steps):
        if stop is not None and stop():
            losses.check()  # never checkpoint weights a NaN step has reached
            raise TrainingInterrupted(save(INTERRUPTED, epoch, step, losses.total), epoch, step)
        factor = st.schedule.lr_factor(epoch + step / steps, stage.lr_mult, in_swa)
        set_lr(st.optimizer, factor, config.swa_lr)
        x, labels, au, va = next(batches)
        y = smooth_one_hot(labels, K, config.label_smoothing)  # (B, K) soft targets
        extra = [t for t in (au, va) if t is not None]  # mixed like the labels (NaN stays NaN)
        mixing = (config.mixup_alpha, config.cutmix_alpha, config.mix_prob, config.cutmix_switch_prob)
        x, targets = mix_batch(x, [y, *extra], st.gen, *mixing)
        y, mixed = targets[0], iter(targets[1:])
        au, va = (next(mixed) if au is not None else None), (next(mixed) if va is not None else None)
        if run.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        teacher = run.teacher or (run.self_teacher if epoch >= run.distill_epoch else None)
        teacher_probs = teacher.probs(x, run.pre, config.distill_temperature) if teacher is not None else None

        def loss_fn() -> torch.Tensor:
            return _loss(run, st.model, x, y, au, va, class_weights, stage.tau, teacher_probs)

        losses.add(_optimizer_step(st, config, loss_fn, skip_nonfinite=run.check_every == 1))
        if len(losses.pending) >= run.check_every:
            losses.check()
        if on_batch is not None:
            on_batch(step + 1, steps)
    losses.check()
    if st.swa is not None and in_swa:
        st.swa.update(st.model)
    return steps, losses.total


class _Losses:
    """The epoch's loss sum. Step losses wait on the device until ``check`` reads them all at
    once: a non-finite one raises TrainingDiverged naming its step; the rest join ``total``
    (a float64 sum in step order, as the host would add them one by one)."""

    def __init__(self, epoch: int, total: float, first_step: int):
        self.epoch, self.total, self.next_step = epoch, total, first_step
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach())

    def check(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).double().cpu().tolist()  # the one wait for the device
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at epoch {self.epoch} step {self.next_step + i}")
            self.total += value
        self.next_step += len(values)
        self.pending.clear()


def _loss(run: _Run, model, x, labels_soft, au, va, class_weights, tau, teacher_probs) -> torch.Tensor:
    config = run.config
    with autocast(run.device):
        out = model(x)  # {"logits": (B, K), "features": ..., optional "au_logits": (B, A), "va": (B, 2)}
    logits = out["logits"]
    if config.loss == "focal":
        task = focal_loss(logits, labels_soft, config.focal_gamma, class_weights, run.log_prior, tau)
    else:
        task = soft_cross_entropy(logits, labels_soft, class_weights, run.log_prior, tau)
    if teacher_probs is not None:  # Hinton KD on the raw (unadjusted) logits
        kd = distillation_kl(logits, teacher_probs, config.distill_temperature)
        task = (1 - config.distill_alpha) * task + config.distill_alpha * kd
    if au is not None and "au_logits" in out and config.au_loss_weight > 0:
        task = task + config.au_loss_weight * au_bce(out["au_logits"], au)
    if va is not None and "va" in out and config.va_loss_weight > 0:
        task = task + config.va_loss_weight * va_ccc_loss(out["va"], va)
    return task


def _optimizer_step(
    st: TrainState, config: TrialConfig, loss_fn: Callable[[], torch.Tensor], skip_nonfinite: bool = True
) -> torch.Tensor:
    """One optimiser step (SAM: two passes, the second at the sharpest nearby point), then the
    EMA. Returns the first pass's loss. ``skip_nonfinite``: a non-finite loss is returned before
    any update (a read of the loss: on an accelerator the caller checks a stretch of steps at
    once instead, and the diverged trial's weights are thrown away)."""
    optimizer = st.optimizer
    loss = loss_fn()
    if skip_nonfinite and not torch.isfinite(loss):
        return loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _clip(st.model, config)
    if isinstance(optimizer, SAM):
        optimizer.first_step()
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        _clip(st.model, config)
        optimizer.second_step()
    else:
        optimizer.step()
    if st.ema is not None:
        st.ema.update(st.model)
    return loss


def _validate(run: _Run, st: TrainState, val, epoch: int, train_loss: float, keep: str) -> dict:
    stage = run.plan[epoch]
    val_context = val.context if run.use_context else None
    probs, va = predict_outputs(st.scored, val.images, run.pre, run.device, context=val_context)
    m = summarize(val.labels, probs.argmax(1), run.num_classes)
    st.schedule.end_epoch(m["uar"])
    record = {
        "epoch": epoch,
        "stage": stage.stage,
        "cap": stage.cap,
        "tau": stage.tau,
        "sampler": stage.sampler,
        "aug": stage.aug,
        "train_loss": train_loss,
        "lr": st.optimizer.param_groups[0]["lr"],
        "uar": m["uar"],
        "war": m["war"],
        "macro_f1": m["macro_f1"],
    }
    if (
        va is not None and getattr(val, "va", None) is not None
    ):  # valence/arousal CCC and RMSE on the labelled rows
        record.update({k: v for k, v in va_scores(va, val.va).items() if k != "va_labelled"})
    st.result.history.append(record)
    st.keep_best(m["uar"], epoch, probs, always=keep == "last")
    return record


def _finish(run: _Run, st: TrainState, train, val, checkpoint_dir) -> FitResult:
    """The weights to return (best epoch, or the SWA average if it validates better), saved as
    the trial's ``best`` checkpoint."""
    result, model = st.result, st.model
    best_state = st.best_state
    if st.swa is not None and st.swa.n_averaged > 0:
        best_state = _finish_swa(run, st.swa, train, val, result, best_state)
    if best_state is not None:
        model.load_state_dict(best_state)
        if result.best_val_probs is None:  # the best epoch was before a resume
            val_context = val.context if run.use_context else None
            result.best_val_probs = predict_probs(model, val.images, run.pre, run.device, context=val_context)
    if checkpoint_dir is not None:
        info = {"epoch": result.best_epoch, "val_uar": result.best_uar, "source": result.best_source}
        save_model_checkpoint(checkpoint_dir, model, run.config.to_json_dict(), info)
    return result


def _clip(model: torch.nn.Module, config: TrialConfig) -> None:
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)


def _finish_swa(run: _Run, swa, train, val, result: FitResult, best_state):
    """BN statistics for the averaged weights (one unaugmented pass over train), then keep the
    average if it validates better than the best single epoch."""
    bs, pre, device, use_context = run.batch_size, run.pre, run.device, run.use_context

    def rows(arrays, i):
        context = arrays.context[i : i + bs] if use_context else None
        return torch.from_numpy(pack(arrays.images[i : i + bs], context)).to(device)

    batches = (
        to_input(rows(train, i), pre["mean"], pre["std"]) for i in range(0, len(train.labels) - bs + 1, bs)
    )
    swa.update_bn(batches)
    probs = predict_probs(swa.module, val.images, pre, device, context=val.context if use_context else None)
    m = summarize(val.labels, probs.argmax(1), run.num_classes)
    result.swa_metrics = {k: m[k] for k in ("uar", "war", "macro_f1")} | {"n_averaged": swa.n_averaged}
    if m["uar"] > result.best_uar:
        result.best_uar, result.best_val_probs, result.best_source = m["uar"], probs, "swa"
        return {k: v.detach().clone() for k, v in swa.module.state_dict().items()}
    return best_state
