r"""A latency budget in the search: what skipping infeasible trials saves, and what it finds.

    PYTHONPATH=. python bench/deploy.py --out /tmp/deploybench

Two arms on the same data, space, seeded random sampler and trial budget, run by fersearch's own
worker (``run_worker``) on an embedded journal:

  budget     the space's ``deploy: {max_latency_ms: B, threads: 1}``: a trial whose model is over
             B ms per image ends PRUNED before any epoch
  none       the same space with a budget no model exceeds, so every trial trains and its cost is
             still measured (which trials *would* have been infeasible is known exactly)

Random sampling draws the same configurations in both arms (the same seed, trial by trial), so
the difference is the budget alone. Printed per arm: trials, infeasible trials, epochs trained,
the best validation UAR among *feasible* trials by epochs spent, wall time; then ``finalize
--top 3 --max-latency-ms B`` of each arm: test UAR and the exported ensemble's measured latency.

Default: 2,000 ``easy`` synthetic faces at 32 px, backbones test_resnet, test_efficientnet and
resnet18 (the last far over a few ms per image on one thread), 8 epochs per trial, 12 trials.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quiet  # noqa: E402

from fersearch.search import attrs  # noqa: E402

SPACE = {
    "description": "bench/deploy.py",
    "fixed": {"image_size": 32, "epochs": 8, "warmup_epochs": 1, "batch_size": 64},
    "params": {
        "backbone": {"type": "categorical", "choices": ["test_resnet", "test_efficientnet", "resnet18"]},
        "lr": {"type": "float", "low": 1.0e-3, "high": 5.0e-3, "log": True},
    },
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
}


def run_arm(name: str, budget_ms: float, data: Path, trials: int, work: Path) -> dict:
    from fersearch.finalize import finalize
    from fersearch.finalize.budget import Budget
    from fersearch.search.api import StudyOptions, create_or_join
    from fersearch.search.storage import open_storage
    from fersearch.search.worker import run_worker

    space = work / f"{name}.yaml"
    limit = budget_ms if name == "budget" else 1e9
    space.write_text(yaml.safe_dump({**SPACE, "deploy": {"max_latency_ms": limit, "threads": 1}}))
    storage = f"journal:{work / f'{name}.journal'}"
    create_or_join(StudyOptions(name, data, str(space), storage, n_trials=trials))
    t0 = time.perf_counter()
    run_worker(name, storage, console=Console(file=io.StringIO()), artifacts_dir=work / f"art-{name}")
    wall = time.perf_counter() - t0
    done = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    spent, best, curve = 0, None, []
    for t in sorted(done, key=lambda t: t.number):
        epochs = len(t.user_attrs.get(attrs.UAR_PER_EPOCH, []))
        spent += epochs
        feasible = t.user_attrs[attrs.DEPLOY_COST]["latency_ms"] <= budget_ms
        if feasible and t.state.name == "COMPLETE":
            best = t.value if best is None else max(best, t.value)
        curve.append({"trial": t.number, "epochs_spent": spent, "best_feasible_val_uar": best})
    t1 = time.perf_counter()
    paths = finalize(name, 3, work / f"final-{name}", storage, console=Console(file=io.StringIO()),
                     onnx=False, budget=Budget(max_latency_ms=budget_ms))  # fmt: skip
    report = json.loads(paths["json"].read_text())
    b = report["deployment"]["budget"]
    return {
        "arm": name,
        "trials": len(done),
        "infeasible": sum(attrs.INFEASIBLE in t.user_attrs for t in done),
        "would_be_infeasible": sum(t.user_attrs[attrs.DEPLOY_COST]["latency_ms"] > budget_ms for t in done),
        "epochs_trained": spent,
        "search_s": round(wall, 1),
        "best_feasible_val_uar": best,
        "curve": curve,
        "finalize_s": round(time.perf_counter() - t1, 1),
        "test_uar": report["test"]["uar"],
        "ensemble_latency_ms": b["measured_latency_ms_per_image_median"],
        "ensemble_within_budget": b["within"],
        "latency_by_backbone": _latency_by_backbone(done),
    }


def _latency_by_backbone(trials) -> dict:
    out: dict[str, list[float]] = {}
    for t in trials:
        out.setdefault(t.params["backbone"], []).append(
            round(t.user_attrs[attrs.DEPLOY_COST]["latency_ms"], 2)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/fersearch-deploy-bench"))
    ap.add_argument("--budget-ms", type=float, default=3.0, help="per image, one thread, batch 1")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    from fersearch.cli import main as cli
    from fersearch.data.synthetic import generate

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not (data / "synthetic.json").is_file():
        generate(data, n=args.n, size=32, seed=0, difficulty="easy")
    cli(["data", "prepare", str(data), "--size", "32"])  # the cache, before any timing
    rows = [run_arm(name, args.budget_ms, data, args.trials, args.out) for name in ("none", "budget")]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\nbudget {args.budget_ms:g} ms per image (1 thread, batch 1); {args.trials} trials per arm")
    print("| arm | trials | pruned as infeasible | epochs trained | search s | best feasible val UAR "
          "| finalize test UAR | ensemble ms/image (within) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['trials']} | {r['infeasible']} (would be: {r['would_be_infeasible']}) | "
            f"{r['epochs_trained']} | {r['search_s']} | {r['best_feasible_val_uar']} | {r['test_uar']:.4f} | "
            f"{r['ensemble_latency_ms']:.2f} ({r['ensemble_within_budget']}) |"
        )
    for r in rows:
        print(f"{r['arm']}: latency per trial by backbone (ms): {r['latency_by_backbone']}")
        points = ", ".join(f"{c['epochs_spent']}:{c['best_feasible_val_uar']}" for c in r["curve"])
        print(f"{r['arm']}: best feasible val UAR by epochs spent: {points}")


if __name__ == "__main__":
    quiet.guard(main)
