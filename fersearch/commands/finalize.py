"""`fersearch finalize`: retrain the best trials, ensemble, calibrate, report, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    StorageOpt,
    StudyOpt,
    TensorBoardOpt,
    ThreadsOpt,
    app,
    check_output_dir,
    check_tracking,
    err,
    lit,
)


@app.command()
def finalize(
    study: StudyOpt,
    out: Annotated[Path, typer.Option(help="Output directory for members, report and ensemble.")],
    top: Annotated[
        int,
        typer.Option(
            help="Number of best distinct trials to ensemble (each retrained, or its own "
            "weights reused where retraining would repeat the trial)."
        ),
    ] = 5,
    seeds: Annotated[int, typer.Option(help="Retraining seeds per trial (members = top x seeds).")] = 1,
    retrain_on: Annotated[
        str,
        typer.Option(
            help="train: members trained on train, epochs/ensemble/calibration chosen on val. "
            "train+val: the same choices, then the selected members refit on train+val for "
            "their chosen epoch count (val numbers of the refit models do not exist).",
        ),
    ] = "train",
    cv: Annotated[
        int | None, typer.Option(help="Also estimate the final recipe by stratified k-fold on train+val.")
    ] = None,
    tta: Annotated[
        str,
        typer.Option(help="auto: try every TTA view set on val and keep the best; or a set name, or none."),
    ] = "auto",
    onnx: Annotated[
        bool | None,
        typer.Option(
            "--onnx/--no-onnx",
            help="Also write one ONNX file per member (for predict --backend onnxruntime). "
            "Default: when the onnx extra is installed.",
        ),
    ] = None,
    storage: StorageOpt = None,
    threads: ThreadsOpt = None,
    tensorboard: TensorBoardOpt = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Deployment budget: choose members and TTA views so one image (batch 1, torch, "
            "--budget-threads CPU threads) is predicted within this many ms.",
        ),
    ] = None,
    max_size_mb: Annotated[
        float | None,
        typer.Option(min=0.001, help="Deployment budget: the members' files together within this many MiB."),
    ] = None,
    budget_threads: Annotated[
        int, typer.Option(min=1, help="CPU threads the latency budget is measured on.")
    ] = 1,
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: also write int8 ONNX members, each kept only where its validation UAR drops by "
            "at most 0.01; the report gives their validation and test UAR and latency."
        ),
    ] = None,
) -> None:
    """Retrain the top-K trials (resumable), choose TTA, ensemble weights and calibration on
    validation, read the test split once for the report, export the ensemble."""
    from ..cpu_share import CpuShare
    from ..finalize import finalize as run_finalize
    from ..finalize.budget import Budget

    check_output_dir(out, "--out")
    check_tracking(tensorboard)
    with CpuShare(threads) as cpu:
        paths = run_finalize(
            study,
            top,
            out,
            storage,
            console=err,
            seeds=seeds,
            retrain_on=retrain_on,
            cv=cv,
            tta_mode=tta,
            onnx=onnx,
            tensorboard=tensorboard,
            budget=Budget(max_latency_ms, max_size_mb, budget_threads),
            quantize=quantize,
        )
    err.print(f"report: {lit(paths['html'])}")
    err.print(f"ensemble: {lit(paths['ensemble'])}")
    err.print(f"ran on {cpu.describe()}")
