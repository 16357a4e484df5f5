"""Ensemble selection, calibration, TTA choice, bootstrap and k-fold on constructed predictions."""

from __future__ import annotations

import numpy as np
import pytest

from fersearch.config import build_config
from fersearch.ensemble import tta
from fersearch.ensemble.probs import combine
from fersearch.errors import InvalidArgument
from fersearch.finalize import calibrate
from fersearch.finalize.bootstrap import bootstrap
from fersearch.finalize.cv import stratified_kfold
from fersearch.finalize.pipeline import choose_view_set
from fersearch.finalize.select import top_trials
from fersearch.finalize.weighting import choose_weights, crossfit_gain, greedy_select
from fersearch.metrics import summarize


def _members(n_per_class: int = 60, seed: int = 0):
    """Three members on 3 balanced classes with a known best mix:
    A is right on classes 0 and 1 but calls class 2 "0"; B is right on class 2 only, and only
    mildly wrong elsewhere; C is confidently "0" everywhere. A+B in equal parts is right on every
    image; adding C breaks it again (the plain mean of all three is right on class 0 only)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    a = np.where(y[:, None] == 2, [0.5, 0.1, 0.4], np.eye(3)[y] * 0.7 + 0.1)
    b = np.where(y[:, None] == 2, [0.05, 0.05, 0.9], np.eye(3)[y] * 0.1 + [0.25, 0.25, 0.4])
    c = np.tile([0.9, 0.05, 0.05], (len(y), 1))
    probs = np.stack([a, b, c]) + rng.uniform(0, 0.02, size=(3, len(y), 3))
    return probs / probs.sum(-1, keepdims=True), y


def test_greedy_selection_finds_the_known_best_mix():
    probs, y = _members()
    assert [summarize(y, p.argmax(1), 3)["uar"] for p in probs] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    sel = greedy_select(probs, y, 3)
    w = np.asarray(sel.weights)
    assert w[2] == 0, "the member that only hurts must get no weight"
    assert w[0] > 0 and w[1] > 0 and w.sum() == pytest.approx(1.0)
    assert sel.val_uar == pytest.approx(1.0)
    assert sel.plain_mean_val_uar == pytest.approx(1 / 3)
    assert sel.plain_mean_val_uar == pytest.approx(summarize(y, probs.mean(0).argmax(1), 3)["uar"])
    assert summarize(y, combine(probs, w).argmax(1), 3)["uar"] == pytest.approx(1.0)
    # Sorted initialisation ranks A, then B (ties C on UAR, lower NLL): the prefix A+B is perfect.
    assert sel.init_size == 2
    kept_steps = sel.steps[: sum(sel.counts) - sel.init_size]
    assert all(step["added"] != 2 for step in kept_steps)


def test_greedy_selection_keeps_the_single_best_when_nothing_helps():
    probs, y = _members()
    only_c_and_noise = probs[[0, 2]]  # A and C: adding C to A never helps
    sel = greedy_select(only_c_and_noise, y, 3)
    assert sel.weights == [1.0, 0.0]


def test_choose_weights_keeps_greedy_weights_that_generalise():
    probs, y = _members()
    sel, decision = choose_weights(probs, y, 3)
    assert decision["used"] == "greedy" and decision["crossfit"]["gain"] > 0.5
    assert sel.weights == greedy_select(probs, y, 3).weights


def _exchangeable_members(n: int, members: int = 5, seed: int = 0):
    """Members that are equally good, each with its own independent noise: any weighting that
    beats the plain mean on a small split does so by fitting that split's noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, size=n)
    logits = rng.normal(0, 1.0, size=(members, n, 7))
    logits[:, np.arange(n), y] += 1.0
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True), y


def test_choose_weights_falls_back_to_the_plain_mean_when_selection_overfits_a_small_split():
    val, y_val = _exchangeable_members(97, seed=1)
    sel, decision = choose_weights(val, y_val, 7)
    greedy = greedy_select(val, y_val, 7)
    # On 97 images greedy selection "wins" on the split it was fitted on ...
    assert greedy.val_uar > greedy.plain_mean_val_uar
    # ... but not on held-out halves, so the plain mean is shipped, and the report says why.
    assert decision["used"] == "plain_mean" and decision["crossfit"]["gain"] <= 0
    assert sel.weights == pytest.approx([0.2] * 5)
    assert "plain mean used" in decision["reason"]
    # On fresh data from the same members the greedy weights are no better than the mean.
    test, y_test = _exchangeable_members(5000, seed=2)
    greedy_test = summarize(y_test, combine(test, greedy.weights).argmax(1), 7)["uar"]
    plain_test = summarize(y_test, test.mean(0).argmax(1), 7)["uar"]
    assert greedy_test <= plain_test + 0.01


def test_crossfit_gain_scores_each_half_with_weights_from_the_other():
    probs, y = _members()
    cf = crossfit_gain(probs, y, 3)
    assert cf["plain_mean_uar"] == pytest.approx(1 / 3)
    assert cf["greedy_uar"] == pytest.approx(1.0)  # A+B is perfect on either half


