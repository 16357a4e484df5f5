"""What random search with a pruner could reach, replayed exactly on recorded curves.

Random search draws the same configurations whether or not trials are pruned (the draws do not
depend on results), and trial n trains with seed n in every arm; so a pruner's decisions can be
replayed on the `random` arm's full per-epoch curves of a search-efficiency run, without
training. Each trial reports its best validation UAR so far, as the worker does. Printed per
pruner: in how many repetitions the best complete trial within ``--mark`` epochs reaches the
`random` arm's final best (the search-efficiency goal), and per repetition that best / the
trials examined (``*``: all recorded trials used, so later ones are unknown).

    python bench/pruner_replay.py                     # the committed run's curves
    python bench/pruner_replay.py --results /tmp/exp/eff/results.json --mark 120
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "search_efficiency.json"


def replay(curves: list[list[float]], prune, epochs: int, mark: int) -> tuple[float, int]:
    """(best complete value within ``mark`` epochs, trials examined) for one repetition."""
    seen: list[list[float]] = []  # each examined trial's best-so-far curve, up to where it stopped
    used, best = 0, -1.0
    for curve in curves:
        bsf = [max(curve[: j + 1]) for j in range(epochs)]
        stop = prune(bsf, seen, epochs)
        if used + stop > mark:
            break
        used += stop
        seen.append(bsf[:stop])
        if stop == epochs:
            best = max(best, bsf[-1])
    return best, len(seen)


def median_pruner(warmup: int, startup: int = 3):
    def prune(bsf, seen, epochs):
        for step in range(warmup, epochs):
            others = [h[step] for h in seen if len(h) > step]
            if len(seen) >= startup and others and bsf[step] < statistics.median(others):
                return step + 1
        return epochs

    return prune


def halving_pruner(min_resource: int, eta: int):
    """Successive halving as Optuna's: at each rung a trial goes on only if it is among the top
    1/eta of the trials that reached the rung (the best one when fewer than eta did)."""

    def prune(bsf, seen, epochs):
        rung = min_resource
        while rung < epochs:
            values = sorted([h[rung - 1] for h in seen if len(h) >= rung] + [bsf[rung - 1]], reverse=True)
            if bsf[rung - 1] < values[max(len(values) // eta - 1, 0)]:
                return rung
            rung *= eta
        return epochs

    return prune


PRUNERS = {
    "none": lambda bsf, seen, epochs: epochs,
    "median warm-up 2": median_pruner(2),
    "median warm-up 5": median_pruner(5),
    "median warm-up 9": median_pruner(9),
    "halving 1/3": halving_pruner(1, 3),
    "halving 3/3": halving_pruner(3, 3),
    "halving 6/3": halving_pruner(6, 3),
    "halving 10/3": halving_pruner(10, 3),
    "halving 6/2": halving_pruner(6, 2),
    "halving 10/2": halving_pruner(10, 2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="a search_efficiency results.json")
    ap.add_argument("--mark", type=int, default=None, help="epochs (default: a third of the run's budget)")
    args = ap.parse_args()
    results = json.loads(args.results.read_text())
    mark = args.mark or results["budget"] // 3
    reps = sorted({k.split("/")[0] for k in results["runs"] if k.endswith("/random")})
    print(f"{args.results}: the `random` arm's curves, {len(reps)} repetition(s), goal within {mark} epochs")
    for name, prune in PRUNERS.items():
        hits, cells = 0, []
        for rep in reps:
            trials = results["runs"][f"{rep}/random"]["trials"]
            curves = [t["uar_per_epoch"] for t in trials]
            target = max(t["value"] for t in trials if t["value"] is not None)
            best, n = replay(curves, prune, len(curves[0]), mark)
            hit = best >= target - 1e-3  # the curves are stored to 5 digits
            hits += hit
            cells.append(f"{'Y' if hit else '.'}{best:.2f}/{n}{'*' if n == len(curves) else ''}")
        print(f"{name:18s} {hits}/{len(reps)}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
