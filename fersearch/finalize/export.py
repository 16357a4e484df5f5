"""The exported ensemble: one safetensors file per member plus manifest.json.

Nothing here unpickles: tensors are safetensors, everything else JSON, so an ensemble from an
untrusted source cannot run code when loaded. The manifest carries everything prediction needs:
class names, each member's config and preprocessing, the member weights, the TTA view set and
the per-class calibration offsets, plus the versions that produced it. Each member file's
SHA-256 is recorded, so a truncated or altered file is caught on load.

An ensemble folder is input like any other: ``read_manifest`` validates the manifest strictly
(``Manifest``): every file has a SHA-256, every file is a plain name inside the folder, weights
and biases are finite and of the right lengths, sizes are within TrialConfig's bounds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import platform
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import __version__
from ..config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, build_config, describe_validation_error
from ..errors import ConfigError, InvalidArgument, ModelError
from ..models import FERModel, create_model
from ..version import code_version
from . import runtime, tta
from .calibrate import apply_bias
from .ensemble import combine
from .retrain import load_weights, save_weights, sha256_file, verify_weights

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
    """Members with their weights, TTA views and calibration: ``predict_probs`` is exactly what
    finalize evaluated. ``models`` holds the torch members (empty when loaded for ONNX Runtime
    only); ``runners`` are what prediction calls (fersearch.finalize.runtime)."""

    def __init__(self, models: list[FERModel], manifest: dict, runners: list | None = None):
        self.models = models
        self.manifest = manifest
        self.class_names = list(manifest["class_names"])
        self.weights = list(manifest["weights"])
        self.bias = np.asarray(manifest["calibration"]["bias"], dtype=np.float64)
        self.view_set = manifest["tta"]["view_set"]
        self.views = tta.view_set(self.view_set)
        self.runners = runners if runners is not None else [runtime.TorchRunner(m) for m in models]
        self.backend = "torch" if runners is None else "onnxruntime"

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
    backend = runtime.check_backend(backend, manifest)
    if backend == "onnxruntime":
        return Ensemble([], manifest, _onnx_runners(path, manifest, threads))
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


# ---- the manifest, validated: an ensemble folder may come from anywhere ----------------------

MAX_MANIFEST_BYTES = 64 << 20  # a manifest is a few KB per member


class _Checked(BaseModel):
    # Keys this code does not read (versions, combine, val_uar...) may be there; the ones it
    # reads are checked. No number may be NaN or infinite.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


_SHA256 = Field(pattern=r"^[0-9a-f]{64}$")


class _Preprocess(_Checked):
    mean: list[float] = Field(min_length=1, max_length=4)
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1, max_length=4)
    image_size: int = Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)


class _Member(_Checked):
    file: str
    sha256: Annotated[str, _SHA256]
    weight: float = Field(ge=0)
    config: dict[str, Any]
    preprocess: _Preprocess

    @field_validator("file")
    @classmethod
    def _plain(cls, name: str) -> str:
        return _plain_file_name(name)


class _Onnx(_Checked):
    files: list[str] = Field(default_factory=list)
    sha256: list[Annotated[str, _SHA256]] = Field(default_factory=list)
    error: str | None = None

    @field_validator("files")
    @classmethod
    def _plain(cls, files: list[str]) -> list[str]:
        return [_plain_file_name(f) for f in files]

    @model_validator(mode="after")
    def _one_hash_per_file(self):
        if len(self.sha256) != len(self.files):
            raise ValueError(f"{len(self.files)} ONNX files but {len(self.sha256)} SHA-256 values")
        return self


class _Tta(_Checked):
    view_set: Literal[tuple(tta.VIEW_SETS)]  # type: ignore[valid-type]


class _Calibration(_Checked):
    bias: list[float]


class Manifest(_Checked):
    format: Literal["fersearch-ensemble"]
    format_version: int = Field(ge=1, le=FORMAT_VERSION)
    class_names: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0)]]
    tta: _Tta
    calibration: _Calibration
    members: list[_Member] = Field(min_length=1)
    onnx: _Onnx | None = None

    @model_validator(mode="after")
    def _consistent(self):
        k, m = len(self.class_names), len(self.members)
        if len(set(self.class_names)) != k:
            raise ValueError(f"class_names repeat a name: {self.class_names}")
        if len(self.weights) != m or not sum(self.weights) > 0:
            raise ValueError(f"weights must be {m} non-negative numbers, not all 0 (got {self.weights})")
        if len(self.calibration.bias) != k:
            raise ValueError(f"calibration.bias has {len(self.calibration.bias)} values for {k} classes")
        if self.onnx is not None and self.onnx.files and len(self.onnx.files) != m:
            raise ValueError(f"onnx.files has {len(self.onnx.files)} files for {m} members")
        return self


def _plain_file_name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or Path(name).name != name:
        raise ValueError(f"{name!r} is not a file name inside the ensemble folder")
    return name


def read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelError(
            f"{str(path)!r} is not an exported ensemble: {MANIFEST} is missing "
            f"(point --model at the 'ensemble' directory that finalize wrote)"
        )
    fix = "re-export it with `fersearch finalize` (or restore the folder finalize wrote)"
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelError(f"{mpath} is {mpath.stat().st_size} bytes, far beyond any manifest; {fix}")
    try:
        manifest = json.loads(mpath.read_bytes())
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested beyond reason
        raise ModelError(f"{mpath} is not valid JSON ({' '.join(str(exc).split())[:200]}); {fix}") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{mpath} must hold a JSON object, not a {type(manifest).__name__}; {fix}")
    version = manifest.get("format_version")
    if manifest.get("format") != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"{mpath} is not a {FORMAT} manifest of version <= {FORMAT_VERSION} "
            f"(got format {str(manifest.get('format'))[:40]!r} version "
            f"{str(manifest.get('format_version'))[:20]!r}); re-run finalize with this fersearch version"
        )
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise ModelError(
            f"{mpath} is not a valid ensemble manifest: {describe_validation_error(exc)}; {fix}"
        ) from None
    root = path.resolve()
    onnx = manifest.get("onnx") or {}
    for name in [m["file"] for m in manifest["members"]] + list(onnx.get("files") or []):
        if (path / name).resolve().parent != root:  # a symbolic link out of the folder
            raise ModelError(f"{mpath}: {name!r} leads outside {str(path)!r}; {fix}")
    return manifest


def _onnx_runners(path: Path, manifest: dict, threads: int | None) -> list:
    onnx = manifest.get("onnx") or {}
    files, digests = onnx.get("files") or [], onnx.get("sha256") or []
    fix = f"run `fersearch export-onnx --model {path}` (needs `pip install 'fersearch[onnx]'`)"
    if len(files) != len(manifest["members"]):
        why = onnx.get("error") or "finalize ran without the onnx extra"
        raise ModelError(
            f"{str(path)!r} has ONNX files for {len(files)} of {len(manifest['members'])} members "
            f"({why}); {fix}, or predict with --backend torch"
        )
    runners = []
    for i, (fname, entry) in enumerate(zip(files, manifest["members"])):
        verify_weights(path / fname, digests[i], fix)
        runners.append(runtime.OrtRunner(path / fname, entry["preprocess"], threads))
    return runners


def onnx_available() -> bool:
    # torch's ONNX exporter needs both; they come with the optional `onnx` extra.
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(ensemble_dir: Path, ensemble: Ensemble) -> list[str]:
    """One self-contained ONNX file per member (input: normalised NCHW float, output: logits),
    their SHA-256 recorded in the manifest; TTA, weights and calibration stay in the manifest.
    Nothing is written without the optional ``onnx`` extra."""
    if not onnx_available():
        return []
    mpath = ensemble_dir / MANIFEST
    manifest = json.loads(mpath.read_text())
    try:
        files = _export_members(ensemble_dir, ensemble)
        manifest["onnx"] = {
            "files": files,
            "sha256": [sha256_file(ensemble_dir / f) for f in files],
            "input": "pixels: normalised NCHW float32 (mean/std per member), output: logits",
        }
    except Exception as exc:  # optional extra: the safetensors ensemble is already complete
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        log.warning("ONNX export failed, the ensemble is exported without it: %s", exc)
        files = []
        manifest["onnx"] = {"files": [], "error": f"ONNX export failed: {first[:300]}"}
    mpath.write_text(json.dumps(manifest, indent=2))
    return files


class _Logits(torch.nn.Module):
    def __init__(self, model: FERModel):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["logits"]


def _export_members(ensemble_dir: Path, ensemble: Ensemble) -> list[str]:
    files = []
    for i, model in enumerate(ensemble.models):
        size = model.preprocess["image_size"]
        name = f"member_{i}.onnx"
        device = next(model.parameters()).device
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            torch.onnx.export(
                _Logits(model.cpu().eval()).eval(),
                (torch.zeros(2, 3, size, size),),  # batch 2: torch.export specialises a batch of 1
                str(ensemble_dir / name),
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,  # one file per member, weights inside (far below 2 GB)
            )
        model.to(device)
        files.append(name)
    return files
