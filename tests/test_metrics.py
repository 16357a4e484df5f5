import numpy as np
import pytest

from fersearch.metrics import confusion_matrix, macro_f1, per_class, summarize, uar, war


def test_confusion_matrix_counts_by_hand():
    targets = [0, 0, 0, 1, 1, 2]
    preds = [0, 1, 0, 1, 2, 2]
    cm = confusion_matrix(targets, preds, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_uar_war_f1_hand_computed():
    # class 0: 3 samples, 2 right -> recall 2/3; class 1: 2 samples, 1 right -> 1/2; class 2: 1/1
    targets = [0, 0, 0, 1, 1, 2]
    preds = [0, 1, 0, 1, 2, 2]
    assert uar(targets, preds, 3) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert war(targets, preds, 3) == pytest.approx(4 / 6)
    # precision: c0 2/2, c1 1/2, c2 1/2; F1 = 2PR/(P+R)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1 / 1.5]
    assert macro_f1(targets, preds, 3) == pytest.approx(np.mean(f1))
    pc = per_class(confusion_matrix(targets, preds, 3))
    assert pc["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert pc["support"].tolist() == [3, 2, 1]


def test_uar_differs_from_war_on_imbalance():
    # Always predicting the majority class: WAR 0.9, UAR 0.5.
    targets = [0] * 9 + [1]
    preds = [0] * 10
    m = summarize(targets, preds, 2)
    assert m["war"] == pytest.approx(0.9)
    assert m["uar"] == pytest.approx(0.5)
    # class 1 was never predicted: precision undefined (NaN), F1 defined as 0.
    assert np.isnan(m["per_class"]["precision"][1])
    assert m["per_class"]["f1"][1] == 0.0


def test_absent_class_is_left_out_of_uar():
    targets = [0, 0, 1, 1]
    preds = [0, 0, 1, 0]
    m = summarize(targets, preds, 3)  # class 2 has no samples and no predictions
    assert m["uar"] == pytest.approx((1.0 + 0.5) / 2)
    assert np.isnan(m["per_class"]["recall"][2])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix([0, 1], [0], 2)
