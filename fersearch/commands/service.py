"""Service verbs: `create`, `status`, `dashboard`, `storage-proxy`.

Neither server authenticates anyone: both listen on 127.0.0.1 unless told otherwise, their help
says what binding another interface gives away, and doing so prints a warning.
"""

from __future__ import annotations

import ipaddress
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
    WarmStartFromOpt,
    WarmStartStorageOpt,
    WarmStartTopOpt,
    app,
    check_port,
    err,
    lit,
    study_options,
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
    warm_start_from: WarmStartFromOpt = None,
    warm_start_top: WarmStartTopOpt = 5,  # warm_start.DEFAULT_TOP
    warm_start_storage: WarmStartStorageOpt = None,
) -> None:
    """Create a study once (idempotent: an existing study is left as it is)."""
    arguments = dict(locals())
    from ..search.api import create_or_join

    create_or_join(study_options(arguments), err)


@app.command()
def status(study: StudyOpt, storage: StorageOpt = None) -> None:
    """Trial counts, best validation UAR, device-hours spent and saved, time left; the front of
    a Pareto search (objectives: in its space)."""
    from ..search.status import study_status
    from ..search.study import load_study, sweep_stale_trials

    s, cfg = load_study(study, storage, heartbeat=True)
    sweep_stale_trials(s)
    for line in study_status(s, cfg).lines():
        typer.echo(line)


DASHBOARD_EXPOSES = (
    "the dashboard has no login: anyone who reaches it can read every study, trial, config and "
    "artifact, and change or delete them (DELETE /api/studies/N needs no credentials)"
)
PROXY_EXPOSES = (
    "the storage proxy has no authentication and no TLS: anyone who reaches it can read, change "
    "and delete every study in the database behind it, and its traffic crosses the network in clear"
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard resolves to who knows what


def _warn_if_exposed(host: str, port: int, exposes: str) -> None:
    if not _is_loopback(host):
        err.print(
            f"[yellow]warning:[/] listening on {lit(host)}:{port}, not only on this machine: {exposes}. "
            "Reach it through an SSH tunnel instead (see --help); binding 0.0.0.0 is safe only inside "
            "a container whose port is published on 127.0.0.1, as docker-compose.yml does"
        )


DASHBOARD_HELP = (
    "Serve optuna-dashboard for the storage, with the trials' artifacts.\n\n"
    "The dashboard has no login: whoever reaches its port can read every study, trial, config and "
    "artifact, and change or delete them (DELETE /api/studies/N needs no credentials). It listens "
    "on 127.0.0.1 only. From another machine, tunnel to it: `ssh -N -L 8080:127.0.0.1:8080 "
    "THIS_HOST`, then open http://127.0.0.1:8080/dashboard/; or put it behind a reverse proxy that "
    "terminates TLS and asks for a login. Never bind 0.0.0.0 or a public address directly."
)
PROXY_HELP = (
    "Run Optuna's gRPC storage proxy in front of the database (workers use grpc://HOST:PORT).\n\n"
    "The proxy has no authentication and no TLS: whoever reaches its port can read, change and "
    "delete every study in the database behind it (with the proxy's own database credentials), and "
    "what it sends is readable on the wire. It listens on 127.0.0.1 by default. For workers on "
    "other hosts, give each worker an SSH tunnel (`ssh -N -L 13000:127.0.0.1:13000 PROXY_HOST`, "
    "then --storage grpc://127.0.0.1:13000), or bind --host to a private interface only the workers "
    "can reach (a VPN such as WireGuard, or a firewalled cluster network), never to 0.0.0.0 or a "
    "public address."
)


@app.command(help=DASHBOARD_HELP)
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind. The default, 127.0.0.1, serves this machine only; any other "
            "address serves everyone who can reach it (see above)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    # The help (DASHBOARD_HELP) says what binding another interface gives away.
    from optuna_dashboard import run_server

    from ..search.artifacts import open_artifact_store
    from ..search.storage import mask_url, open_storage, resolve_url

    check_port(port)
    backend = open_storage(storage)
    _warn_if_exposed(host, port, DASHBOARD_EXPOSES)
    err.print(f"dashboard for {lit(mask_url(resolve_url(storage)))} at http://{lit(host)}:{port}/dashboard/")
    run_server(backend, host=host, port=port, artifact_store=open_artifact_store(artifacts, storage))


@app.command("storage-proxy", help=PROXY_HELP)
def storage_proxy(
    storage: StorageOpt = None,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind. The default, 127.0.0.1, serves this machine only; bind another "
            "address only on a private network the workers alone can reach (see above)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve gRPC on.")] = 13000,
) -> None:
    # The help (PROXY_HELP) says what binding another interface gives away.
    try:
        from optuna.storages import run_grpc_proxy_server
    except ImportError:
        from ..errors import StorageError

        raise StorageError("the storage proxy needs grpcio: `pip install grpcio protobuf`") from None
    from ..search.storage import mask_url, open_storage, resolve_url

    check_port(port)
    backend = open_storage(storage)
    _warn_if_exposed(host, port, PROXY_EXPOSES)
    err.print(f"storage proxy for {lit(mask_url(resolve_url(storage)))} on grpc://{lit(host)}:{port}")
    run_grpc_proxy_server(backend, host=host, port=port)
