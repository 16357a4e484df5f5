"""How often could *any* sampler reach random search's final best within a third of the budget?

    python bench/reach_bound.py bench/results/search_efficiency_r2.json

An offline bound for the goal of bench/search_efficiency.py ("the default arm reaches the random
arm's final best validation UAR within a third of the budget in at least 4 of 5 repetitions").
It replays the random arm's recorded learning curves (every complete 30-epoch trial of every
repetition: independent draws from the space) and simulates, many times over:

- the reference: random search, ``budget / epochs`` full trials, its best trial value;
- a candidate search: its first ``s`` trials are the reference's first ``s`` draws (TPE's random
  start-up, which the benchmark seeds alike), then every further trial is drawn from the best
  ``q`` share of the recorded configurations, an idealised sampler that already knows which
  configurations are good (q = 1: plain random sampling); trials are pruned by successive
  halving as Optuna's ``SuccessiveHalvingPruner`` does (a trial continues past a rung when its
  best UAR so far is in the top 1/reduction_factor of all values seen at that rung); a pruned
  trial costs the epochs it ran and delivers no model.

It prints the chance that the candidate's best complete trial within ``budget / 3`` epochs
reaches the reference's final best (one repetition), and the chance of that happening in at
least 4 of 5 repetitions. Nothing is trained or timed (so no load check): the figures come from
the curves in the results file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pruner_replay import halving_pruner, replay  # noqa: E402  (bench/pruner_replay.py)


def random_curves(results: dict, epochs: int) -> list[list[float]]:
    """Every complete full-length trial of the ``random`` arm: UAR per epoch."""
    return [
        t["uar_per_epoch"]
        for key, run in results["runs"].items()
        if key.endswith("/random")
        for t in run["trials"]
        if t["state"] == "COMPLETE" and len(t["uar_per_epoch"]) == epochs
    ]


def chance(pool, startup: int, share: float, args, rng: random.Random) -> float:
    ranked = sorted(pool, key=max, reverse=True)
    good = ranked[: max(1, round(share * len(ranked)))]
    n_ref = args.budget // args.epochs
    prune = halving_pruner(args.min_resource, args.reduction_factor)
    hits = 0
    for _ in range(args.draws):
        ref = [rng.choice(pool) for _ in range(n_ref)]
        target = max(max(c) for c in ref)
        # more trials than the budget can hold: the loop stops at the limit
        candidate = ref[:startup] + [rng.choice(good) for _ in range(args.budget // args.min_resource)]
        hits += replay(candidate, prune, args.epochs, args.budget // 3)[0] >= target
    return hits / args.draws


def at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="a bench/search_efficiency.py results file with a random arm")
    ap.add_argument("--budget", type=int, default=360)
    ap.add_argument("--epochs", type=int, default=30, help="epochs per trial")
    ap.add_argument("--min-resource", type=int, default=10)
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--startup", type=int, nargs="+", default=[0, 3, 5])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--draws", type=int, default=4000)
    args = ap.parse_args()
    if args.min_resource < 1 or args.reduction_factor < 2:
        ap.error("--min-resource must be at least 1 and --reduction-factor at least 2")

    pool = random_curves(json.loads(args.results.read_text()), args.epochs)
    if len(pool) < 12:
        raise SystemExit(
            f"{args.results}: {len(pool)} complete random-arm trials of {args.epochs} epochs; need 12 or more"
        )
    print(
        f"{len(pool)} recorded random-search trials; budget {args.budget} epochs, "
        f"a third {args.budget // 3}; "
        f"successive halving min_resource {args.min_resource}, reduction factor {args.reduction_factor}; "
        f"{args.draws} simulated repetitions per cell"
    )
    print("| random start-up trials | then drawn from the best ... | P(reach, one rep) | P(4+ of 5) |")
    print("|---|---|---|---|")
    for startup in args.startup:
        for share in args.shares:
            p = chance(pool, startup, share, args, random.Random(0))
            what = "all (random search)" if share >= 1 else f"{share:.0%}"
            print(f"| {startup} | {what} | {p:.2f} | {at_least(4, 5, p):.2f} |")


if __name__ == "__main__":
    main()
