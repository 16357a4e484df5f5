"""Knowledge-distillation teachers: a finished trial, an exported ensemble, or the EMA weights.

The teacher sees exactly the student's (augmented, mixed) batch: the input is re-normalised
with each teacher member's own mean/std and resized to its input size on the device, then the
members' temperature-softened probabilities are averaged with the ensemble's weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..ensemble import load_ensemble
from ..errors import ModelError
from ..runtime import channel_stat
from .checkpoint import load_model_checkpoint


class Teacher:
    def __init__(self, members: list[tuple[torch.nn.Module, dict]], weights: list[float] | None = None):
        self.members = members  # (model in eval mode, its preprocess dict)
        self.weights = weights or [1.0] * len(members)

    def to(self, device: torch.device) -> Teacher:
        for model, _ in self.members:
            model.to(device).eval()
        return self

    @torch.no_grad()
    def probs(self, x: torch.Tensor, student_pre: dict, temperature: float) -> torch.Tensor:
        """x: (B, 3, H, W) normalised for the student -> (B, K) softened teacher probabilities."""
        total = None
        for (model, pre), w in zip(self.members, self.weights):
            xt = _renormalise(x, student_pre, pre)
            p = torch.softmax(model(xt)["logits"].float() / temperature, dim=-1) * w
            total = p if total is None else total + p
        return total / sum(self.weights)


def _renormalise(x: torch.Tensor, src: dict, dst: dict) -> torch.Tensor:
    if src["mean"] != dst["mean"] or src["std"] != dst["std"]:
        s_mean, s_std = channel_stat(src["mean"], x), channel_stat(src["std"], x)
        d_mean, d_std = channel_stat(dst["mean"], x), channel_stat(dst["std"], x)
        x = ((x * s_std + s_mean) - d_mean) / d_std
    size = dst["image_size"]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def load_teacher(path: str | Path, num_classes: int) -> Teacher:
    """An exported ensemble directory (manifest.json) or a trial's ``best.json`` checkpoint."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        ens = load_ensemble(path)
        if len(ens.class_names) != num_classes:
            raise ModelError(
                f"teacher ensemble {str(path)!r} predicts {len(ens.class_names)} classes; this "
                f"dataset has {num_classes}"
            )
        return Teacher([(m, m.preprocess) for m in ens.models], list(ens.weights))
    if path.is_dir() and (path / "best.json").is_file():
        path = path / "best.json"
    if path.suffix == ".json" and path.is_file():
        model = load_model_checkpoint(path, num_classes)
        return Teacher([(model.eval(), model.preprocess)])
    raise ModelError(
        f"teacher {str(path)!r} is neither an exported ensemble directory (with manifest.json) "
        f"nor a trial checkpoint (best.json); give `fersearch finalize`'s ensemble directory or "
        f"a trial's checkpoint directory"
    )
