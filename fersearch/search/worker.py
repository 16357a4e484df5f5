"""The worker: ask the study for a trial, train it, report validation UAR every epoch.

Any number of workers, in this process or others, on this host or others, share one study. The
study-wide trial budget stored at creation decides when every worker stops.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..cpu_share import CpuShare, current_threads
from ..data import load_manifest
from ..data.decode import decode_split
from ..models import preprocess_for
from ..presets import preset_values
from ..train import GracefulStop, TrainingDiverged, TrainingInterrupted, fit
from ..version import code_version
from .artifacts import open_artifact_store
from .budget import Surplus, TrialBudget
from .devices import choose_device
from .space import resolve_config, sample_params
from .storage import MAX_RETRY
from .study import SURPLUS_ATTR, StudySettings, load_study, settings, sweep_stale_trials
from .trial_state import (
    checkpoint_dir_for,
    default_artifacts_dir,
    remove_training_state,
    requeue_interrupted,
    resume_info,
)


@dataclass
class WorkerSummary:
    finished: dict[str, int] = field(default_factory=dict)  # state name -> count, this worker

    @property
    def total(self) -> int:
        return sum(self.finished.values())


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


class Objective:
    """One callable per worker; keeps the decoded dataset across trials."""

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
        self.interrupted_numbers: set[int] = set()

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        if self.budget.is_surplus(trial):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus()
        t0 = time.perf_counter()
        params = sample_params(trial, self.cfg.space)
        # ---- presets, retries and checkpoints (training recipes) ----
        # A seed-recipe trial fills in what the space leaves open; a retry of an interrupted
        # trial keeps that trial's seed and resumes from its checkpoint.
        resume_from, seed = resume_info(trial)
        extra = preset_values(
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
        trial.set_user_attr("checkpoint_dir", str(ckpt_dir))
        # ---- end ----
        trial.set_user_attr("config", config.to_json_dict())
        trial.set_user_attr("seed", config.seed)
        trial.set_user_attr("code_version", code_version())
        trial.set_user_attr("threads", self.cpu.refresh(force=True) if self.cpu else current_threads())

        size = preprocess_for(config)["image_size"]
        decode_task = self.progress.add_task(f"decode {size}px", total=None, info="")
        upd = lambda done, total: self.progress.update(decode_task, completed=done, total=total)  # noqa: E731
        train = decode_split(self.manifest, "train", size, upd)
        val = decode_split(self.manifest, "val", size, upd)
        self.progress.remove_task(decode_task)

        uar_hist: list[float] = []
        war_hist: list[float] = []
        stage_hist: list[int] = []
        task = self.progress.add_task(
            f"trial {trial.number} epoch 1/{config.epochs}", total=None, info=_short(params)
        )

        def on_batch(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)
            if self.cpu is not None:
                self.cpu.refresh()  # a worker that started since gets its share of the cores

        def on_epoch(rec: dict) -> None:
            step = rec["epoch"] + 1  # epochs completed: Hyperband's resource unit
            uar_hist.append(round(rec["uar"], 5))
            war_hist.append(round(rec["war"], 5))
            trial.set_user_attr("uar_per_epoch", uar_hist)
            trial.set_user_attr("war_per_epoch", war_hist)
            stage_hist.append(rec["stage"])
            trial.set_user_attr("stage_per_epoch", stage_hist)  # the curriculum stage (1-4)
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - t0, 2))
            # The pruner sees what the trial would deliver if stopped now: its best epoch so far
            # (the value the trial returns). One noisy epoch no longer decides a rung; on the
            # search-efficiency runs this ranks trials closer to their final value at every epoch.
            trial.report(max(uar_hist), step)
            self.progress.update(
                task,
                description=f"trial {trial.number} epoch {min(step + 1, config.epochs)}/{config.epochs}",
                info=f"val UAR {rec['uar']:.3f} WAR {rec['war']:.3f}  {_short(params)}",
            )
            if step < config.epochs and trial.should_prune():  # the last epoch completes
                trial.set_user_attr("pruned_at_epoch", step)
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
            trial.set_user_attr("pruned_reason", str(exc))
            remove_training_state(ckpt_dir)
            raise optuna.TrialPruned(str(exc)) from None
        except TrainingInterrupted as exc:
            # Saved at the exact step: fail this trial and queue a copy that resumes from it.
            requeue_interrupted(self.study, trial, exc, seed, self.stop.signal_name if self.stop else "")
            self.interrupted_numbers.add(trial.number)
            raise
        except optuna.TrialPruned:
            remove_training_state(ckpt_dir)
            raise
        finally:
            self.progress.remove_task(task)
        remove_training_state(ckpt_dir)  # best.json (the best weights) stays
        if resume_from is not None:
            remove_training_state(Path(resume_from).parent)
        if result.resumed_from_epoch is not None:
            trial.set_user_attr("resumed_from_epoch", result.resumed_from_epoch)
        if result.swa_metrics is not None:
            trial.set_user_attr("swa_val_uar", round(result.swa_metrics["uar"], 5))
        trial.set_user_attr("best_epoch", result.best_epoch + 1)
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - t0, 2))
        if self.artifact_store is not None:
            self._upload_artifacts(trial, result, val.labels, ckpt_dir)
        return result.best_uar

    def _upload_artifacts(self, trial: optuna.Trial, result, val_labels, ckpt_dir: Path) -> None:
        """Best weights (the ``best`` checkpoint fit already wrote: its tensors and its JSON with
        the config), validation confusion matrix and per-class recall, for the dashboard."""
        from ..metrics import summarize
        from ..train import checkpoint as ckpt
        from .artifacts import plot_trial_figures, upload_trial_files

        m = summarize(val_labels, result.best_val_probs.argmax(1), self.manifest.num_classes)
        best_json = ckpt_dir / f"{ckpt.BEST}.json"
        with tempfile.TemporaryDirectory(prefix="fersearch-artifacts-") as tmp:
            files = plot_trial_figures(
                m["confusion_matrix"], list(self.manifest.class_names), m["per_class"]["recall"], Path(tmp)
            )
            files["best.json"] = best_json
            files["best.safetensors"] = best_json.parent / json.loads(best_json.read_text())["tensors"]
            upload_trial_files(self.artifact_store, trial, files)


def _trains_on_cpu(device: str) -> bool:
    """A worker with no GPU waits for a free core rather than time-slicing one (cpu_share)."""
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def _short(params: dict) -> str:
    parts = []
    for k, v in params.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def run_worker(
    study_name: str,
    storage_url: str | None = None,
    timeout: float | None = None,
    console: Console | None = None,
    artifacts_dir: str | Path | None = None,
    gpu: str | None = None,
    upload_artifacts: bool = True,
    threads: int | None = None,
) -> WorkerSummary:
    """Run trials until the study's budget is used up (or ``timeout`` seconds have passed).

    SIGINT/SIGTERM: the running trial saves an ``interrupted`` checkpoint, is re-queued to
    resume from it, and the worker returns. Checkpoints and the dashboard's artifact store live
    under ``artifacts_dir`` (default: $FERSEARCH_ARTIFACTS, else beside an embedded journal,
    else ./.fersearch). ``gpu``: a CUDA index, ``auto`` (the first GPU no other worker on this
    host holds; the CPU when there is none) or None (CUDA if present, else the CPU).
    ``threads``: CPU threads for this worker; None takes its share of the host's cores
    (``fersearch.cpu_share``), counted again while it runs.
    """
    console = console or Console(stderr=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device, gpu_lock = choose_device(gpu)
    # heartbeat=True: a killed worker's trial is failed and re-queued (RDB storages).
    study = _db_retry(lambda: load_study(study_name, storage_url, heartbeat=True))
    cfg = _db_retry(lambda: settings(study))
    summary = WorkerSummary()
    deadline = None if timeout is None else time.monotonic() + timeout
    artifacts = Path(artifacts_dir) if artifacts_dir else default_artifacts_dir(storage_url)
    store = open_artifact_store(artifacts) if upload_artifacts else None
    # One read of the study per trial: the budget check, the progress line and the best trial.
    budget = TrialBudget(study, cfg.n_trials)

    with (
        _progress(console) as progress,
        gpu_lock,
        CpuShare(threads, wait_for_core=_trains_on_cpu(device), on_wait=console.print) as cpu,
        GracefulStop() as stop,
        _QuietInterrupted() as quiet,
    ):
        progress.console.print(f"worker: {cpu.describe()}")
        objective = Objective(study, cfg, progress, artifacts, stop, device, store, budget, cpu)
        objective.interrupted_numbers = quiet.numbers
        go_on = _db_retry(budget.left)
        trials_task = progress.add_task(
            f"study {study_name}", total=cfg.n_trials, info="", completed=budget.last.counted
        )
        db_errors = 0
        while go_on and (deadline is None or time.monotonic() < deadline):
            finished: list[optuna.trial.FrozenTrial] = []
            objective.current = None
            try:
                study.optimize(
                    objective,
                    n_trials=1,
                    catch=(Surplus, RuntimeError, TrainingInterrupted),
                    callbacks=[lambda s, t: finished.append(t)],
                )
            except DB_ERRORS as exc:
                # A dropped connection (database restart, pg_terminate_backend): the pool
                # pre-pings and reconnects on the next call; the trial that was hit is queued
                # again and resumes from its last checkpoint.
                db_errors += 1
                if db_errors > MAX_DB_ERRORS:
                    raise
                progress.console.print(
                    f"[yellow]database connection lost[/] ({type(exc.__cause__ or exc).__name__}); "
                    f"retrying ({db_errors}/{MAX_DB_ERRORS})"
                )
                time.sleep(min(30.0, 2.0**db_errors))
                _requeue_failed(study, objective.current)
                go_on = _db_retry(budget.left)
                continue
            last = finished[-1]
            if stop():  # SIGINT/SIGTERM: the trial (if any) is saved and re-queued
                progress.console.print(_describe(last, _db_retry(budget.read).best))
                progress.console.print(f"worker stopped by {stop.signal_name}")
                break
            if last.user_attrs.get(SURPLUS_ATTR):
                break
            state = last.state.name.lower()
            summary.finished[state] = summary.finished.get(state, 0) + 1
            go_on = _db_retry(budget.left)  # the next trial's budget check, read once
            progress.console.print(_describe(last, budget.last.best))
            progress.update(trials_task, completed=budget.last.counted)
        _db_retry(lambda: sweep_stale_trials(study))
    return summary


MAX_DB_ERRORS = 5
DB_ERRORS = (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError)


def _db_retry(call, attempts: int = MAX_DB_ERRORS):
    """Run a storage read again after a dropped connection (the pool reconnects on retry)."""
    for attempt in range(attempts):
        try:
            return call()
        except DB_ERRORS:
            if attempt == attempts - 1:
                raise
            time.sleep(min(30.0, 2.0**attempt))


def _requeue_failed(study: optuna.Study, number: int | None) -> None:
    """Queue a trial that died on a database error again, as the heartbeat retry would (the
    copy keeps the user attributes, so it resumes from the trial's checkpoint directory)."""
    if number is None:
        return
    try:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if frozen.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
            frozen = study._storage.get_trial(frozen._trial_id)
        if frozen.state == TrialState.FAIL:
            optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY, inherit_intermediate_values=True
            )(study, frozen)
    except Exception as exc:  # the bookkeeping must not hide the original error
        logging.getLogger(__name__).warning("could not re-queue trial %s: %s", number, exc)


