"""Inference over an in-memory uint8 image array, in batches, returning probabilities."""

from __future__ import annotations

import numpy as np
import torch

from ..data.views import pack
from .augment import to_input


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
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        packed = pack(images[part], context[part] if context is not None else None)
        batch = torch.from_numpy(packed).to(device)
        x = to_input(batch, preprocess["mean"], preprocess["std"])
        with _autocast(device):
            logits = model(x)["logits"]
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def _autocast(device: torch.device):
    # bf16 on CUDA is free speed; CPU stays fp32 (CPU bf16 is slower on most machines).
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
