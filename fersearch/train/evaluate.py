"""Inference over an in-memory uint8 image array, in batches, returning probabilities."""

from __future__ import annotations

import numpy as np
import torch

from .augment import to_input


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    images: np.ndarray,
    preprocess: dict,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, K) float32 softmax probabilities."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        x = to_input(batch, preprocess["mean"], preprocess["std"])
        with _autocast(device):
            logits = model(x)["logits"]
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def _autocast(device: torch.device):
    # bf16 on CUDA is free speed; CPU stays fp32 (CPU bf16 is slower on most machines).
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
