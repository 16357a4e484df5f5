"""The exported ensemble: one safetensors file per member plus manifest.json.

Nothing here unpickles: tensors are safetensors, everything else JSON, so an ensemble from an
untrusted source cannot run code when loaded. The manifest carries everything prediction needs:
class names, each member's config and preprocessing, the member weights, the TTA view set and
the per-class calibration offsets, plus the versions that produced it. Each member file's
SHA-256 is recorded, so a truncated or altered file is caught on load.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..config import build_config
from ..errors import ModelError
from ..models import FERModel, create_model
from ..version import code_version
from . import tta
from .calibrate import apply_bias
from .ensemble import combine
from .retrain import load_weights, save_weights

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "fersearch-ensemble"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    import safetensors
    import timm

    return {
        "fersearch": __version__,
        "code": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def save_ensemble(
    out: Path,
    members: list[tuple[FERModel, dict]],  # (model, info: id, trial, seed, config, val_uar...)
    class_names: list[str],
    weights: list[float],
    bias: list[float] | None = None,
    view_set: str = "none",
    trained_on: str = "train",
) -> Path:
    if len(members) != len(weights) or not members:
        raise ModelError(f"need one weight per member; got {len(members)} members, {len(weights)} weights")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = float(sum(weights))
    entries = []
    for i, ((model, info), w) in enumerate(zip(members, weights)):
        fname = f"member_{i}.safetensors"
        sha = save_weights(out / fname, model)
        entries.append(
            {**info, "file": fname, "sha256": sha, "weight": w / total, "preprocess": model.preprocess}
        )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_names": list(class_names),
        "combine": "weighted mean over members of each member's softmax averaged over the TTA views; "
        "then softmax(log p + calibration.bias)",
        "weights": [e["weight"] for e in entries],
        "tta": {"view_set": view_set, "views": [v.__dict__ for v in tta.view_set(view_set)]},
        "calibration": {
            "kind": "per-class additive log-probability offset, tuned on validation for UAR",
            "bias": [float(b) for b in (bias if bias is not None else [0.0] * len(class_names))],
        },
        "trained_on": trained_on,
        "members": entries,
        "versions": versions(),
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


def size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class Ensemble:
    """Loaded members with their weights, TTA views and calibration: ``predict_probs`` is exactly
    what finalize evaluated."""

    def __init__(self, models: list[FERModel], manifest: dict):
        self.models = models
        self.manifest = manifest
        self.class_names = list(manifest["class_names"])
        self.weights = list(manifest["weights"])
        self.bias = np.asarray(manifest["calibration"]["bias"], dtype=np.float64)
        self.view_set = manifest["tta"]["view_set"]
        self.views = tta.view_set(self.view_set)

    @property
    def sizes(self) -> list[int]:
        return sorted({m.preprocess["image_size"] for m in self.models})

    def to(self, device: torch.device) -> Ensemble:
        for m in self.models:
            m.to(device)
        return self

    def member_probs(self, images_by_size) -> np.ndarray:
        """(M, N, K): each member's softmax averaged over the TTA views, before weighting."""
        return np.stack(
            [
                tta.predict_views(m, images_by_size(m.preprocess["image_size"]), self.views).mean(0)
                for m in self.models
            ]
        )

    def predict_probs(self, images_by_size, calibrated: bool = True) -> np.ndarray:
        """images_by_size: callable size -> (N, size, size, 3) uint8 RGB array. Returns (N, K)."""
        probs = combine(self.member_probs(images_by_size), self.weights)
        return apply_bias(probs, self.bias) if calibrated else probs

    def predict_pil(self, images: list[Image.Image]) -> np.ndarray:
        """Any-size RGB PIL images, resized per member exactly as the training data was decoded."""
        cache: dict[int, np.ndarray] = {}

        def by_size(size: int) -> np.ndarray:
            if size not in cache:
                cache[size] = np.stack([resize_rgb(im, size) for im in images])
            return cache[size]

        return self.predict_probs(by_size)


def resize_rgb(im: Image.Image, size: int) -> np.ndarray:
    """The same conversion and resize as ``fersearch.data.decode`` (RGB, bilinear, square)."""
    im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def load_ensemble(path: str | Path) -> Ensemble:
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelError(
            f"{str(path)!r} is not an exported ensemble: {MANIFEST} is missing "
            f"(point --model at the 'ensemble' directory that finalize wrote)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{mpath} is not valid JSON ({exc}); re-export the ensemble") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(
            f"{mpath} is not a {FORMAT} manifest of version <= {FORMAT_VERSION} "
            f"(got format {manifest.get('format')!r} version {manifest.get('format_version')!r}); "
            f"re-run finalize with this fersearch version"
        )
    models = []
    fix = "re-run finalize to export the ensemble again"
    for entry in manifest["members"]:
        # The member's own weights follow; never look for (or download) pretrained ones here.
        config = build_config(entry["config"]).model_copy(update={"pretrained": False})
        model = create_model(config, len(manifest["class_names"]), list(manifest["class_names"]))
        load_weights(model, path / entry["file"], entry.get("sha256"), fix)
        models.append(model.eval())
    return Ensemble(models, manifest)


def onnx_available() -> bool:
    # torch's ONNX exporter needs both; neither is a fersearch dependency.
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(ensemble_dir: Path, ensemble: Ensemble) -> list[str]:
    """One ONNX file per member (input: normalised NCHW float, output: logits), only when the
    optional ``onnx`` package is installed; TTA, weights and calibration stay in the manifest."""
    if not onnx_available():
        return []
    files = []
    mpath = ensemble_dir / MANIFEST
    manifest = json.loads(mpath.read_text())
    try:
        files = _export_members(ensemble_dir, ensemble)
        manifest["onnx"] = {"files": files, "input": "normalised NCHW float32 (mean/std per member)"}
    except Exception as exc:  # optional extra: the safetensors ensemble is already complete
        log.warning("ONNX export failed, the ensemble is exported without it: %s", exc)
        manifest["onnx"] = {"files": [], "error": str(exc)}
    mpath.write_text(json.dumps(manifest, indent=2))
    return files


def _export_members(ensemble_dir: Path, ensemble: Ensemble) -> list[str]:
    files = []
    for i, model in enumerate(ensemble.models):
        size = model.preprocess["image_size"]
        name = f"member_{i}.onnx"

        class Logits(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x)["logits"]

        torch.onnx.export(
            Logits(model.cpu().eval()),
            torch.zeros(1, 3, size, size),
            str(ensemble_dir / name),
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        )
        files.append(name)
    return files
