"""Figures of bench/search_efficiency.py: best-so-far curves, the summary table, the PNG.

The best validation UAR "so far" after e epochs is the best value (the best epoch's validation
UAR) of the trials that had *completed* by then: pruned trials deliver no model, so they only
cost epochs. Medians are over repetitions; spreads are min-max.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

CANDIDATES = ("default", "plain", "warm")  # the arms the goal is stated for


def best_curve(run: dict, budget: int) -> list[float]:
    """Best complete-trial value after 0..budget epochs (NaN before the first completes)."""
    curve, best, trials, i = [], math.nan, run["trials"], 0
    for e in range(budget + 1):
        while i < len(trials) and trials[i]["cum_epochs"] <= e:
            t = trials[i]
            if t["state"] == "COMPLETE" and (math.isnan(best) or t["value"] > best):
                best = t["value"]
            i += 1
        curve.append(best)
    return curve


def final_best(run: dict) -> float:
    return max((t["value"] for t in run["trials"] if t["state"] == "COMPLETE"), default=math.nan)


def epochs_to_reach(run: dict, target: float) -> int | None:
    for t in run["trials"]:
        if t["state"] == "COMPLETE" and t["value"] >= target:
            return t["cum_epochs"]
    return None


def _median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else math.nan


def _median_inf(values: list[int | None]) -> float:
    """Median where "never reached" counts as infinitely many epochs."""
    return statistics.median([math.inf if v is None else v for v in values]) if values else math.nan


def reps_of(results: dict) -> list[str]:
    return sorted({k.split("/")[0] for k in results["runs"]})


def summarize_arms(results: dict, arms: list[str], reference: str, mark: int | None = None) -> dict:
    """``mark``: the epoch count of the goal and of "best by" (default: a third of the budget)."""
    reps = reps_of(results)
    mark = results["budget"] // 3 if mark is None else mark
    out = {"reference": reference, "budget": results["budget"], "mark": mark, "reps": reps, "arms": {}}
    out["has_reference"] = any(f"{r}/{reference}" in results["runs"] for r in reps)
    for arm in arms:
        runs = [results["runs"].get(f"{r}/{arm}") for r in reps]
        runs = [(r, run) for r, run in zip(reps, runs) if run is not None]
        if not runs:
            continue
        reach = []
        for rep, run in runs:
            ref = results["runs"].get(f"{rep}/{reference}")
            reach.append(epochs_to_reach(run, final_best(ref)) if ref else None)
        n_trials = [len(run["trials"]) for _, run in runs]
        n_pruned = [sum(t["state"] == "PRUNED" for t in run["trials"]) for _, run in runs]
        tests = [run["finalize"]["test_uar"] for _, run in runs if "finalize" in run]
        bests = [final_best(run) for _, run in runs]
        by_mark = [best_curve(run, mark)[mark] for _, run in runs]
        out["arms"][arm] = {
            "reps": len(runs),
            "trials": n_trials,
            "pruned_fraction": sum(n_pruned) / max(1, sum(n_trials)),
            "epochs": [run["epochs"] for _, run in runs],
            "final_best": bests,
            "final_best_median": _median(bests),
            "reach": reach,
            "reach_median": _median_inf(reach),
            "best_by_mark": by_mark,  # best complete-trial value within `mark` epochs
            "test_uar": tests,
            "test_uar_median": _median(tests),
            "search_seconds": [run["seconds"] for _, run in runs],
            "finalize_seconds": [run["finalize"]["seconds"] for _, run in runs if "finalize" in run],
        }
    return out


def paired_test_difference(results: dict, arm: str, other: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Test UAR of ``arm``'s ``finalize --top 3`` minus ``other``'s, mean over the repetitions
    that have both, with a paired percentile bootstrap over test images (every repetition reads
    the same test split, so one resample of images serves all of them)."""
    import numpy as np

    from fersearch.finalize.calibrate import _uar_batch

    pairs, missing = [], []
    for rep in reps_of(results):
        a, b = results["runs"].get(f"{rep}/{arm}"), results["runs"].get(f"{rep}/{other}")
        if a and b and a.get("finalize", {}).get("predictions") and b.get("finalize", {}).get("predictions"):
            files = [Path(a["finalize"]["predictions"]), Path(b["finalize"]["predictions"])]
            if not all(f.is_file() for f in files):  # a reference run from another machine's /tmp
                missing += [str(f) for f in files if not f.is_file()]
                continue
            pa, pb = np.load(files[0]), np.load(files[1])
            if not np.array_equal(pa["test_labels"], pb["test_labels"]):
                raise ValueError(f"{rep}: the two arms' test labels differ")
            pairs.append((pa["test_labels"], pa["test_probs"].argmax(1), pb["test_probs"].argmax(1)))
    if not pairs:
        return {"reps": 0, "missing_predictions": missing}
    labels = pairs[0][0]
    k = int(max(labels.max(), *(p[1].max() for p in pairs), *(p[2].max() for p in pairs))) + 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    diffs = np.zeros(n_boot)
    point = 0.0
    for y, pa, pb in pairs:
        diffs += _uar_batch(y[idx], pa[idx], k) - _uar_batch(y[idx], pb[idx], k)
        point += _uar_batch(y[None], pa[None], k)[0] - _uar_batch(y[None], pb[None], k)[0]
    diffs /= len(pairs)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"reps": len(pairs), "difference": point / len(pairs), "low": float(low), "high": float(high)}


