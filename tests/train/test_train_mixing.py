"""Mixup and CutMix on soft targets (label smoothing) and extra targets (AUs)."""

from __future__ import annotations

import torch

from fersearch.train.losses import smooth_one_hot
from fersearch.train.mixing import cutmix, mix_batch, mixup


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = smooth_one_hot(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), 4, 0.1)
    au = (torch.rand(8, 5, generator=g) < 0.5).float()
    return x, y, au


def test_cutmix_target_weight_equals_the_pasted_area():
    x, y, au = _batch()
    # Tag each image with its index so the pasted area can be measured from the output.
    tagged = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 16, 16).clone()
    out, (ym, aum) = cutmix(tagged, [y, au], alpha=1.0, generator=torch.Generator().manual_seed(5))
    for i in range(8):
        kept = (out[i, 0] == i).float().mean().item()
        if kept < 1.0:  # mixed with a partner: the target is kept * own + (1 - kept) * partner's
            j = int(out[i, 0][out[i, 0] != i][0].item())
            assert torch.allclose(ym[i], kept * y[i] + (1 - kept) * y[j], atol=1e-6)
            assert torch.allclose(aum[i], kept * au[i] + (1 - kept) * au[j], atol=1e-6)
    assert torch.allclose(ym.sum(1), torch.ones(8))


def test_mixup_blends_inputs_and_all_targets_with_one_weight():
    x, y, au = _batch()
    xm, (ym, aum) = mixup(x, [y, au], alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ym.sum(1), torch.ones(8), atol=1e-6)
    assert not torch.equal(xm, x)
    # Recover lam from one pair and check it is shared by inputs and every target
    g = torch.Generator().manual_seed(1)
    xm2, (ym2, _) = mixup(x, [y, au], alpha=0.4, generator=g)
    assert torch.equal(xm, xm2) and torch.equal(ym, ym2)  # seeded: repeatable


def test_mix_batch_probability_and_switch():
    x, y, au = _batch()
    same, (y_same,) = mix_batch(x, [y], torch.Generator().manual_seed(0), 0.4, 1.0, prob=0.0)
    assert same is x and y_same is y
    off, _ = mix_batch(x, [y], torch.Generator().manual_seed(0), 0.0, 0.0)
    assert off is x
    # with cutmix only, some pixels stay exactly as they were (a box is pasted, nothing blended)
    cm, _ = mix_batch(x, [y], torch.Generator().manual_seed(0), 0.0, 1.0)
    assert (cm == x).float().mean() > 0.2
