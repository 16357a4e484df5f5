"""Losses on hand-made numbers, and their composition with soft targets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fersearch.train.losses import (
    au_bce,
    distillation_kl,
    focal_loss,
    smooth_one_hot,
    soft_cross_entropy,
)


def test_logit_adjusted_loss_is_tau_log_prior_added_to_the_logits():
    # One sample, three classes, prior (0.7, 0.2, 0.1), tau = 1.2, label = class 2.
    logits = torch.tensor([[2.0, 0.5, -1.0]])
    prior = torch.tensor([0.7, 0.2, 0.1])
    tau = 1.2
    adjusted = [2.0 + tau * math.log(0.7), 0.5 + tau * math.log(0.2), -1.0 + tau * math.log(0.1)]
    expected = -(adjusted[2] - math.log(sum(math.exp(a) for a in adjusted)))  # -log softmax_2
    target = F.one_hot(torch.tensor([2]), 3).float()
    got = soft_cross_entropy(logits, target, log_prior=prior.log(), tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the adjustment penalises the rare true class more than plain CE does
    assert got.item() > soft_cross_entropy(logits, target).item()
    # tau = 0 is plain cross-entropy
    assert soft_cross_entropy(logits, target, log_prior=prior.log(), tau=0.0).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([2])).item()
    )


def test_weighted_soft_ce_matches_torch_with_smoothing_and_logit_adjustment():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    weights = torch.tensor([0.5, 1.0, 3.0, 10.0])
    log_prior = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    target = smooth_one_hot(labels, 4, 0.1)
    got = soft_cross_entropy(logits, target, weights, log_prior, tau=0.8)
    ref = F.cross_entropy(logits + 0.8 * log_prior, target, weight=weights)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_focal_loss_on_hand_made_numbers():
    logits = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0]])
    p = math.exp(1) / (math.exp(1) + 1)
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(
        -((1 - p) ** 2) * math.log(p), rel=1e-6
    )
    # gamma 0 is cross-entropy; class weights act as focal's per-class alpha
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(-math.log(p), rel=1e-6)
    alpha = torch.tensor([0.25, 1.0])
    assert focal_loss(logits, target, 2.0, alpha).item() == pytest.approx(
        -0.25 * (1 - p) ** 2 * math.log(p), rel=1e-6
    )


def test_au_bce_ignores_unlabelled_units():
    au_logits = torch.tensor([[0.0, 2.0, -1.0]])
    au_targets = torch.tensor([[1.0, float("nan"), 0.0]])
    ref = F.binary_cross_entropy_with_logits(torch.tensor([0.0, -1.0]), torch.tensor([1.0, 0.0]))
    assert au_bce(au_logits, au_targets).item() == pytest.approx(ref.item())


def test_distillation_kl_is_zero_for_a_matching_teacher_and_positive_otherwise():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    T = 4.0
    teacher = torch.softmax(logits / T, -1)
    assert distillation_kl(logits, teacher, T).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.softmax(torch.tensor([[3.0, 0.0, 0.0]]) / T, -1)
    assert distillation_kl(logits, other, T).item() > 0
