"""The worker: ask the study for a trial, train it, report validation UAR every epoch.

Any number of workers, in this process or others, on this host or others, share one study. The
study-wide trial budget stored at creation decides when every worker stops; a worker whose
budget is used up still waits while other workers' trials run, so that the trial of one that
dies is retried (fersearch/search/liveness.py). ``run_worker`` sets up the worker (its device,
its share of the cores, the study); the loop around each trial is ``TrialLoop``
(fersearch/search/loop.py); ``Objective`` is one trial's work: sample, train, record.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from rich.console import Console
from rich.progress import Progress

from ..cpu_share import CpuShare, current_threads
from ..data import load_manifest
from ..data.decode import decode_split
from ..metrics import summarize
from ..models import create_model, preprocess_for
from ..progress import tasks
from ..train import GracefulStop, TrainingDiverged, TrainingInterrupted, fit
from ..train import checkpoint as ckpt
from ..version import code_version
from . import attrs, deploy
from .artifacts import open_artifact_store, plot_trial_figures, upload_trial_files
from .budget import TrialBudget
from .devices import choose_device
from .finetune import bind_trial_sources
from .liveness import Heartbeat, StoreHealth, TrialLost, timing
from .loop import TrialLoop, WorkerSummary
from .pareto import UarRule, objective_values
from .pareto import short_params as _short
from .presets import recipe_values
from .space import resolve_config, sample_params
from .study import StudySettings, load_study
from .tracking import TensorBoard, hparams_of, mlflow_callback
from .trial_state import (
    checkpoint_dir_for,
    default_artifacts_dir,
    in_checkpoints,
    remove_training_state,
    requeue_interrupted,
    resume_info,
)


class Objective:
    """One callable per worker; keeps the decoded dataset across trials.

    Every storage call inside a trial is ridden out through an outage (``health``); a write the
    storage refuses because the trial has ended, or a heartbeat that found it so (``beat``),
    means another process failed it as stale and re-queued it: ``TrialLost``."""

    def __init__(
        self,
        study: optuna.Study,
        cfg: StudySettings,
        progress: Progress,
        artifacts_dir: Path | None = None,
        stop: GracefulStop | None = None,
        device: str = "auto",
        artifact_store=None,
        budget: TrialBudget | None = None,
        cpu: CpuShare | None = None,
        health: StoreHealth | None = None,
        tensorboard: TensorBoard | None = None,
    ):
        self.study = study
        self.cpu = cpu  # None: leave the process's threads as they are (benchmarks set them)
        self.cfg = cfg
        self.budget = budget or TrialBudget(study, cfg.n_trials)
        self.progress = progress
        self.device = device
        self.artifact_store = artifact_store  # optuna artifact store for the dashboard, or None
        self.manifest = load_manifest(cfg.data)
        self.artifacts_dir = artifacts_dir or Path(".fersearch")
        self.stop = stop
        self.health = health or StoreHealth()
        self.beat: Heartbeat | None = None  # the running trial's, set by the worker loop
        self.tensorboard = tensorboard or TensorBoard(None)  # --tensorboard DIR: a run per trial
        # a Pareto search prunes on UAR by fersearch's rule: Optuna's pruners refuse it
        self.uar_rule = UarRule.of(cfg.space) if cfg.space.multi_objective else None

    def _check_deploy(self, trial: optuna.Trial, config) -> dict:
        """The trial's model against the space's deployment budget (fersearch/search/deploy.py):
        its cost goes on the trial (and is returned), and a model over budget ends the trial
        PRUNED, untrained."""
        task = self.progress.add_task(f"trial {trial.number}: deployment cost", total=None, info="")
        try:
            # weights change neither speed nor size: no pretrained file read, no fine-tune source
            measured = config.model_copy(update={"pretrained": False})
            model = create_model(measured, self.manifest.num_classes, list(self.manifest.class_names))
            verdict = deploy.assess(self.cfg.space.deploy, model)
            del model
        finally:
            self.progress.remove_task(task)
        self._db(lambda: deploy.record(trial, verdict), f"recording trial {trial.number}'s deployment cost")
        if not verdict.feasible:
            raise optuna.TrialPruned(f"infeasible: {verdict.reason}")
        return verdict.cost.as_dict()

    def _db(self, call, what: str):
        try:
            return self.health.ride_out(call, what, self.stop)
        except UpdateFinishedTrialError:
            raise TrialLost(what) from None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        n = trial.number
        t0 = time.perf_counter()
        params, config, seed, resume_from, ckpt_dir = self._db(
            lambda: self._start(trial), f"starting trial {n}"
        )

        cost = None
        if self.cfg.space.deploy is not None:  # before any data is decoded or epoch trained
            cost = self._check_deploy(trial, config)
        size = preprocess_for(config)["image_size"]
        decode_task = self.progress.add_task(f"decode {size}px", total=None, info="")
        upd = lambda done, total: self.progress.update(decode_task, completed=done, total=total)  # noqa: E731
        train = decode_split(self.manifest, "train", size, upd)
        val = decode_split(self.manifest, "val", size, upd)
        self.progress.remove_task(decode_task)

        uar_hist: list[float] = []
        war_hist: list[float] = []
        stage_hist: list[int] = []
        task = self.progress.add_task(f"trial {n} epoch 1/{config.epochs}", total=None, info=_short(params))
        hparams = hparams_of(config, tuple(self.cfg.space.params))
        run = self.tensorboard.trial_run(self.study.study_name, n, hparams)

        def on_batch(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)
            if self.beat is not None:
                self.beat.check()  # failed as stale elsewhere: stop, its copy goes on
            if self.cpu is not None:
                self.cpu.refresh()  # a worker that started since gets its share of the cores

        def record(step: int) -> str | None:
            """Why the trial stops after ``step`` epochs ("" when Optuna's pruner says so), or None."""
            trial.set_user_attr(attrs.UAR_PER_EPOCH, uar_hist)
            trial.set_user_attr(attrs.WAR_PER_EPOCH, war_hist)
            trial.set_user_attr(attrs.STAGE_PER_EPOCH, stage_hist)  # the curriculum stage (1-4)
            trial.set_user_attr(attrs.WALL_SECONDS, round(time.perf_counter() - t0, 2))
            # The pruner sees what the trial would deliver if stopped now: its best epoch so far
            # (the value the trial returns). One noisy epoch no longer decides a rung; on the
            # search-efficiency runs this ranks trials closer to their final value at every epoch.
            if self.uar_rule is None:
                trial.report(max(uar_hist), step)
                return "" if step < config.epochs and trial.should_prune() else None  # the last completes
            # A Pareto search (Trial.report raises there): fersearch's rule on the recorded curves
            read = lambda: self.study.get_trials(deepcopy=False)  # noqa: E731
            return None if step >= config.epochs else self.uar_rule.prune(n, uar_hist, read)

        def on_epoch(rec: dict) -> None:
            step = rec["epoch"] + 1  # epochs completed: Hyperband's resource unit
            uar_hist.append(round(rec["uar"], 5))
            war_hist.append(round(rec["war"], 5))
            stage_hist.append(rec["stage"])
            run.epoch(rec)  # never raises: a failed write turns this trial's tracking off
            # Written again whole after a dropped connection: every write here is idempotent.
            prune = self._db(lambda: record(step), f"recording trial {n}'s epoch {step}")
            self.progress.update(
                task,
                description=f"trial {n} epoch {min(step + 1, config.epochs)}/{config.epochs}",
                info=f"val UAR {rec['uar']:.3f} WAR {rec['war']:.3f}  {_short(params)}",
            )
            if prune is not None:
                self._db(lambda: _mark_pruned(trial, step, prune), f"pruning trial {n}")
                raise optuna.TrialPruned(f"val UAR {rec['uar']:.4f} at epoch {step}")

        try:
            result = fit(
                config,
                train,
                val,
                self.manifest.num_classes,
                on_epoch,
                on_batch,
                checkpoint_dir=ckpt_dir,
                resume_from=resume_from,
                should_stop=self.stop,
                class_names=list(self.manifest.class_names),
            )
        except TrainingDiverged as exc:
            reason = str(exc)
            self._db(lambda: trial.set_user_attr(attrs.PRUNED_REASON, reason), f"pruning trial {n}")
            remove_training_state(ckpt_dir)
            raise optuna.TrialPruned(reason) from None
        except TrainingInterrupted as exc:
            # Saved at the exact step: fail this trial and queue a copy that resumes from it.
            signal_name = self.stop.signal_name if self.stop else ""
            self._db(
                lambda e=exc: requeue_interrupted(self.study, trial, e, seed, signal_name), f"re-queuing {n}"
            )
            raise
        except optuna.TrialPruned:
            remove_training_state(ckpt_dir)
            raise
        finally:
            self.progress.remove_task(task)
            run.close()
        # (TrialLost leaves the checkpoints alone: the copy resumes from them.)
        self._db(lambda: self._finish(trial, result, t0), f"finishing trial {n}")
        if self.artifact_store is not None:
            self._db(lambda: self._upload_artifacts(trial, result, val.labels, ckpt_dir), f"uploading {n}")
        remove_training_state(ckpt_dir)  # best.json (the best weights) stays
        if resume_from is not None and in_checkpoints(self.artifacts_dir, Path(resume_from).parent):
            remove_training_state(Path(resume_from).parent)  # (elsewhere: another host's, or tampered)
        return objective_values(self.cfg.space, result.best_uar, cost)

    def _start(self, trial: optuna.Trial):
        """Parameters, the resolved config, and the trial's attributes. Safe to run again after
        a dropped connection: a parameter already stored is read back, not drawn again."""
        params = sample_params(trial, self.cfg.space)
        # ---- presets, retries and checkpoints (training recipes) ----
        # A recipe trial (a seed recipe, a warm start) fills in what the space leaves open; a
        # retry of an interrupted or dead trial keeps that trial's seed and resumes from its
        # checkpoint.
        resume_from, seed = resume_info(trial)
        extra = recipe_values(
            trial,
            self.cfg.space,
            params,
            has_context=self.manifest.clips is not None,
            au_classes=len(self.manifest.au_names or ()),
        )
        config = resolve_config(self.cfg.space, {**extra, **params}, self.cfg.data, seed=seed)
        if self.device != "auto":
            config = config.model_copy(update={"device": self.device})
        ckpt_dir = checkpoint_dir_for(self.artifacts_dir, self.study.study_name, trial.number)
        trial.set_user_attr(attrs.CHECKPOINT_DIR, str(ckpt_dir))
        # ---- end ----
        trial.set_user_attr(attrs.CONFIG, config.to_json_dict())
        trial.set_user_attr(attrs.SEED, config.seed)
        trial.set_user_attr(attrs.CODE_VERSION, code_version())
        trial.set_user_attr(attrs.THREADS, self.cpu.refresh(force=True) if self.cpu else current_threads())
        return params, config, seed, resume_from, ckpt_dir

    @staticmethod
    def _finish(trial: optuna.Trial, result, t0: float) -> None:
        if result.resumed_from_epoch is not None:
            trial.set_user_attr(attrs.RESUMED_FROM_EPOCH, result.resumed_from_epoch)
        if result.swa_metrics is not None:
            trial.set_user_attr(attrs.SWA_VAL_UAR, round(result.swa_metrics["uar"], 5))
        trial.set_user_attr(attrs.BEST_EPOCH, result.best_epoch + 1)
        trial.set_user_attr(attrs.WALL_SECONDS, round(time.perf_counter() - t0, 2))

    def _upload_artifacts(self, trial: optuna.Trial, result, val_labels, ckpt_dir: Path) -> None:
        """Best weights (the ``best`` checkpoint fit already wrote: its tensors and its JSON with
        the config), validation confusion matrix and per-class recall, for the dashboard."""
        m = summarize(val_labels, result.best_val_probs.argmax(1), self.manifest.num_classes)
        best_json = ckpt_dir / f"{ckpt.BEST}.json"
        with tempfile.TemporaryDirectory(prefix="fersearch-artifacts-") as tmp:
            files = plot_trial_figures(
                m["confusion_matrix"], list(self.manifest.class_names), m["per_class"]["recall"], Path(tmp)
            )
            files["best.json"] = best_json
            files["best.safetensors"] = best_json.parent / json.loads(best_json.read_text())["tensors"]
            upload_trial_files(self.artifact_store, trial, files)


def _mark_pruned(trial: optuna.Trial, step: int, reason: str) -> None:
    trial.set_user_attr(attrs.PRUNED_AT_EPOCH, step)
    if reason:  # the Pareto search's UAR rule says why
        trial.set_user_attr(attrs.PRUNED_REASON, reason)


def _trains_on_cpu(device: str) -> bool:
    """A worker with no GPU waits for a free core rather than time-slicing one (cpu_share)."""
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def run_worker(
    study_name: str,
    storage_url: str | None = None,
    timeout: float | None = None,
    console: Console | None = None,
    artifacts_dir: str | Path | None = None,
    gpu: str | None = None,
    upload_artifacts: bool = True,
    threads: int | None = None,
    tensorboard: str | Path | None = None,
    mlflow: str | None = None,
) -> WorkerSummary:
    """Run trials until the study's budget is used up (or ``timeout`` seconds have passed).

    With the budget used up, the worker stays while other workers' trials run: one whose
    worker dies goes stale and is re-queued, and this worker runs the copy. SIGINT/SIGTERM: the
    running trial saves an ``interrupted`` checkpoint, is re-queued to resume from it, and the
    worker returns. A storage outage is ridden out (fersearch/search/liveness.py). Checkpoints
    and the dashboard's artifact store live under ``artifacts_dir`` (default:
    $FERSEARCH_ARTIFACTS, else beside an embedded journal, else ./.fersearch). ``gpu``: a CUDA
    index, ``auto`` (the first GPU no other worker on this host holds; the CPU when there is
    none) or None (CUDA if present, else the CPU). ``threads``: CPU threads for this worker;
    None takes its share of the host's cores (``fersearch.cpu_share``), counted again while it
    runs. ``tensorboard``: a folder for TensorBoard event files, one run per trial; ``mlflow``:
    an MLflow tracking URI every finished trial is logged to (fersearch/search/tracking.py).
    """
    console = console or Console(stderr=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    beat_timing = timing()  # FERSEARCH_HEARTBEAT_INTERVAL / FERSEARCH_GRACE_PERIOD, checked first
    say = lambda text: console.print(text, style="yellow", markup=False, soft_wrap=True)  # noqa: E731
    board = TensorBoard(tensorboard, say)  # both checked before the study is opened
    after_trial = [cb for cb in (mlflow_callback(mlflow),) if cb is not None]
    device, gpu_lock = choose_device(gpu)
    # one line per message, however long (a log is read with grep)
    health = StoreHealth(say)
    study, cfg = health.ride_out(lambda: load_study(study_name, storage_url), "opening the study")
    bind_trial_sources(study)  # pretrained: trial:STUDY/N is looked up in this study's storage
    artifacts = Path(artifacts_dir) if artifacts_dir else default_artifacts_dir(storage_url)
    store = open_artifact_store(artifacts) if upload_artifacts else None
    # One read of the study per trial: the budget check, the progress line and the best trial.
    budget = TrialBudget(study, cfg.n_trials)

    with (
        tasks(console, info=True) as progress,
        gpu_lock,
        CpuShare(threads, wait_for_core=_trains_on_cpu(device), on_wait=console.print) as cpu,
        GracefulStop() as stop,
    ):
        progress.console.print(f"worker: {cpu.describe()}")
        objective = Objective(
            study, cfg, progress, artifacts, stop, device, store, budget, cpu, health, tensorboard=board
        )
        loop = TrialLoop(study, budget, objective, progress, stop, health, beat_timing, after_trial)
        loop.run(None if timeout is None else time.monotonic() + timeout)
    return loop.summary
