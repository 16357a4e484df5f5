r"""Several CPU workers on one host: a fixed budget of trials with 1, 2 and 4 worker processes.

    PYTHONPATH=. python bench/workers.py --out /tmp/workersbench

Each arm creates a fresh study on an embedded journal (the same space, data and seeded sampler),
starts N ``fersearch worker`` processes at once and times until the last one exits, and until
the budget's last trial completes (a worker waiting for the others' last trials exits within one
poll of the study after that), with the budget shared by all of them. Default: 2,000 ``easy``
synthetic faces at 32 px (the decode cache is built before any timing), ``test_resnet``, 10
epochs per trial, no pruning, 12 trials.

Arms: ``1``, ``2``, ``4`` workers taking their share of the cores (fersearch's default: the
cores divided by the workers on the host, counted again as they come and go), and ``2x2t``: two
workers with ``--threads 2`` each, torch's own default on this machine, i.e. what fersearch did
before workers shared the host; ``1x1t`` (not run by default): one worker on one thread, the
speed each of two sharing workers can reach at best. ``--rounds`` alternates the arms so each
sees the same machine; medians are reported, and each arm's speed-up is against the 1-worker arm
of the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from fersearch.search import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quiet  # noqa: E402
from processes import run_together  # noqa: E402

SPACE = {
    "description": "bench/workers.py: fixed-size trials",
    "fixed": {
        "image_size": 32,
        "epochs": 10,
        "warmup_epochs": 1,
        "backbone": "test_resnet",
        "batch_size": 64,
    },
    "params": {"lr": {"type": "float", "low": 1.0e-3, "high": 5.0e-3, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
}
ARMS = {"1": (1, None), "2": (2, None), "4": (4, None), "2x2t": (2, 2), "1x1t": (1, 1)}


def run_arm(name: str, data: Path, space: Path, trials: int, work: Path) -> dict:
    workers, threads = ARMS[name]
    journal = work / f"{name}_{time.monotonic_ns()}.journal"
    storage = f"journal:{journal}"
    fer = [sys.executable, "-m", "fersearch.cli"]
    env = {**os.environ, "FERSEARCH_LOCK_DIR": str(work / "locks"), "FERSEARCH_ARTIFACTS": str(work / "art")}
    create = [*fer, "create", "--study", "b", "--data", str(data), "--space", str(space)]
    subprocess.run([*create, "--storage", storage, "--n-trials", str(trials)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    cmd = [*fer, "worker", "--study", "b", "--storage", storage] + (
        ["--threads", str(threads)] if threads else []
    )
    started = datetime.now()
    wall = run_together(cmd, workers, env, f"arm {name}")
    import optuna

    from fersearch.search.storage import open_storage

    study = optuna.load_study(study_name="b", storage=open_storage(storage))
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    threads_used = sorted({t.user_attrs.get(attrs.THREADS) for t in done})
    # The budget is done when its last trial completes; the workers exit after that, a worker
    # that was waiting for the others' last trials within one poll of the study (at most 5 s).
    budget_done = (max(t.datetime_complete for t in done) - started).total_seconds()
    return {
        "arm": name,
        "seconds": round(wall, 2),
        "budget_done_s": round(budget_done, 2),
        "complete": len(done),
        "threads": threads_used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fersearch-workers-bench")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--arms", nargs="+", default=["1", "2", "4", "2x2t"], choices=list(ARMS))
    quiet.add_argument(parser)
    args = parser.parse_args()
    quiet.start(args.allow_load)

    from fersearch.cli import main as cli
    from fersearch.data.synthetic import generate

    data = args.out / "data"
    if not (data / "synthetic.json").is_file():
        generate(data, n=args.n, size=32, seed=0, difficulty="easy")
    cli(["data", "prepare", str(data), "--size", "32"])  # the cache, built once, before timing
    space = args.out / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    rows = []
    for r in range(args.rounds):
        order = args.arms if r % 2 == 0 else args.arms[::-1]
        for name in order:
            row = {**run_arm(name, data, space, args.trials, args.out), "round": r}
            rows.append(row)
            print(json.dumps(row), flush=True)
    med = {a: statistics.median(x["seconds"] for x in rows if x["arm"] == a) for a in args.arms}
    done = {a: statistics.median(x["budget_done_s"] for x in rows if x["arm"] == a) for a in args.arms}
    print(
        f"\n{args.trials} trials x {SPACE['fixed']['epochs']} epochs, {os.cpu_count()} CPUs, "
        f"medians of {args.rounds} round(s)"
    )
    print(
        "| arm | last worker exits (s) | speed-up vs 1 worker | last trial completes (s) | speed-up "
        "| threads per worker |"
    )
    print("|---|---|---|---|---|---|")
    for a in args.arms:
        threads = sorted({t for x in rows if x["arm"] == a for t in x["threads"]})
        speed = f"{med['1'] / med[a]:.2f}x" if "1" in med else "n/a"
        speed_done = f"{done['1'] / done[a]:.2f}x" if "1" in done else "n/a"
        print(f"| {a} | {med[a]:.1f} | {speed} | {done[a]:.1f} | {speed_done} | {threads} |")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    quiet.end()


if __name__ == "__main__":
    main()