class _QuietInterrupted(logging.Filter):
    """While active, Optuna's failure traceback for an interrupted trial is dropped: the worker
    reports it in one line (the trial numbers are added by the objective)."""

    LOGGER = "optuna.study._optimize"

    def __init__(self):
        super().__init__()
        self.numbers: set[int] = set()

    def __enter__(self) -> _QuietInterrupted:
        logging.getLogger(self.LOGGER).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {n} failed") for n in self.numbers)


def _describe(t: optuna.trial.FrozenTrial, best: optuna.trial.FrozenTrial | None) -> str:
    best_txt = "no complete trial yet" if best is None else f"best {best.value:.4f} (trial {best.number})"
    if t.state == TrialState.COMPLETE:
        return f"trial {t.number:3d} [green]complete[/] val UAR {t.value:.4f}  {best_txt}"
    if t.state == TrialState.PRUNED:
        epoch = t.user_attrs.get("pruned_at_epoch", "?")
        reason = t.user_attrs.get("pruned_reason", "")
        return f"trial {t.number:3d} [yellow]pruned[/] at epoch {epoch} {reason}  {best_txt}"
    if t.user_attrs.get("interrupted_checkpoint"):
        return f"trial {t.number:3d} [yellow]interrupted[/], re-queued to resume  {best_txt}"
    reason = t.system_attrs.get("fail_reason", "")
    return f"trial {t.number:3d} [red]{t.state.name.lower()}[/] {reason}  {best_txt}"
