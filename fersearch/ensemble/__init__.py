"""The exported ensemble: what finalize writes and predict, explain and distillation read.

    store.py     save_ensemble / load_ensemble, the Ensemble that predicts as finalize evaluated
    manifest.py  manifest.json, validated strictly (an ensemble folder may come from anywhere)
    weights.py   member weights: safetensors written atomically, verified by SHA-256
    tta.py       test-time augmentation views and named view sets
    probs.py     members' probabilities -> one answer: weighted mean, calibration offsets
    runners.py   inference backends (torch, ONNX Runtime) that run one member over TTA views
    onnx.py      ONNX files for the members (the optional ``onnx`` extra)

It sits below ``train/`` and ``finalize/`` (both use it) and above ``models/``.
"""

from .manifest import MANIFEST, read_manifest
from .onnx import export_onnx, onnx_available
from .store import Ensemble, load_ensemble, resize_rgb, save_ensemble, size_on_disk

__all__ = [
    "MANIFEST",
    "Ensemble",
    "export_onnx",
    "load_ensemble",
    "onnx_available",
    "read_manifest",
    "resize_rgb",
    "save_ensemble",
    "size_on_disk",
]
