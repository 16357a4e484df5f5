"""The exported ensemble: one safetensors file per member plus manifest.json.

Nothing here unpickles: tensors are safetensors, everything else JSON, so an ensemble from an
untrusted source cannot run code when loaded. The manifest carries everything prediction needs:
class names, each member's config and preprocessing, the member weights, the TTA view set and
the per-class calibration offsets, plus the versions that produced it. Each member file's
SHA-256 is recorded, so a truncated or altered file is caught on load.

An ensemble folder is input like any other: ``read_manifest`` (manifest.py) validates the
manifest strictly before anything is built from it.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..config import build_config
from ..data.vocabulary import canonical_names
from ..errors import ConfigError, InvalidArgument, ModelError
from ..models import FERModel, create_model
from ..version import code_version
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, canonical_class_names, read_manifest
from .onnx import onnx_runners
from .probs import apply_bias, combine
from .runners import INT8, TorchRunner, check_backend
from .tta import view_set as views_of
from .weights import load_weights, save_weights

log = logging.getLogger(__name__)


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
        "canonical_names": list(canonical_names(class_names)),  # how evaluate matches other datasets
        "combine": "weighted mean over members of each member's softmax averaged over the TTA views; "
        "then softmax(log p + calibration.bias)",
        "weights": [e["weight"] for e in entries],
        "tta": {"view_set": view_set, "views": [v.__dict__ for v in views_of(view_set)]},
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
    """Members with their weights, TTA views and calibration: ``predict_probs`` is exactly what
    finalize evaluated. ``models`` holds the torch members (empty when loaded for ONNX Runtime
    only); ``runners`` are what prediction calls (fersearch/ensemble/runners.py)."""

    def __init__(
        self,
        models: list[FERModel],
        manifest: dict,
        runners: list | None = None,
        backend: str = "onnxruntime",
    ):
        self.models = models
        self.manifest = manifest
        self.class_names = list(manifest["class_names"])
        self.weights = list(manifest["weights"])
        self.bias = np.asarray(manifest["calibration"]["bias"], dtype=np.float64)
        self.view_set = manifest["tta"]["view_set"]
        self.views = views_of(self.view_set)
        self.runners = runners if runners is not None else [TorchRunner(m) for m in models]
        self.backend = "torch" if runners is None else backend

    @property
    def canonical_names(self) -> list[str]:
        """The classes by meaning (data/vocabulary.py), in output order."""
        return canonical_class_names(self.manifest)

    @property
    def sizes(self) -> list[int]:
        return sorted({r.preprocess["image_size"] for r in self.runners})

    def to(self, device: torch.device) -> Ensemble:
        if self.backend != "torch" and torch.device(device).type != "cpu":
            raise InvalidArgument(f"the {self.backend} backend runs on the CPU only; got device {device}")
        for m in self.models:
            m.to(device)
        return self

    def member_probs(self, images_by_size) -> np.ndarray:
        """(M, N, K): each member's softmax averaged over the TTA views, before weighting."""
        return np.stack([r(images_by_size(r.preprocess["image_size"]), self.views) for r in self.runners])

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
    if im.mode != "RGB":  # convert() copies even when there is nothing to convert
        im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def load_ensemble(path: str | Path, backend: str = "torch", threads: int | None = None) -> Ensemble:
    """backend: "torch" (the members themselves), "onnxruntime" (their ONNX files; ``threads``
    per session, default all cores) or "auto" (onnxruntime when it can, see runtime)."""
    path = Path(path)
    manifest = read_manifest(path)
    backend = check_backend(backend, manifest)
    if backend in ("onnxruntime", INT8):
        runners = onnx_runners(path, manifest, threads, int8=backend == INT8)
        return Ensemble([], manifest, runners, backend)
    models = []
    fix = "re-run finalize to export the ensemble again"
    for i, entry in enumerate(manifest["members"]):
        # The member's own weights follow; never look for (or download) pretrained ones here.
        try:
            config = build_config(entry["config"]).model_copy(update={"pretrained": False})
        except ConfigError as exc:
            raise ModelError(f"{path / MANIFEST}: members[{i}].config: {exc}; {fix}") from None
        model = create_model(config, len(manifest["class_names"]), list(manifest["class_names"]))
        load_weights(model, path / entry["file"], entry["sha256"], fix)
        models.append(model.eval())
    return Ensemble(models, manifest)