def _imbalanced(seed: int, n_major: int = 400, n_minor: int = 40):
    """A model biased towards the majority class 0: minority images score their true class a
    little below class 0, so argmax misses most of them."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.zeros(n_major, int), np.ones(n_minor, int), np.full(n_minor, 2)])
    logits = rng.normal(0, 0.6, size=(len(y), 3))
    logits[np.arange(len(y)), y] += 1.5
    logits[:, 0] += 1.2  # the prior the model learned
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_calibration_raises_uar_on_an_imbalanced_fixture_and_generalises():
    probs, y = _imbalanced(0)
    before = summarize(y, probs.argmax(1), 3)["uar"]
    bias = calibrate.fit_bias(probs, y, 3)
    after = summarize(y, calibrate.apply_bias(probs, bias).argmax(1), 3)["uar"]
    assert after > before + 0.1, (before, after)
    assert bias[1] > bias[0] and bias[2] > bias[0], "rare classes must be pushed up"
    assert bias.mean() == pytest.approx(0.0, abs=1e-9)
    # The offsets transfer to a fresh draw from the same model (not just memorised noise) ...
    probs2, y2 = _imbalanced(1)
    fresh = calibrate.apply_bias(probs2, bias).argmax(1)
    assert summarize(y2, fresh, 3)["uar"] > summarize(y2, probs2.argmax(1), 3)["uar"] + 0.1
    # ... and the cross-fitted estimate sees the gain too.
    assert calibrate.crossfit_gain(probs, y, 3)["gain"] > 0.05


def test_calibration_leaves_a_balanced_perfect_model_alone():
    y = np.repeat(np.arange(4), 20)
    probs = np.full((80, 4), 0.1)
    probs[np.arange(80), y] = 0.7
    bias = calibrate.fit_bias(probs, y, 4)
    assert np.allclose(bias, 0)
    np.testing.assert_allclose(calibrate.apply_bias(probs, bias), probs, atol=1e-6)


def test_bootstrap_intervals_bracket_the_point_estimate_and_pair_differences():
    probs, y = _imbalanced(0)
    raw = probs.argmax(1)
    cal = calibrate.apply_bias(probs, calibrate.fit_bias(probs, y, 3)).argmax(1)
    out = bootstrap(y, {"raw": raw, "cal": cal}, 3, n_boot=300, pairs=[("cal", "raw")])
    for name, preds in (("raw", raw), ("cal", cal)):
        point = summarize(y, preds, 3)
        for metric in ("uar", "war", "macro_f1"):
            lo, hi = out["intervals"][name][metric]
            assert lo <= point[metric] <= hi and hi - lo < 0.3
    d = out["deltas"]["cal - raw"]["uar"]
    assert d["value"] == pytest.approx(summarize(y, cal, 3)["uar"] - summarize(y, raw, 3)["uar"])
    assert 0 < d["low"] <= d["value"] <= d["high"]


def test_tta_views_are_exact_on_uint8_arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 20, 20, 3), dtype=np.uint8)
    views = {v.name: v for v in tta.ALL_VIEWS}
    assert len(tta.ALL_VIEWS) == 16 and len(tta.view_set("flip_multi_crop16")) == 16
    np.testing.assert_array_equal(tta.apply_view(x, views["full"]), x)
    np.testing.assert_array_equal(tta.apply_view(x, views["full_flip"]), x[:, :, ::-1])
    tl = tta.apply_view(x, views["tl90"])
    assert tl.shape == x.shape and tl.dtype == np.uint8
    # a top-left crop keeps the top-left pixel's neighbourhood, the bottom-right one does not
    assert abs(int(tl[0, 0, 0, 0]) - int(x[0, 0, 0, 0])) < abs(int(tl[0, 0, 0, 0]) - 1000)
    np.testing.assert_array_equal(
        tta.apply_view(x, views["c90_flip"]), tta.apply_view(x, views["c90"])[:, :, ::-1]
    )
    with pytest.raises(InvalidArgument, match="uint8"):
        tta.apply_view(x.astype(np.float32), views["full"])
    with pytest.raises(InvalidArgument, match="flip_five_crop"):
        tta.view_set("sixteen")


def test_tta_is_kept_only_when_it_helps_on_validation():
    names = [v.name for v in tta.ALL_VIEWS]
    probs, y = _members()
    member_views = np.repeat(probs[[0, 2], None], len(names), axis=1)  # A and C; views identical
    choice = choose_view_set(member_views, names, y, 3)
    assert choice["chosen"] == "none"  # every set ties: no TTA, the cheapest
    assert set(choice["candidates"]) == set(tta.VIEW_SETS)
    # A flipped view that is always right: averaging it in fixes classes 1 and 2, so "flip" wins.
    helped = member_views.copy()
    helped[:, names.index("full_flip")] = np.eye(3)[y]
    choice = choose_view_set(helped, names, y, 3)
    assert choice["chosen"] == "flip"
    assert choice["candidates"]["flip"]["uar"] == pytest.approx(1.0)


def test_stratified_kfold_partitions_and_stratifies():
    y = np.array([0] * 50 + [1] * 10 + [2] * 5)
    folds = stratified_kfold(y, 5, seed=0)
    allidx = np.sort(np.concatenate(folds))
    np.testing.assert_array_equal(allidx, np.arange(len(y)))
    for f in folds:
        assert np.bincount(y[f], minlength=3).tolist() == [10, 2, 1]
    with pytest.raises(InvalidArgument, match="at least 2"):
        stratified_kfold(y, 1)


def test_top_trials_skip_configs_that_differ_only_in_seed_or_runtime():
    """Seed, device, loader workers and prefetch thread do not make another member; a config
    stored before a field existed compares as that field's default."""
    import optuna

    study = optuna.create_study(direction="maximize")
    base = build_config({"data": {"root": "."}, "lr": 1e-3}).to_json_dict()
    old = {k: v for k, v in base.items() if k != "prefetch"}  # written before prefetch existed
    configs = [
        base,
        {**base, "seed": 5, "num_workers": 2, "device": "cuda"},
        {**old, "prefetch": 0},
        old,
        {**base, "lr": 3e-3},
    ]
    for value, config in zip((0.9, 0.8, 0.7, 0.65, 0.6), configs):
        study.add_trial(
            optuna.trial.create_trial(value=value, params={}, distributions={}, user_attrs={"config": config})
        )
    assert [t.number for t in top_trials(study, 3)] == [0, 4]
