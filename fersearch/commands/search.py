"""`fersearch search` and `fersearch worker`: run trials of a study."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    CropOpt,
    DataOpt,
    FoldOpt,
    FoldsOpt,
    FormatOpt,
    FramesOpt,
    MlflowOpt,
    NTrialsOpt,
    SeedRecipesOpt,
    SpaceOpt,
    StorageOpt,
    StudyOpt,
    TensorBoardOpt,
    ThreadsOpt,
    WarmStartFromOpt,
    WarmStartStorageOpt,
    WarmStartTopOpt,
    app,
    check_timeout,
    check_tracking,
    err,
    study_options,
)


@app.command()
def search(
    study: StudyOpt,
    data: DataOpt,
    space: SpaceOpt = "default",
    storage: StorageOpt = None,
    n_trials: NTrialsOpt = None,
    data_format: FormatOpt = "auto",
    timeout: Annotated[float | None, typer.Option(help="Stop this worker after S seconds.")] = None,
    seed_recipes: SeedRecipesOpt = False,
    folds: FoldsOpt = None,
    fold: FoldOpt = 0,
    crop: CropOpt = "face",
    frames: FramesOpt = 1,
    threads: ThreadsOpt = None,
    warm_start_from: WarmStartFromOpt = None,
    warm_start_top: WarmStartTopOpt = 5,  # warm_start.DEFAULT_TOP
    warm_start_storage: WarmStartStorageOpt = None,
    tensorboard: TensorBoardOpt = None,
    mlflow: MlflowOpt = None,
) -> None:
    """Create the study if needed, then run one worker in this process."""
    arguments = dict(locals())
    from ..search.api import create_or_join
    from ..search.worker import run_worker

    check_timeout(timeout)
    check_tracking(tensorboard, mlflow)
    create_or_join(study_options(arguments), err)
    run_worker(
        study, storage, timeout=timeout, console=err, threads=threads, tensorboard=tensorboard, mlflow=mlflow
    )


@app.command()
def worker(
    study: StudyOpt,
    storage: StorageOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    gpu: Annotated[
        str | None,
        typer.Option(help="CUDA device index, or auto: the first GPU no other worker here holds."),
    ] = None,
    artifacts: Annotated[
        str | None,
        typer.Option(help="Artifact store directory or s3://bucket (default $FERSEARCH_ARTIFACTS)."),
    ] = None,
    threads: ThreadsOpt = None,
    tensorboard: TensorBoardOpt = None,
    mlflow: MlflowOpt = None,
) -> None:
    """Join an existing study and run trials until its budget is used up."""
    from ..search.worker import run_worker

    check_timeout(timeout)
    check_tracking(tensorboard, mlflow)
    run_worker(
        study,
        storage,
        timeout=timeout,
        console=err,
        gpu=gpu,
        artifacts_dir=artifacts,
        threads=threads,
        tensorboard=tensorboard,
        mlflow=mlflow,
    )
