"""`fersearch export-onnx`: add ONNX files to an exported ensemble (for predict --backend
onnxruntime), and with --quantize int8 int8 files checked on validation (--backend onnxruntime-int8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import app, err, lit


@app.command("export-onnx")
def export_onnx(
    model: Annotated[Path, typer.Option("--model", help="The ensemble directory finalize exported.")],
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: also write int8 members (ONNX Runtime static quantisation), each used only if "
            "its validation UAR drops by at most --tolerance; needs --data."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="With --quantize: the dataset the ensemble was trained on.")
    ] = None,
    format: Annotated[str, typer.Option(help="Dataset layout; auto detects it.")] = "auto",
    tolerance: Annotated[float, typer.Option(help="Validation UAR a member may lose to int8.")] = 0.01,
    calibration_images: Annotated[
        int, typer.Option(help="Training images that calibrate the int8 activation ranges.")
    ] = 256,
) -> None:
    """One ONNX file per member (normalised NCHW float in, logits out), SHA-256 in the manifest."""
    from ..ensemble import MANIFEST, load_ensemble, onnx_available
    from ..ensemble import export_onnx as run_export
    from ..errors import InvalidArgument, ModelError

    if quantize not in (None, "int8"):
        raise InvalidArgument(f"--quantize {quantize!r}: the only quantisation is int8")
    if quantize and data is None:
        raise InvalidArgument(
            "--quantize int8 checks each int8 member on the validation split: give --data, the dataset "
            "the ensemble was trained on"
        )
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
    if quantize:
        from ..finalize.quantize import quantize_ensemble

        result = quantize_ensemble(model, data, format, tolerance, calibration_images, console=err)
        for row in result["members"]:
            verdict = "int8" if row["quantized"] else f"kept float (lost more than {tolerance:g})"
            err.print(
                f"member {row['member']}: val UAR {row['val_uar_fp32']:.4f} float, "
                f"{row['val_uar_int8']:.4f} int8 -> {verdict}"
            )
        e = result["ensemble"]
        err.print(
            f"ensemble val UAR {e['val_uar_fp32']:.4f} float, {e['val_uar_int8']:.4f} with int8 members; "
            "predict with --backend onnxruntime-int8; the test figure: "
            "fersearch evaluate --backend onnxruntime-int8"
        )
