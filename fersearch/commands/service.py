"""Service verbs: `create`, `status`, `dashboard`, `storage-proxy`."""

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
    NTrialsOpt,
    SeedRecipesOpt,
    SpaceOpt,
    StorageOpt,
    StudyOpt,
    app,
    create_study_from_options,
    err,
    lit,
)

ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        help="Artifact store: a directory (shared volume) or s3://bucket. "
        "Default: $FERSEARCH_ARTIFACTS, else beside the embedded journal, else ./.fersearch",
    ),
]


@app.command()
def create(
    study: StudyOpt,
    data: DataOpt,
    space: SpaceOpt = "default",
    storage: StorageOpt = None,
    n_trials: NTrialsOpt = None,
    data_format: FormatOpt = "auto",
    seed_recipes: SeedRecipesOpt = False,
    folds: FoldsOpt = None,
    fold: FoldOpt = 0,
    crop: CropOpt = "face",
    frames: FramesOpt = 1,
) -> None:
    """Create a study once (idempotent: an existing study is left as it is)."""

    create_study_from_options(
        study, data, space, storage, n_trials, data_format, seed_recipes, folds, fold, crop, frames
    )


@app.command()
def status(study: StudyOpt, storage: StorageOpt = None) -> None:
    """Trial counts, best validation UAR, device-hours spent and saved, time left."""
    from ..search.status import study_status
    from ..search.study import load_study, sweep_stale_trials

    s = load_study(study, storage, heartbeat=True)
    sweep_stale_trials(s)
    for line in study_status(s).lines():
        typer.echo(line)


@app.command()
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Serve optuna-dashboard for the storage, with the trials' artifacts."""
    from optuna_dashboard import run_server

    from ..search.artifacts import open_artifact_store
    from ..search.storage import mask_url, open_storage, resolve_url

    backend = open_storage(storage)
    err.print(f"dashboard for {lit(mask_url(resolve_url(storage)))} at http://{lit(host)}:{port}/dashboard/")
    run_server(backend, host=host, port=port, artifact_store=open_artifact_store(artifacts, storage))


@app.command("storage-proxy")
def storage_proxy(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve gRPC on.")] = 13000,
) -> None:
    """Run Optuna's gRPC storage proxy in front of the database (workers use grpc://HOST:PORT)."""
    try:
        from optuna.storages import run_grpc_proxy_server
    except ImportError:
        from ..errors import StorageError

        raise StorageError("the storage proxy needs grpcio: `pip install grpcio protobuf`") from None
    from ..search.storage import mask_url, open_storage, resolve_url

    backend = open_storage(storage)
    err.print(f"storage proxy for {lit(mask_url(resolve_url(storage)))} on grpc://{lit(host)}:{port}")
    run_grpc_proxy_server(backend, host=host, port=port)
