"""Class weights and seeded samplers (fersearch/data/sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fersearch.data.sampling import (
    class_prior,
    epoch_order,
    inverse_frequency_weights,
)

LABELS = np.array([0] * 80 + [1] * 15 + [2] * 5)


def test_inverse_frequency_weights_are_clipped_at_the_cap():
    w = inverse_frequency_weights(LABELS, 3, cap=None)
    np.testing.assert_allclose(w, [100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5)], rtol=1e-6)
    np.testing.assert_allclose(
        inverse_frequency_weights(LABELS, 3, cap=1.5), [100 / 240, 1.5, 1.5], rtol=1e-6
    )
    np.testing.assert_allclose(inverse_frequency_weights(LABELS, 4, cap=3.0)[3], 3.0)  # absent class
    np.testing.assert_allclose(class_prior(LABELS, 3), [0.8, 0.15, 0.05])


def test_weighted_sampler_draws_classes_equally_and_is_seeded():
    order = epoch_order("weighted", LABELS, 3, seed=1, epoch=0)
    assert len(order) == len(LABELS)
    big = epoch_order("weighted", np.repeat(LABELS, 50), 3, seed=1, epoch=0)
    share = np.bincount(np.repeat(LABELS, 50)[big.numpy()], minlength=3) / len(big)
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.02)
    assert np.array_equal(order, epoch_order("weighted", LABELS, 3, seed=1, epoch=0))
    assert not np.array_equal(order, epoch_order("weighted", LABELS, 3, seed=1, epoch=1))


@pytest.mark.parametrize("per_class", [40, 100])
def test_oversampling_gives_exactly_n_per_class(per_class):
    order = epoch_order("oversample", LABELS, 3, seed=0, epoch=2, per_class=per_class).numpy()
    assert np.array_equal(np.bincount(LABELS[order], minlength=3), [per_class] * 3)
    # a small class is copied whole before any random extra: class 2's 5 images (rows 95-99)
    # 20 times each; class 1's 15 images 6 or 7 times (6 copies + 10 random extra)
    if per_class == 100:
        assert set(np.bincount(order[LABELS[order] == 2])[95:]) == {20}
        assert set(np.bincount(order[LABELS[order] == 1])[80:95]) == {6, 7}
    else:  # the big class is subsampled without replacement
        assert len(set(order[LABELS[order] == 0])) == 40


def test_random_order_is_a_permutation():
    order = epoch_order("random", LABELS, 3, seed=0, epoch=0).numpy()
    assert sorted(order) == list(range(len(LABELS)))
    with pytest.raises(ValueError, match="unknown sampler"):
        epoch_order("nope", LABELS, 3, 0, 0)
