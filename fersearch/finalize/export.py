"""The exported ensemble: one safetensors file per member plus manifest.json.

Nothing here unpickles: tensors are safetensors, everything else JSON, so an ensemble from an
untrusted source cannot run code when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..config import build_config
from ..errors import ModelError
from ..models import FERModel, create_model
from ..train import predict_probs

MANIFEST = "manifest.json"


def save_ensemble(
    out: Path,
    members: list[tuple[FERModel, dict]],  # (model, info with config/trial/val_uar)
    class_names: list[str],
    weights: list[float],
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (model, info) in enumerate(members):
        fname = f"member_{i}.safetensors"
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / fname), metadata={"format": "pt"})
        entries.append({**info, "file": fname, "preprocess": model.preprocess})
    manifest = {
        "fersearch_version": __version__,
        "torch_version": torch.__version__,
        "class_names": list(class_names),
        "combine": "weighted mean of member softmax probabilities",
        "weights": [float(w) for w in weights],
        "members": entries,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


class Ensemble:
    def __init__(self, models: list[FERModel], weights: list[float], class_names: list[str]):
        self.models, self.weights, self.class_names = models, weights, class_names

    def predict_probs(self, images_by_size, device: torch.device | None = None) -> np.ndarray:
        """images_by_size: callable size -> (N, size, size, 3) uint8 array."""
        device = device or torch.device("cpu")
        total = None
        for model, w in zip(self.models, self.weights):
            model.to(device)
            p = predict_probs(model, images_by_size(model.preprocess["image_size"]), model.preprocess, device)
            total = w * p if total is None else total + w * p
        return total / sum(self.weights)


def load_ensemble(path: str | Path) -> Ensemble:
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelError(f"{str(path)!r} is not an exported ensemble: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{mpath} is not valid JSON ({exc}); re-export the ensemble") from None
    models = []
    for entry in manifest["members"]:
        config = build_config(entry["config"])
        model = create_model(config, len(manifest["class_names"]))
        fpath = path / entry["file"]
        if not fpath.is_file():
            raise ModelError(f"ensemble member file {str(fpath)!r} is missing; re-run finalize")
        try:
            model.load_state_dict(load_file(str(fpath)))
        except Exception as exc:  # safetensors raises its own error types on corrupt files
            raise ModelError(f"ensemble member file {str(fpath)!r} is unreadable: {exc}") from None
        model.eval()
        models.append(model)
    return Ensemble(models, manifest["weights"], manifest["class_names"])
