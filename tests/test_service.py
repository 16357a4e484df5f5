"""The service on real components: docker-compose.yml parsed by docker-compose, its services'
commands run as local processes against the local PostgreSQL, workers killed and interrupted,
database connections cut, and the dashboard opened in headless Chromium."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import yaml
from optuna.trial import TrialState

from fersearch.search.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI") == "true"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} is not installed (Debian package: {tool}); `make test` installs it"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def compose_config(tmp_path: Path, env: dict[str, str]) -> dict:
    """`docker-compose config` on the repository's compose file with an .env built from
    .env.example plus ``env``: the real parser validates and interpolates it."""
    _need("docker-compose")
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    values.update(env)
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    proc = subprocess.run(
        ["docker-compose", "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def local_process(service: dict, pg_url: str, tmp_path: Path, **popen) -> subprocess.Popen:
    """Start a compose service's command here: its environment, with the container's database
    host, volumes and ports mapped to this machine."""
    argv = service["command"]
    argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
    assert argv[0] == "fersearch"
    # bind mounts "host:/container[:mode]": a container path in the command becomes the host path
    mounts = {}
    for vol in service.get("volumes", []):
        parts = str(vol).split(":")
        if len(parts) >= 2 and parts[0].startswith("/"):
            mounts[parts[1]] = parts[0]
    argv = [mounts.get(a, a) for a in argv]
    env = {**os.environ, **{k: str(v) for k, v in service.get("environment", {}).items()}}
    env["FERSEARCH_STORAGE"] = pg_url  # the compose URL names host "postgres"
    env["FERSEARCH_ARTIFACTS"] = str(tmp_path / "artifacts")
    env["FERSEARCH_LOCK_DIR"] = str(tmp_path / "locks")
    env["HF_HUB_CACHE"] = str(tmp_path / "weights" / "hf")  # the `weights` volume
    env["TORCH_HOME"] = str(tmp_path / "weights" / "torch")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "fersearch.cli", *argv[1:]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def worker_command(study: str, storage: str, artifacts) -> list[str]:
    """`fersearch worker` as a separate process, the way a user starts one."""
    return [
        sys.executable,
        "-m",
        "fersearch.cli",
        "worker",
        "--study",
        study,
        "--storage",
        storage,
        "--artifacts",
        str(artifacts),
    ]


def worker_env(**extra: str) -> dict[str, str]:
    # one thread per worker process: several share the 2 cores in these tests
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_storage_proxy(storage: str, port: int, stdout=subprocess.PIPE) -> subprocess.Popen:
    """`fersearch storage-proxy` in front of ``storage`` on 127.0.0.1:``port``."""
    cmd = [sys.executable, "-m", "fersearch.cli", "storage-proxy", "--storage", storage, "--port", str(port)]
    return subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def compose(tmp_path, tiny_data, tiny_space):
    return compose_config(
        tmp_path,
        {
            "DATA_DIR": str(tiny_data),
            "SPACE": str(tiny_space),
            "STUDY": "compose",
            "N_TRIALS": "6",
            "POSTGRES_PASSWORD": "not-a-real-secret",
        },
    )


def test_compose_file_shape(compose):
    s = compose["services"]
    assert set(s) >= {"postgres", "dashboard", "create", "workers"}
    pg = s["postgres"]
    assert pg["image"] == "postgres:16"
    assert "healthcheck" in pg and "ports" not in pg  # not published on the host
    # the database lives in a named volume (docker-compose config writes it out in one of two forms)
    assert any(
        v in ("pgdata:/var/lib/postgresql/data:rw", "pgdata:/var/lib/postgresql/data")
        or (
            isinstance(v, dict)
            and v.get("source") == "pgdata"
            and v.get("target") == "/var/lib/postgresql/data"
        )
        for v in pg["volumes"]
    ), pg["volumes"]
    assert "pgdata" in compose["volumes"]
    assert all(str(p).startswith("127.0.0.1:") for p in s["dashboard"]["ports"])
    assert s["create"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the weights: pulled once into a named volume, before create checks them; read-only and
    # offline everywhere else
    weights = s["weights"]
    assert shlex.split(weights["command"])[:3] == ["fersearch", "weights", "pull"]
    assert weights["environment"]["HF_HUB_OFFLINE"] == "0" and weights["restart"] == "no"
    assert s["create"]["depends_on"]["weights"]["condition"] == "service_completed_successfully"
    assert "weights" in compose["volumes"]
    for name in ("weights", "create", "workers", "dashboard"):
        env = s[name]["environment"]
        assert (env["HF_HUB_CACHE"], env["TORCH_HOME"]) == ("/weights/hf", "/weights/torch"), name
        mounts = [v for v in s[name]["volumes"] if str(v).startswith("weights:/weights")]
        assert mounts == ["weights:/weights:" + ("rw" if name == "weights" else "ro")], (name, mounts)
    workers = s["workers"]
    assert workers["depends_on"]["create"]["condition"] == "service_completed_successfully"
    assert workers["restart"] == "on-failure"
    device = workers["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `create` builds the image from this repository's workers/Dockerfile, and the workers and
    # the dashboard run it (`docker-compose config` of Debian's docker-compose prints the image
    # only: the build is read from the file itself)
    assert {s[name]["image"] for name in ("create", "workers", "dashboard")} == {"fersearch-worker:latest"}
    build = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["create"]["build"]
    assert (REPO / build["context"]).resolve() == REPO.resolve()
    assert (REPO / build["context"] / build["dockerfile"]).resolve() == (
        REPO / "workers" / "Dockerfile"
    ).resolve()
    # the password reaches the storage URL from .env, never from the file itself
    assert "not-a-real-secret" in s["workers"]["environment"]["FERSEARCH_STORAGE"]
    assert "not-a-real-secret" not in (REPO / "docker-compose.yml").read_text()


def test_the_worker_image_runs_its_base_torch_which_satisfies_pyproject():
    """The image installs fersearch over the base image's torch, pinned to it: no second torch."""
    import tomllib

    from packaging.requirements import Requirement

    dockerfile = (REPO / "workers" / "Dockerfile").read_text()
    torch = re.search(r"^FROM pytorch/pytorch:(\d+\.\d+\.\d+)-", dockerfile, re.M).group(1)
    vision = re.search(r"torchvision (\d+\.\d+\.\d+)", dockerfile).group(1)  # the base's pair
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {r.name: r.specifier for r in map(Requirement, deps)}
    assert torch in wanted["torch"] and vision in wanted["torchvision"], (torch, vision, wanted)
    install = next(line for line in dockerfile.splitlines() if "pip install" in line and "-e ." in line)
    assert "-c /opt/base-torch.txt" in install, install  # the constraints file pins torch and torchvision


