"""Coordination overhead on PostgreSQL: fersearch's worker loop vs plain Optuna `optimize`.

N worker processes share one study whose objective does no work: it reports 20 steps (with
should_prune) and returns. Each arm gets a fresh database. Per arm: trials/s (the budget's trials
over the time from the workers' start to the end of its last trial), p50/p99 latency
of ask (trial start), report + should_prune, and tell (trial end), errors, and the peak number
of connections the study database saw.

    python bench/coordination.py --workers 1 4 16 32 --trials-per-worker 10

The fersearch arm runs `fersearch worker`'s own loop (fersearch.search.loop.TrialLoop): the same
storage settings, heartbeat, budget check before each trial and surplus check inside it, and the
wait at the end while other workers' trials run, with the training replaced by the no-op. The
heartbeat interval is `FERSEARCH_HEARTBEAT_INTERVAL` (20 s unless set); a worker that finds the
budget used up looks again every min(interval, 5 s) while others' trials run. `trials` counts the trials
that ran; `surplus` the ones a worker was handed after the budget filled up and ended unrun.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy as sa
from rich.console import Console

# Imported here, before the worker processes fork, as Optuna is: the figures are the steady
# state of a worker that runs for hours, not a module import inside the timed window.
from fersearch.progress import tasks
from fersearch.search import attrs
from fersearch.search.budget import TrialBudget
from fersearch.search.liveness import StoreHealth, timing
from fersearch.search.loop import TrialLoop
from fersearch.search.storage import open_storage
from fersearch.train import GracefulStop

ADMIN = os.environ.get("FERSEARCH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
STEPS = 20


def _timed_objective(timings: dict):
    def objective(trial: optuna.Trial) -> float:
        timings["start"].append(time.perf_counter() - timings.pop("_asked", time.perf_counter()))
        for step in range(STEPS):
            t0 = time.perf_counter()
            trial.report(step / STEPS, step)
            trial.should_prune()
            timings["report"].append(time.perf_counter() - t0)
        timings["_told"] = time.perf_counter()
        return 0.5

    return objective


def _plain_worker(url: str, study: str, n: int, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    timings = {"start": [], "report": [], "end": []}
    errors = 0
    s = optuna.load_study(study_name=study, storage=url)

    def cb(study_, trial) -> None:
        timings["end"].append(time.perf_counter() - timings.pop("_told", time.perf_counter()))
        timings["_asked"] = time.perf_counter()

    timings["_asked"] = time.perf_counter()
    try:
        s.optimize(_timed_objective(timings), n_trials=n, callbacks=[cb])
    except Exception:
        errors += 1
    out.put({"timings": {k: v for k, v in timings.items() if not k.startswith("_")}, "errors": errors})


class _TimedLoop(TrialLoop):
    """`fersearch worker`'s loop, timed around each trial: ``start`` runs from its entry to the
    objective (ask, heartbeat, budget check), ``end`` from the objective's return to its exit
    (tell)."""

    def __init__(self, timings: dict, *args):
        super().__init__(*args)
        self.timings = timings

    def one_trial(self):
        self.timings["_asked"] = time.perf_counter()
        finished = super().one_trial()
        if "_told" in self.timings:  # a surplus trial never ran the objective
            self.timings["end"].append(time.perf_counter() - self.timings.pop("_told"))
        return finished


class _Work:
    beat = None

    def __init__(self, timings: dict):
        self.work = _timed_objective(timings)

    def __call__(self, trial: optuna.Trial) -> float:
        return self.work(trial)


def _fersearch_worker(url: str, study: str, n_total: int, out: mp.Queue) -> None:
    """`fersearch worker`'s loop (fersearch.search.loop.TrialLoop) with a no-op trial."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    timings = {"start": [], "report": [], "end": []}
    errors = 0
    storage = open_storage(url, heartbeat=True)  # pre-ping, small pool, heartbeat thread
    s = optuna.load_study(study_name=study, storage=storage)
    budget = TrialBudget(s, n_total)
    with tasks(Console(file=io.StringIO())) as progress, GracefulStop() as stop:
        loop = _TimedLoop(timings, s, budget, _Work(timings), progress, stop, StoreHealth(), timing())
        try:
            loop.run(deadline=None)
        except Exception:
            errors += 1
    out.put({"timings": {k: v for k, v in timings.items() if not k.startswith("_")}, "errors": errors})


