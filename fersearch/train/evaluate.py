"""Inference over an in-memory uint8 image array, in batches, returning probabilities (and the
valence/arousal head's outputs, for a model that has one)."""

from __future__ import annotations

import numpy as np
import torch

from ..data.views import pack
from ..ensemble.tta import View, apply_view
from ..runtime import autocast, to_input


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    images: np.ndarray,
    preprocess: dict,
    device: torch.device,
    batch_size: int = 256,
    context: np.ndarray | None = None,
) -> np.ndarray:
    """(N, [T,] H, W, 3) uint8 [+ context views of the same shape] -> (N, K) float32 softmax
    probabilities. Clip frames and context views go to the model packed (see data.views)."""
    return predict_outputs(model, images, preprocess, device, batch_size, context)[0]


@torch.no_grad()
def predict_outputs(
    model: torch.nn.Module,
    images: np.ndarray,
    preprocess: dict,
    device: torch.device,
    batch_size: int = 256,
    context: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``predict_probs``'s probabilities, and from the same pass the VA head's (N, 2) float32
    valence/arousal (None for a model without a VA head)."""
    was_training = model.training
    model.eval()
    probs, va = [], []
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        packed = pack(images[part], context[part] if context is not None else None)
        batch = torch.from_numpy(packed).to(device)
        x = to_input(batch, preprocess["mean"], preprocess["std"])
        with autocast(device):
            out = model(x)
        probs.append(torch.softmax(out["logits"].float(), dim=-1).cpu().numpy())
        if "va" in out:
            va.append(out["va"].float().cpu().numpy())
    model.train(was_training)
    va_out = np.concatenate(va).astype(np.float32) if va else None
    return np.concatenate(probs).astype(np.float32), va_out


def predict_views(
    model: torch.nn.Module,
    images: np.ndarray,
    views: list[View],
    device: torch.device | None = None,
) -> np.ndarray:
    """Softmax outputs of ``model`` on every TTA view: (V, N, K) float32."""
    device = device or next(model.parameters()).device
    return np.stack([predict_probs(model, apply_view(images, v), model.preprocess, device) for v in views])