@pytest.mark.postgres
def test_compose_services_complete_a_study_and_dashboard_shows_it(compose, pg_url, tmp_path):
    s = compose["services"]
    # weights, then create: one-shot and idempotent (compose may run them again on every `up`)
    for _ in range(2):
        p = local_process(s["weights"], pg_url, tmp_path)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "nothing downloaded" in out + err  # the tests' space trains from scratch
        p = local_process(s["create"], pg_url, tmp_path)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err

    workers = [local_process(s["workers"], pg_url, tmp_path) for _ in range(3)]
    outs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err
        assert "Traceback" not in err

    study = optuna.load_study(study_name="compose", storage=open_storage(pg_url))
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all("artifact:confusion_matrix.png" in t.user_attrs for t in complete)

    # fersearch status reads the same study
    status = subprocess.run(
        [sys.executable, "-m", "fersearch.cli", "status", "--study", "compose", "--storage", pg_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "best validation UAR" in status.stdout and "0 running" in status.stdout

    # the dashboard service's command, on a free local port
    port = _free_port()
    dash = dict(s["dashboard"])
    dash["command"] = (
        dash["command"].replace("--host 0.0.0.0", "--host 127.0.0.1").replace("--port 8080", f"--port {port}")
    )
    server = local_process(dash, pg_url, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/api/studies", server)
        _browse_dashboard(base, study, complete[0], tmp_path)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {proc.communicate()[1]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def _browse_dashboard(base: str, study: optuna.Study, trial: optuna.trial.FrozenTrial, tmp_path: Path):
    _need("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/dashboard/")
        page.get_by_text("compose").first.wait_for(timeout=30000)
        sid = study._study_id
        page.goto(f"{base}/dashboard/studies/{sid}/trials")
        page.get_by_text(f"Trial {trial.number}", exact=False).first.wait_for(timeout=30000)
        page.get_by_text(f"Trial {trial.number}", exact=False).first.click()
        page.get_by_text("confusion_matrix.png").first.wait_for(timeout=30000)
        page.screenshot(path=str(tmp_path / "dashboard_trial.png"), full_page=True)
        text = page.inner_text("body")
        assert "per_class_recall.png" in text and "best.safetensors" in text
        assert "uar_per_epoch" in text  # the per-epoch UAR user attribute
        page.goto(f"{base}/dashboard/studies/{sid}")
        page.get_by_text("Intermediate Values", exact=False).first.wait_for(timeout=30000)
        browser.close()


@pytest.mark.postgres
def test_three_workers_run_the_budget_exactly_and_each_seed_recipe_once(
    pg_url, tmp_path, tiny_data, tiny_space
):
    from fersearch.search.presets import PRESETS

    # The tiny space's fixed keys win over the recipes' (backbone, image size, epochs, batch);
    # the oversampling of one recipe (8,000 images per class) is fixed small to keep trials short.
    space = tmp_path / "seeded.yaml"
    raw = yaml.safe_load(tiny_space.read_text())
    space.write_text(yaml.safe_dump({**raw, "fixed": {**raw["fixed"], "oversample_per_class": 40}}))
    budget = len(PRESETS) + 2  # the recipes, then sampled trials
    create = subprocess.run(
        [sys.executable, "-m", "fersearch.cli", "create", "--study", "seeded", "--data", str(tiny_data)]
        + ["--space", str(space), "--storage", pg_url, "--n-trials", str(budget), "--seed-recipes"],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert create.returncode == 0, create.stderr
    cmd = worker_command("seeded", pg_url, tmp_path / "shared")
    workers = [
        subprocess.Popen(cmd, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err
        assert "Traceback" not in err

    trials = optuna.load_study(study_name="seeded", storage=open_storage(pg_url)).get_trials()
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ran = [t for t in trials if not t.user_attrs.get("fersearch:surplus")]
    assert len(ran) == budget, [(t.number, t.state, t.user_attrs.get("fersearch:preset")) for t in trials]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran)
    # each recipe ran exactly once, with the parameters it was enqueued with
    seeded = [t for t in ran if t.user_attrs.get("fersearch:preset")]
    assert sorted(t.user_attrs["fersearch:preset"] for t in seeded) == sorted(PRESETS)
    for t in seeded:
        enqueued = t.system_attrs["fixed_params"]
        assert {k: t.params[k] for k in enqueued} == enqueued
    assert len([t for t in ran if "fixed_params" not in t.system_attrs]) == budget - len(PRESETS)
    # surplus trials (two workers reaching for the last place) never carry a recipe
    surplus = [t for t in trials if t.user_attrs.get("fersearch:surplus")]
    assert not [t for t in surplus if t.user_attrs.get("fersearch:preset")]
    assert all(t.state == TrialState.FAIL and not t.intermediate_values for t in surplus)
    # the workers' own reports add up to the budget: each trial reported once, by one worker
    reported = [re.findall(r"trial +(\d+) (?:complete|pruned)", err) for _, err in outs]
    assert sorted(int(n) for r in reported for n in r) == sorted(t.number for t in ran)


@pytest.mark.postgres
def test_a_dropped_connection_is_told_apart_from_a_refused_one(pg_url):
    from fersearch.search.storage import lost_connection

    engine = sa.create_engine(pg_url)
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as a:
                a.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(sa.exc.DBAPIError) as cut:
                conn.execute(sa.text("SELECT 1"))
        assert lost_connection(cut.value)  # open_storage and the worker retry this
        refused = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{_free_port()}/x")
        with pytest.raises(sa.exc.DBAPIError) as no_server:
            refused.connect()
        assert not lost_connection(no_server.value)  # this one fails at once, with its message
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_workers_survive_terminated_connections(pg_url, tmp_path, tiny_data, tiny_space):
    from fersearch.search.api import StudyOptions, create_or_join

    # Six epochs, no pruning: a cut made as a trial writes its first checkpoint lands mid-trial.
    space = tmp_path / "six.yaml"
    raw = yaml.safe_load(tiny_space.read_text())
    raw = {**raw, "fixed": {**raw["fixed"], "epochs": 6}, "pruner": {"name": "none"}}
    space.write_text(yaml.safe_dump(raw, sort_keys=False))
    create_or_join(StudyOptions("cut", tiny_data, str(space), pg_url, n_trials=4))
    env = worker_env()
    cmd = worker_command("cut", pg_url, tmp_path / "a")
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    dbname = pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    cut = sa.text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :d AND pid <> pg_backend_pid()"
    )
    killed = []
    deadline = time.monotonic() + 600
    # Cut every connection to the study database as a first-round trial, then a second-round
    # one, has finished its first epoch (its checkpoint appears; five epochs are left).
    checkpoints = tmp_path / "a" / "checkpoints" / "cut"

    def training(skip: set[str]) -> bool:
        return any(p.parent.name not in skip for p in checkpoints.glob("trial_*/last.json"))

    for skip in (set(), {"trial_0", "trial_1"}):
        while not training(skip):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
            time.sleep(0.05)
        with admin.connect() as c:
            killed.append(c.execute(cut, {"d": dbname}).scalar())
    admin.dispose()
    outs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err
    assert len(killed) == 2 and all(n >= 1 for n in killed)
    study = optuna.load_study(study_name="cut", storage=open_storage(pg_url))
    trials = study.get_trials()
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 4, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for _, err in outs:  # every connection cut was ridden out: no trial lost, no traceback
        assert "Traceback" not in err and "could not re-queue" not in err


@pytest.mark.postgres
def test_sigint_leaves_nothing_running_and_requeues(pg_url, tmp_path, tiny_data, tiny_space):
    from fersearch.search.api import StudyOptions, create_or_join

    # Ten epochs, no pruning: a trial interrupted after its first epoch has nine left to run.
    space = tmp_path / "long.yaml"
    raw = yaml.safe_load(tiny_space.read_text())
    raw = {**raw, "fixed": {**raw["fixed"], "epochs": 10}, "pruner": {"name": "none"}}
    space.write_text(yaml.safe_dump(raw, sort_keys=False))
    create_or_join(StudyOptions("int", tiny_data, str(space), pg_url, n_trials=2))
    env = worker_env()
    cmd = worker_command("int", pg_url, tmp_path / "a")
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = optuna.load_study(study_name="int", storage=open_storage(pg_url))
    checkpoint = tmp_path / "a" / "checkpoints" / "int" / "trial_0" / "last.json"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file():  # trial 0 is training: interrupt it now (a sleep let it finish)
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[1]
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err  # a clean stop: the trial is saved and re-queued
    assert "Traceback" not in err and "stopped by SIGINT" in err
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(failed) == 1 and len(waiting) == 1
    assert failed[0].user_attrs["fersearch:interrupted"] is True
    assert waiting[0].user_attrs["fersearch:retry_of"] == failed[0].number
    assert waiting[0].system_attrs["fixed_params"] == failed[0].params  # same parameters queued

    # a new worker picks the re-queued trial up and the study completes
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name="int", storage=open_storage(pg_url)).get_trials()
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.postgres
def test_workers_use_the_grpc_storage_proxy(pg_url, tmp_path, tiny_data, tiny_space):
    from fersearch.search.api import StudyOptions, create_or_join

    create_or_join(StudyOptions("proxied", tiny_data, str(tiny_space), pg_url, n_trials=2))
    port = _free_port()
    proxy = _start_storage_proxy(pg_url, port)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proxy.poll() is None, proxy.communicate()[1]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        env = worker_env()
        proc = subprocess.run(
            worker_command("proxied", f"grpc://127.0.0.1:{port}", tmp_path / "a"),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        proxy.terminate()
        proxy.communicate(timeout=30)
    trials = optuna.load_study(study_name="proxied", storage=open_storage(pg_url)).get_trials()
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2
