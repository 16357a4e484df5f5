"""Int8 ONNX files for an ensemble's members (ONNX Runtime's static quantisation).

Each member's ONNX file is quantised to int8 in QDQ form: weights per output channel, activations
per tensor with ranges calibrated on real training images run through the member's own
normalisation. On this CPU that halves the members' time (BENCHMARKS.md, "Predict latency").
Quantisation costs some accuracy, so a member is used in int8 only when its validation UAR drops
by no more than a tolerance (``finalize.quantize`` decides and records it in the manifest as
``onnx_int8``); a refused member keeps its float ONNX file under the ``onnxruntime-int8`` backend.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..runtime import to_input

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 16


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images, normalised per member."""

    def __init__(self, images: np.ndarray, preprocess: dict):
        self.images, self.preprocess, self.start = images, preprocess, 0

    def get_next(self) -> dict | None:
        if self.start >= len(self.images):
            return None
        batch = torch.from_numpy(self.images[self.start : self.start + CALIBRATION_BATCH])
        self.start += CALIBRATION_BATCH
        x = to_input(batch, self.preprocess["mean"], self.preprocess["std"])
        return {"pixels": np.ascontiguousarray(x.numpy())}

    def rewind(self) -> None:
        self.start = 0


def quantize_onnx(src: Path, dst: Path, calibration: np.ndarray, preprocess: dict) -> None:
    """``src`` (float ONNX, normalised NCHW ``pixels`` in) -> ``dst`` (int8 QDQ), calibrated on
    ``calibration``: (N, S, S, 3) uint8 images at the member's size."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="fersearch-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))  # shapes inferred, graph optimised first
        quantize_static(
            str(prepared),
            str(dst),
            _Calibration(calibration, preprocess),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
