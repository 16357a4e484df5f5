"""Losses on soft targets, so label smoothing, mixup, cutmix and logit adjustment compose.

Every classification loss takes (B, K) logits and (B, K) target distributions:

* ``soft_cross_entropy``: -sum_k w_k * y_k * log softmax(z + tau * log prior)_k, mean over the
  batch. With one-hot targets this is ``F.cross_entropy(z + tau*log prior, y, weight=w)`` for
  probability targets (PyTorch's convention: class weights inside the sum, mean over samples).
* ``focal_loss``: the same with each term scaled by (1 - p_k)^gamma (Lin et al. 2017); the class
  weights play focal's per-class alpha.
* logit adjustment (Menon et al. 2021, "Long-tail learning via logit adjustment"): training adds
  tau * log(prior) to the logits inside the loss only; prediction uses the raw logits, which
  then carry a margin in favour of rare classes.
* ``au_bce``: multi-label action-unit loss for a multi-task head.
* ``va_ccc_loss``: 1 - CCC per dimension of the valence/arousal head, over the batch's labelled
  rows (CCC is what AffectNet VA is scored by; MSE alone pulls predictions towards the mean,
  which keeps RMSE low but the variance, and so CCC, too small).
* ``distillation_kl``: Hinton et al.'s KL(teacher_T || student_T) * T^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) int -> (B, K) with 1 - smoothing + smoothing/K on the label, smoothing/K elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    out.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing + off)
    return out


def adjust_logits(logits: torch.Tensor, log_prior: torch.Tensor | None, tau: float) -> torch.Tensor:
    """z + tau * log(prior), broadcast over the batch. tau = 0 or no prior: z unchanged."""
    if log_prior is None or tau == 0:
        return logits
    return logits + tau * log_prior.to(logits.device, logits.dtype)


def soft_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    logp = F.log_softmax(adjust_logits(logits.float(), log_prior, tau), dim=-1)  # (B, K)
    terms = target * logp
    if class_weights is not None:
        terms = terms * class_weights.to(terms.device)
    return -terms.sum(-1).mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float,
    class_weights: torch.Tensor | None = None,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    logp = F.log_softmax(adjust_logits(logits.float(), log_prior, tau), dim=-1)  # (B, K)
    terms = target * (1.0 - logp.exp()).pow(gamma) * logp
    if class_weights is not None:
        terms = terms * class_weights.to(terms.device)
    return -terms.sum(-1).mean()


def au_bce(au_logits: torch.Tensor, au_targets: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE over action units; targets in [0, 1] (presence or normalised intensity).
    NaN targets mark unlabelled AUs and are left out of the mean."""
    au_logits, au_targets = au_logits.float(), au_targets.float().to(au_logits.device)
    known = ~torch.isnan(au_targets)
    if not known.any():
        return au_logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    return F.binary_cross_entropy_with_logits(au_logits[known], au_targets[known])


def va_ccc_loss(va: torch.Tensor, va_targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over valence and arousal of 1 - CCC, each over the batch rows whose target is not
    NaN (unlabelled rows add nothing). A dimension with fewer than two labelled rows has no
    CCC and is left out; a batch with none at all gives 0 (the graph kept)."""
    va, va_targets = va.float(), va_targets.float().to(va.device)
    terms = []
    for d in range(va.shape[1]):
        known = ~torch.isnan(va_targets[:, d])
        if int(known.sum()) < 2:
            continue
        x, y = va[known, d], va_targets[known, d]
        xm, ym = x.mean(), y.mean()
        cov = ((x - xm) * (y - ym)).mean()
        den = x.var(unbiased=False) + y.var(unbiased=False) + (xm - ym) ** 2
        terms.append(1.0 - 2.0 * cov / (den + eps))
    if not terms:
        return va.sum() * 0.0
    return torch.stack(terms).mean()


def distillation_kl(
    student_logits: torch.Tensor, teacher_probs_t: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) at temperature T, times T^2 so its gradient scale matches CE.
    ``teacher_probs_t`` are the teacher's probabilities already softened at T."""
    logp_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(logp_s, teacher_probs_t.float(), reduction="batchmean") * temperature**2
