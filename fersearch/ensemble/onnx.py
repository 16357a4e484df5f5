"""ONNX files for an ensemble's members (the optional ``onnx`` extra) and the runners that read
them: one self-contained file per member, its SHA-256 in the manifest."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from pathlib import Path

import torch

from ..errors import ModelError
from ..models import FERModel
from .manifest import MANIFEST
from .runners import OrtRunner
from .weights import sha256_file, verify_weights

log = logging.getLogger(__name__)


def onnx_runners(path: Path, manifest: dict, threads: int | None, int8: bool = False) -> list:
    """One ONNX Runtime session per member: its float file, or with ``int8`` the file the
    manifest's ``onnx_int8`` names for it (int8 where quantising kept validation UAR)."""
    onnx = manifest.get("onnx_int8" if int8 else "onnx") or {}
    files, digests = onnx.get("files") or [], onnx.get("sha256") or []
    fix = f"run `fersearch export-onnx --model {path}` (needs `pip install 'fersearch[onnx]'`)"
    if int8:
        fix = f"run `fersearch export-onnx --model {path} --quantize int8 --data DATASET`"
    if len(files) != len(manifest["members"]):
        why = onnx.get("error") or "finalize ran without the onnx extra"
        raise ModelError(
            f"{str(path)!r} has ONNX files for {len(files)} of {len(manifest['members'])} members "
            f"({why}); {fix}, or predict with --backend torch"
        )
    runners = []
    for i, (fname, entry) in enumerate(zip(files, manifest["members"])):
        verify_weights(path / fname, digests[i], fix)
        runners.append(OrtRunner(path / fname, entry["preprocess"], threads))
    return runners


def onnx_available() -> bool:
    # torch's ONNX exporter needs both; they come with the optional `onnx` extra.
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(ensemble_dir: Path, ensemble) -> list[str]:
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


def _export_members(ensemble_dir: Path, ensemble) -> list[str]:
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