def _peak_connections(url: str, dbname: str, stop: threading.Event, result: list) -> None:
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    peak = 0
    with eng.connect() as c:
        while not stop.is_set():
            n = c.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}
            ).scalar()
            peak = max(peak, int(n))
            time.sleep(0.05)
    eng.dispose()
    result.append(peak)


def run_arm(arm: str, workers: int, per_worker: int) -> dict:
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    db = f"fersearch_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{db}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{db}"
    try:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        optuna.create_study(study_name="bench", storage=url)
        q: mp.Queue = mp.Queue()
        total = workers * per_worker
        target = _plain_worker if arm == "optuna" else _fersearch_worker
        args = [(url, "bench", per_worker if arm == "optuna" else total, q) for _ in range(workers)]
        stop, peak = threading.Event(), []
        watcher = threading.Thread(target=_peak_connections, args=(ADMIN, db, stop, peak))
        watcher.start()
        t0, started = time.perf_counter(), datetime.now()
        procs = [mp.Process(target=target, args=a) for a in args]
        for p in procs:
            p.start()
        results = [q.get(timeout=1800) for _ in procs]
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        trials = optuna.load_study(study_name="bench", storage=url).get_trials()
        surplus = sum(bool(t.user_attrs.get(attrs.SURPLUS)) for t in trials)
        done = len(trials) - surplus
        left_running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
        # The budget is done when its last trial ends; after that a fersearch worker that was
        # waiting for the others' last trials exits within one look at the study (5 s on a
        # database), which a real study spends once, not per trial.
        ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        budget_s = (max(ended) - started).total_seconds()
    finally:
        with admin.connect() as c:
            c.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": db},
            )
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}"'))
        admin.dispose()

    def pct(key: str, p: float) -> float:
        xs = sorted(x for r in results for x in r["timings"][key])
        return 1000 * xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    return {
        "arm": arm,
        "workers": workers,
        "trials": done,  # trials that ran (the budget); surplus ones ended unrun are overhead
        "surplus": surplus,
        "running_left": left_running,
        "wall_s": round(wall, 2),
        "budget_s": round(budget_s, 2),
        "trials_per_s": round(done / budget_s, 2),
        "start_ms": (round(pct("start", 0.5), 1), round(pct("start", 0.99), 1)),
        "report_ms": (round(pct("report", 0.5), 1), round(pct("report", 0.99), 1)),
        "end_ms": (round(pct("end", 0.5), 1), round(pct("end", 0.99), 1)),
        "errors": sum(r["errors"] for r in results),
        "peak_connections": peak[0] if peak else None,
        "median_report_ms": round(
            1000 * statistics.median([x for r in results for x in r["timings"]["report"]] or [float("nan")]),
            2,
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--trials-per-worker", type=int, default=10)
    ap.add_argument(
        "--repeats", type=int, default=1, help="run each pair of arms this many times (noisy machines)"
    )
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    print(
        "arm        workers trials surplus trials/s  start p50/p99 ms  report p50/p99 ms  "
        "end p50/p99 ms  errors  peak conns"
    )
    for n in args.workers:
        ratios = []
        for _ in range(args.repeats):
            for arm in ("optuna", "fersearch"):  # side by side, same machine, same moment
                r = run_arm(arm, n, args.trials_per_worker)
                rows.append(r)
                print(
                    f"{arm:<10} {n:>7} {r['trials']:>6} {r['surplus']:>7} {r['trials_per_s']:>9} "
                    f"{r['start_ms'][0]:>7}/{r['start_ms'][1]:<8} "
                    f"{r['report_ms'][0]:>8}/{r['report_ms'][1]:<8} "
                    f"{r['end_ms'][0]:>7}/{r['end_ms'][1]:<7} {r['errors']:>6} {r['peak_connections']:>10}",
                    flush=True,
                )
            a, b = rows[-2], rows[-1]
            ratios.append(a["trials_per_s"] / max(b["trials_per_s"], 1e-9))
        print(
            f"  overhead at {n} workers (optuna trials/s / fersearch trials/s): "
            + ", ".join(f"{x:.2f}x" for x in ratios)
            + (f"; median {statistics.median(ratios):.2f}x" if len(ratios) > 1 else ""),
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