def plot_curves(results: dict, arms: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    budget = results["budget"]
    x = np.arange(budget + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for arm in arms:
        curves = [best_curve(results["runs"][k], budget) for k in results["runs"] if k.endswith(f"/{arm}")]
        if not curves:
            continue
        c = np.array(curves, dtype=float)  # (reps, budget + 1)
        have = ~np.isnan(c).any(0)  # median only where every repetition has a complete trial
        med = np.where(have, np.median(np.where(np.isnan(c), 0, c), 0), np.nan)
        (line,) = ax.step(x, med, where="post", label=f"{arm} (median of {len(curves)})")
        ok = ~np.isnan(c).all(0)
        lo, hi = np.full(len(x), np.nan), np.full(len(x), np.nan)
        lo[ok], hi[ok] = np.nanmin(c[:, ok], 0), np.nanmax(c[:, ok], 0)
        ax.fill_between(x[ok], lo[ok], hi[ok], step="post", alpha=0.15, color=line.get_color())
    ax.axvline(budget / 3, color="grey", ls=":", lw=1, label="a third of the budget")
    ax.set_xlabel("epochs consumed (pruned trials count the epochs they ran)")
    ax.set_ylabel("best validation UAR of complete trials")
    ax.set_title("search efficiency: best so far vs compute (bands: min-max over repetitions)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v, digits=4):
    if v is None:
        return "never"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"


def _spread(values) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return f"{min(vals):.4f}-{max(vals):.4f}" if vals else "-"


def write_markdown(summary: dict, results: dict, png: Path) -> str:
    budget, ref = summary["budget"], summary["reference"]
    lines = [
        f"budget {budget} epochs per arm; {len(summary['reps'])} repetition(s); reference arm `{ref}`",
        "",
        f"| arm | trials | pruned | best val UAR, median (min-max) | epochs to reach `{ref}`'s final "
        f"best: median (per rep) | best val UAR by {summary['mark']} epochs (per rep) | test UAR of finalize "
        "--top 3, median (min-max) | search s / finalize s, all reps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary["arms"].items():
        reach = ", ".join(_fmt(r) for r in s["reach"])
        med = s["reach_median"]
        share = f" = {med / budget:.2f} of the budget" if math.isfinite(med) else ""
        lines.append(
            f"| {arm} | {statistics.median(s['trials']):g} | {s['pruned_fraction']:.0%} | "
            f"{_fmt(s['final_best_median'])} ({_spread(s['final_best'])}) | "
            f"{_fmt(med)}{share} ({reach}) | "
            f"{' / '.join(_fmt(v, 3) for v in s['best_by_mark'])} | "
            f"{_fmt(s['test_uar_median'])} ({_spread(s['test_uar'])}) | "
            f"{sum(s['search_seconds']):.0f} / {sum(s['finalize_seconds']):.0f} |"
        )
    for arm in CANDIDATES:
        lines += _goal_lines(summary, arm)
    lines += ["", f"curves: {png}"]
    if ref in summary["arms"]:
        corr = early_rank_correlation(results, ref)
        if corr:
            lines += [
                "",
                f"how well epoch e ranks the `{ref}` arm's full trials by their final value (Spearman): "
                + "; ".join(f"e={e}: UAR {a:.2f}, best so far {b:.2f}" for e, (a, b) in corr.items()),
            ]
    return "\n".join(lines) + "\n"


def _goal_lines(summary: dict, arm: str) -> list[str]:
    """The goal and the paired test of a candidate arm against the reference arm."""
    ref = summary["reference"]
    lines: list[str] = []
    stats = summary["arms"].get(arm)
    if stats and summary["has_reference"]:
        mark = summary["mark"]
        met = stats["reach_median"] <= mark
        within = sum(r is not None and r <= mark for r in stats["reach"])
        lines += [
            "",
            f"goal ({arm} reaches `{ref}`'s final best within {mark} epochs, a third of the "
            "reference's budget unless --mark-epochs says otherwise; median over repetitions): "
            f"{'met' if met else 'NOT met'} ("
            + (
                f"median {_fmt(stats['reach_median'])} epochs)"
                if met or math.isfinite(stats["reach_median"])
                else "not reached in the median)"
            ),
            f"repetitions in which {arm} reached it within {mark} epochs: {within} of {len(stats['reach'])}",
        ]
    paired = summary.get("paired_tests", {}).get(arm)
    if paired and paired.get("reps"):
        excludes = paired["low"] > 0 or paired["high"] < 0
        lines += [
            "",
            f"test UAR of finalize --top 3, {arm} minus {ref}, mean over {paired['reps']} paired "
            f"repetition(s): {paired['difference']:+.4f}, 95% paired bootstrap over test images "
            f"[{paired['low']:+.4f}, {paired['high']:+.4f}]"
            + (" (excludes 0)" if excludes else " (includes 0: no difference shown)"),
        ]
    elif paired and paired.get("missing_predictions"):
        lines += [
            "",
            f"no paired test of finalize --top 3: {len(paired['missing_predictions'])} prediction "
            f"file(s) are not on this machine (first: {paired['missing_predictions'][0]}); rerun "
            f"`{ref}` here for a paired figure",
        ]
    return lines


def early_rank_correlation(results: dict, arm: str) -> dict[int, tuple[float, float]]:
    """Per epoch e: Spearman correlation, over the arm's complete trials, between the trial's value
    (its best epoch) and (a) epoch e's UAR, (b) the best UAR of epochs 1..e, the two figures a
    pruner could be told at e."""
    curves = [
        t["uar_per_epoch"]
        for k, run in results["runs"].items()
        if k.endswith(f"/{arm}")
        for t in run["trials"]
        if t["state"] == "COMPLETE" and t["uar_per_epoch"]
    ]
    if len(curves) < 3:
        return {}
    final = [max(c) for c in curves]
    epochs = min(len(c) for c in curves)
    return {
        e: (
            _spearman([c[e - 1] for c in curves], final),
            _spearman([max(c[:e]) for c in curves], final),
        )
        for e in range(1, epochs + 1)
    }


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(xs):
        order = sorted(range(len(xs)), key=xs.__getitem__)
        r = [0.0] * len(xs)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan
