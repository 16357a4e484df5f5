"""The ensemble manifest, validated strictly: an ensemble folder is input like any other (it may
come from anywhere). Every file has a SHA-256, every file is a plain name inside the folder,
weights and biases are finite and of the right lengths, sizes are within TrialConfig's bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, describe_validation_error
from ..data.vocabulary import canonical_names
from ..errors import ModelError
from .tta import VIEW_SETS

MANIFEST = "manifest.json"
FORMAT = "fersearch-ensemble"
FORMAT_VERSION = 1
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


class _OnnxInt8(_Onnx):
    """Per member: the file the ``onnxruntime-int8`` backend runs (its int8 file, or its float
    ONNX file where quantising cost more validation UAR than ``tolerance``)."""

    quantized: list[bool] = Field(default_factory=list)
    tolerance: float = Field(ge=0)

    @model_validator(mode="after")
    def _one_flag_per_file(self):
        if len(self.quantized) != len(self.files):
            raise ValueError(f"{len(self.files)} int8 files but {len(self.quantized)} quantized flags")
        return self


class _Tta(_Checked):
    view_set: Literal[tuple(VIEW_SETS)]  # type: ignore[valid-type]


class _Calibration(_Checked):
    bias: list[float]


class Manifest(_Checked):
    format: Literal["fersearch-ensemble"]
    format_version: int = Field(ge=1, le=FORMAT_VERSION)
    class_names: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    # The classes by meaning (data/vocabulary.py), in output order; absent from ensembles exported
    # before it was recorded, which derive it from class_names (canonical_class_names).
    canonical_names: list[Annotated[str, Field(min_length=1)]] | None = None
    weights: list[Annotated[float, Field(ge=0)]]
    tta: _Tta
    calibration: _Calibration
    members: list[_Member] = Field(min_length=1)
    onnx: _Onnx | None = None
    onnx_int8: _OnnxInt8 | None = None

    @model_validator(mode="after")
    def _consistent(self):
        k, m = len(self.class_names), len(self.members)
        if len(set(self.class_names)) != k:
            raise ValueError(f"class_names repeat a name: {self.class_names}")
        if self.canonical_names is not None and (
            len(self.canonical_names) != k or len(set(self.canonical_names)) != k
        ):
            raise ValueError(
                f"canonical_names must be {k} distinct names, one per class (got {self.canonical_names})"
            )
        if len(self.weights) != m or not sum(self.weights) > 0:
            raise ValueError(f"weights must be {m} non-negative numbers, not all 0 (got {self.weights})")
        if len(self.calibration.bias) != k:
            raise ValueError(f"calibration.bias has {len(self.calibration.bias)} values for {k} classes")
        for name, part in (("onnx", self.onnx), ("onnx_int8", self.onnx_int8)):
            if part is not None and part.files and len(part.files) != m:
                raise ValueError(f"{name}.files has {len(part.files)} files for {m} members")
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


def canonical_class_names(manifest: dict) -> list[str]:
    """The ensemble's classes by meaning, in output order. An ensemble exported before they were
    recorded derives them from its class names by the rule the dataset readers use."""
    if manifest.get("canonical_names"):
        return list(manifest["canonical_names"])
    try:
        return list(canonical_names(manifest["class_names"]))
    except ValueError as exc:
        raise ModelError(
            f"the ensemble's manifest has no canonical_names and its class_names cannot stand for them "
            f'({exc}); add a "canonical_names" list to its {MANIFEST}, one name per class in order'
        ) from None
