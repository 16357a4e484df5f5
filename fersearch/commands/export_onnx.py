"""`fersearch export-onnx`: add ONNX files to an exported ensemble (for predict --backend onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import app, err, lit


@app.command("export-onnx")
def export_onnx(
    model: Annotated[Path, typer.Option("--model", help="The ensemble directory finalize exported.")],
) -> None:
    """One ONNX file per member (normalised NCHW float in, logits out), SHA-256 in the manifest."""
    from ..ensemble import MANIFEST, load_ensemble, onnx_available
    from ..ensemble import export_onnx as run_export
    from ..errors import ModelError

    if not onnx_available():
        raise ModelError(
            "export-onnx needs the onnx and onnxscript packages, which are not installed: "
            "pip install 'fersearch[onnx]'"
        )
    ens = load_ensemble(model)
    files = run_export(model, ens)
    if not files:
        why = json.loads((model / MANIFEST).read_text())["onnx"].get("error", "unknown error")
        raise ModelError(f"{why}; the ensemble is unchanged apart from that note in {MANIFEST}")
    err.print(f"wrote {lit(', '.join(files))} to {lit(model)}; predict with --backend onnxruntime")
