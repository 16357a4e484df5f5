"""Inference backends for an exported ensemble: one runner per member turns (N, S, S, 3) uint8
images into softmax probabilities averaged over the TTA views.

Both backends feed the member exactly what finalize evaluated (the same TTA views, the same
normalisation from ``to_input``), and all views of a batch go through one forward call.

- ``torch``: the member itself, under ``inference_mode``, its weights in channels_last memory
  format (oneDNN's native convolution layout on CPU: about 10% faster here, same numbers to
  float rounding).
- ``onnxruntime``: the member's ONNX file. ONNX Runtime folds batch norms into convolutions and
  fuses activations at load, about twice as fast as eager torch on this CPU (BENCHMARKS.md).
  Needs the optional ``onnx`` extra and ONNX files in the ensemble (finalize writes them when
  the extra is installed; ``fersearch export-onnx`` adds them to an existing ensemble).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidArgument, ModelError, one_of
from ..runtime import to_input
from .tta import View, apply_view

INT8 = "onnxruntime-int8"  # the members' int8 ONNX files where finalize's check accepted them
BACKENDS = ("torch", "onnxruntime", INT8)
CHUNK = 64  # images per forward call: bounds memory for big folders x many TTA views


def check_backend(name: str, manifest: dict) -> str:
    """The backend to use; "auto" is onnxruntime when it is installed and the ensemble has an
    ONNX file for every member, else torch."""
    if name not in ("auto", *BACKENDS):
        raise InvalidArgument(f"unknown inference backend: {one_of(name, ('auto', *BACKENDS))}")
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    if name == "auto":
        files = (manifest.get("onnx") or {}).get("files") or []
        return "onnxruntime" if have_ort and len(files) == len(manifest["members"]) else "torch"
    if name in ("onnxruntime", INT8) and not have_ort:
        raise ModelError(
            f"--backend {name} needs the onnxruntime package, which is not installed; "
            "install the extra with `pip install 'fersearch[onnx]'`, or use --backend torch"
        )
    if name == INT8 and not (manifest.get("onnx_int8") or {}).get("files"):
        raise ModelError(
            "--backend onnxruntime-int8: this ensemble has no int8 members; write them with "
            "`fersearch export-onnx --model DIR --quantize int8 --data DATASET`, or use --backend onnxruntime"
        )
    return name


def view_batch(images: np.ndarray, views: list[View]) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (V * N, S, S, 3): every view of every image, view-major."""
    if len(views) == 1:
        return apply_view(images, views[0])
    return np.concatenate([apply_view(images, v) for v in views])


def _mean_over_views(probs: np.ndarray, n_views: int) -> np.ndarray:
    # (V * N, K) -> (N, K); float32 like the per-view arrays finalize averaged
    return probs.reshape(n_views, -1, probs.shape[-1]).mean(0)


class TorchRunner:
    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.preprocess = model.preprocess
        self.channels_last = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def __call__(self, images: np.ndarray, views: list[View]) -> np.ndarray:
        batch = view_batch(images, views)
        device = next(self.model.parameters()).device
        mean, std = self.preprocess["mean"], self.preprocess["std"]
        out = []
        # bf16 autocast on CUDA, fp32 on CPU: the same rule as the evaluation in fersearch.train
        cast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        with torch.inference_mode(), cast:
            for start in range(0, len(batch), CHUNK):
                x = to_input(torch.from_numpy(batch[start : start + CHUNK]).to(device), mean, std)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = self.model(x)["logits"]
                out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return _mean_over_views(np.concatenate(out), len(views))


class OrtRunner:
    def __init__(self, path: Path, preprocess: dict, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: spinning costs a shared machine a core
        # per thread and made 2 threads 3x slower than 1 under load here (BENCHMARKS.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(
                f"ONNX Runtime cannot load {str(path)!r} ({exc}); "
                f"run `fersearch export-onnx --model {path.parent}` to write the ONNX files again"
            ) from None
        self.preprocess = preprocess

    def __call__(self, images: np.ndarray, views: list[View]) -> np.ndarray:
        batch = view_batch(images, views)
        mean, std = self.preprocess["mean"], self.preprocess["std"]
        out = []
        for start in range(0, len(batch), CHUNK):
            x = to_input(torch.from_numpy(batch[start : start + CHUNK]), mean, std)
            x = np.ascontiguousarray(x.numpy())  # to_input keeps the NHWC strides of its input
            (logits,) = self.session.run(["logits"], {"pixels": x})
            out.append(torch.softmax(torch.from_numpy(logits), dim=-1).numpy())
        return _mean_over_views(np.concatenate(out), len(views))
