"""bench/efficiency_report.py: the figures BENCHMARKS.md quotes are computed, not typed in."""

import importlib.util
from pathlib import Path

import pytest

# Loaded from its file: putting bench/ on sys.path would let its script names shadow other modules.
_path = Path(__file__).resolve().parents[1] / "bench" / "efficiency_report.py"
_spec = importlib.util.spec_from_file_location("efficiency_report", _path)
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)
_spearman, early_rank_correlation, epochs_to_reach = (
    report._spearman,
    report.early_rank_correlation,
    report.epochs_to_reach,
)


def _trial(curve, state="COMPLETE", cum=6):
    return {"state": state, "uar_per_epoch": curve, "value": max(curve), "cum_epochs": cum}


def test_spearman_orders():
    assert _spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert _spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)


def test_early_rank_correlation_tells_epoch_value_from_best_so_far():
    # Final values rank a < b < c. At epoch 2 the epoch's own UAR ranks them c < b < a (a dip in
    # the better trials); the best so far keeps their epoch-1 peaks and ranks them a < b < c.
    curves = [[0.10, 0.22, 0.31], [0.25, 0.20, 0.40], [0.30, 0.15, 0.50]]
    pruned = _trial([0.9, 0.9], state="PRUNED")  # only complete trials count
    results = {"runs": {"rep0/random": {"trials": [_trial(c) for c in curves] + [pruned]}}}
    corr = early_rank_correlation(results, "random")
    assert sorted(corr) == [1, 2, 3]
    assert corr[2][0] == pytest.approx(-1.0)
    assert corr[2][1] == pytest.approx(1.0)
    assert corr[3][1] == pytest.approx(1.0)


def test_epochs_to_reach_counts_complete_trials_only():
    run = {"trials": [_trial([0.5], state="PRUNED", cum=2), _trial([0.3], cum=8), _trial([0.6], cum=14)]}
    assert epochs_to_reach(run, 0.55) == 14
    assert epochs_to_reach(run, 0.7) is None


def test_summary_best_by_mark_and_goal_against_the_reference():
    default = {"trials": [_trial([0.2], cum=6), _trial([0.4], cum=12), _trial([0.5], cum=30)], "epochs": 30}
    random = {"trials": [_trial([0.3], cum=6), _trial([0.45], cum=30)], "epochs": 30}
    for run in (default, random):
        run["seconds"] = 1.0
    results = {"budget": 30, "runs": {"rep0/default": default, "rep0/random": random}}
    s = report.summarize_arms(results, ["default", "random"], "random", mark=12)
    assert s["mark"] == 12 and s["has_reference"]
    assert s["arms"]["default"]["best_by_mark"] == [0.4]
    assert s["arms"]["random"]["best_by_mark"] == [0.3]
    assert s["arms"]["default"]["reach"] == [30]  # 0.45 is first passed by the 0.5 trial
    text = report.write_markdown(s, results, Path("curves.png"))
    assert "NOT met" in text and "within 12 epochs" in text
    # without the reference arm no goal is claimed either way
    alone = report.summarize_arms({**results, "runs": {"rep0/default": default}}, ["default"], "random")
    assert not alone["has_reference"] and alone["mark"] == 10
    assert "goal" not in report.write_markdown(alone, results, Path("curves.png"))


def _saved_predictions(path, labels, preds, k=3):
    import numpy as np

    probs = np.eye(k)[preds]
    np.savez(path, test_labels=labels, test_probs=probs)
    return str(path)


def test_paired_test_difference_is_the_mean_over_reps_with_an_interval(tmp_path):
    import numpy as np

    y = np.repeat(np.arange(3), 50)
    right = y.copy()
    half = y.copy()
    half[::2] = (y[::2] + 1) % 3  # wrong on every other image: UAR 0.5
    runs = {}
    for rep in ("rep0", "rep1"):
        runs[f"{rep}/default"] = {
            "finalize": {"predictions": _saved_predictions(tmp_path / f"{rep}d.npz", y, right)}
        }
        runs[f"{rep}/random"] = {
            "finalize": {"predictions": _saved_predictions(tmp_path / f"{rep}r.npz", y, half)}
        }
    paired = report.paired_test_difference({"runs": runs}, "default", "random", n_boot=500)
    assert paired["reps"] == 2
    assert paired["difference"] == pytest.approx(0.5, abs=0.02)
    assert 0 < paired["low"] <= paired["difference"] <= paired["high"]
    # the same predictions in both arms: no difference, and an interval around 0
    same = {k: runs[k.replace("random", "default")] for k in runs}
    tie = report.paired_test_difference({"runs": same}, "default", "random", n_boot=200)
    assert tie["difference"] == 0 and tie["low"] == 0 == tie["high"]


def test_a_reference_whose_predictions_are_gone_is_skipped_and_said(tmp_path):
    """A reference run from another machine keeps its prediction paths; the paired test skips
    those repetitions and the report says why instead of failing."""
    import numpy as np

    y = np.repeat(np.arange(3), 10)
    runs = {
        "rep0/plain": {"finalize": {"predictions": _saved_predictions(tmp_path / "p.npz", y, y)}},
        "rep0/random": {"finalize": {"predictions": str(tmp_path / "elsewhere" / "r.npz")}},
    }
    paired = report.paired_test_difference({"runs": runs}, "plain", "random", n_boot=50)
    assert paired == {"reps": 0, "missing_predictions": [str(tmp_path / "elsewhere" / "r.npz")]}
    summary = {"reference": "random", "arms": {}, "has_reference": False, "paired_tests": {"plain": paired}}
    lines = report._goal_lines(summary, "plain")
    assert any("not on this machine" in line and "rerun `random`" in line for line in lines)
