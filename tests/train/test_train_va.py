"""The valence/arousal head (issue #19 item 5): its loss, its per-epoch CCC/RMSE, and its rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fersearch.errors import ModelError
from fersearch.metrics import ccc, va_scores
from fersearch.models import create_model
from fersearch.train import fit
from fersearch.train.losses import va_ccc_loss

from .conftest import K, TinyNet, make_split, tiny_config

# Per class (valence, arousal): the images' colour is class-dependent, so VA is learnable.
CLASS_VA = np.array([[0.8, 0.3], [-0.6, 0.7], [-0.4, -0.5], [0.2, -0.8]], np.float32)


class TinyVANet(TinyNet):
    """TinyNet with a tanh (valence, arousal) head on its features, like FERModel's VAHead."""

    def __init__(self, num_classes: int = K):
        super().__init__(num_classes)
        self.va_head = nn.Linear(8, 2)

    def forward(self, x):
        out = super().forward(x)
        out["va"] = torch.tanh(self.va_head(out["features"]))
        return out


def va_split(counts, seed: int, unlabelled: float = 0.0):
    """A tiny split whose VA follows the class (plus a little noise); ``unlabelled`` of the rows NaN."""
    split = make_split(counts, seed)
    rng = np.random.default_rng(seed + 100)
    va = CLASS_VA[split.labels] + rng.normal(0, 0.05, (len(split.labels), 2)).astype(np.float32)
    va[rng.random(len(va)) < unlabelled] = np.nan
    split.va = np.clip(va, -1, 1).astype(np.float32)
    return split


def test_ccc_is_lins_formula_and_va_scores_skip_unlabelled_rows():
    x, y = np.array([0.1, 0.4, -0.2, 0.9]), np.array([0.0, 0.5, -0.1, 0.7])
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    assert ccc(x, y) == pytest.approx(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))
    assert ccc(y, y) == pytest.approx(1.0) and ccc(y + 0.3, y) < 1.0  # a shift costs concordance
    pred = np.array([[0.1, 0.0], [0.4, 0.5], [-0.2, -0.1], [0.9, 0.7], [5.0, 5.0]])
    target = np.array([[0.0, 0.5], [0.5, 0.6], [-0.1, 0.0], [0.7, 0.6], [np.nan, np.nan]])
    s = va_scores(pred, target)
    assert s["va_labelled"] == 4 and s["va_ccc_valence"] == pytest.approx(ccc(x, y))
    assert s["va_rmse"] == pytest.approx(np.sqrt(np.mean((pred[:4] - target[:4]) ** 2)))
    assert math.isnan(ccc([1.0], [1.0]))


def test_va_loss_is_one_minus_ccc_on_labelled_rows_only():
    pred = torch.tensor([[0.1, 0.2], [0.4, -0.3], [-0.5, 0.6], [0.9, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.1], [0.5, -0.2], [-0.4, 0.5], [float("nan"), float("nan")]])
    loss = va_ccc_loss(pred, target)
    p, t = pred.detach().numpy()[:3], target.numpy()[:3]
    assert float(loss.detach()) == pytest.approx(
        1 - (ccc(p[:, 0], t[:, 0]) + ccc(p[:, 1], t[:, 1])) / 2, abs=1e-5
    )
    loss.backward()
    assert torch.all(pred.grad[3] == 0)  # the unlabelled row adds nothing
    none = torch.full((4, 2), float("nan"))
    assert float(va_ccc_loss(pred, none).detach()) == 0.0


def test_va_loss_is_added_with_its_weight_when_data_and_model_both_have_va(splits):
    _, val = splits
    val = va_split((20, 12, 8, 6), 1)
    train = va_split((40, 30, 20, 10), 2, unlabelled=0.3)

    def epoch_loss(model_cls=TinyVANet, **values) -> float:
        torch.manual_seed(0)
        config = tiny_config(epochs=1, warmup_epochs=0, lr=1e-12, weight_decay=0.0, va_head=True, **values)
        return fit(config, train, val, K, model=model_cls()).history[0]["train_loss"]

    none, full, default = epoch_loss(va_loss_weight=0.0), epoch_loss(va_loss_weight=1.0), epoch_loss()
    assert full - none > 0.3  # an untrained head's CCC is near 0: 1 - CCC near 1
    assert default == pytest.approx(none + 0.3 * (full - none), abs=1e-5)
    # a model without a VA head adds no VA term, whatever the weight
    assert epoch_loss(TinyNet, va_loss_weight=1.0) == pytest.approx(epoch_loss(TinyNet, va_loss_weight=0.0))


def test_the_va_head_trains_and_reports_ccc_and_rmse_every_epoch():
    train, val = va_split((90, 50, 25, 10), 0, unlabelled=0.2), va_split((20, 12, 8, 6), 1, unlabelled=0.2)
    config = tiny_config(epochs=6, va_head=True, va_loss_weight=1.0, lr=3e-2)
    torch.manual_seed(0)
    history = fit(config, train, val, K, model=TinyVANet()).history
    for rec in history:
        assert {"va_ccc_valence", "va_ccc_arousal", "va_rmse"} <= set(rec)
        assert all(math.isfinite(rec[k]) for k in ("va_ccc_valence", "va_ccc_arousal", "va_rmse"))
    first, last = history[0], history[-1]
    assert last["va_ccc_valence"] > 0.8 and last["va_ccc_arousal"] > 0.5  # from about 0
    assert last["va_rmse"] < first["va_rmse"]


def test_no_va_head_and_no_va_values_mean_no_va_figures(splits):
    train, val = splits
    history = fit(tiny_config(epochs=1), train, val, K, model=TinyNet()).history
    assert not any(k.startswith("va_") for k in history[0])
    # data with VA but a model without the head: nothing to score either
    history = fit(
        tiny_config(epochs=1), va_split((40, 30, 20, 10), 2), va_split((8, 6, 4, 4), 3), K, model=TinyNet()
    )
    history = history.history
    assert not any(k.startswith("va_") for k in history[0])


def test_va_head_without_va_values_is_a_clear_error(splits):
    train, val = splits
    with pytest.raises(ModelError, match="va_head: true .* no valence/arousal values"):
        fit(tiny_config(epochs=1, va_head=True), train, val, K, model=TinyVANet())


def test_fermodel_has_a_va_head_only_when_asked():
    values = {"backbone": "test_convnext", "image_size": 32}
    with_va = create_model(tiny_config(**values, va_head=True), K)
    out = with_va(torch.randn(3, 3, 32, 32))
    assert out["va"].shape == (3, 2) and bool((out["va"].abs() <= 1).all())
    out["va"].sum().backward()
    assert with_va.va_head.mlp[0].weight.grad is not None
    without = create_model(tiny_config(**values), K)
    assert without.va_head is None and "va" not in without(torch.randn(2, 3, 32, 32))
