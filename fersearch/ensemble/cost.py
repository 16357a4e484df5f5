"""What one model costs to deploy: its prediction latency and its size on disk.

Measured the way ``fersearch predict --backend torch`` runs a member (``TorchRunner``: inference
mode, channels_last, bf16 autocast on CUDA) on random images at the model's input size, and the
size of the safetensors file an exported ensemble stores for it. A search measures every trial's
model with this before training it (``deploy:`` in the space), and finalize can sum it over
members.

The latency is the median wall time of one predict call of ``batch`` images, each seen in
``views`` TTA views (a count of plain views, or the views themselves: crops and flips cost
host time too), with torch limited to ``threads`` CPU
threads while it runs. It is measured on this host's ``device``: a worker with a GPU measuring a
CPU budget measures its own CPU, which is a stand-in for the deployment's, not the same chip.
"""

from __future__ import annotations

import json
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .runners import TorchRunner
from .tta import View

MIB = 2**20


@dataclass(frozen=True)
class Cost:
    latency_ms: float  # median per predict call of `batch` images x `views` views
    size_mib: float  # the member's safetensors file
    device: str
    threads: int
    batch: int
    views: int

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def size_mib(model: torch.nn.Module) -> float:
    """The size of the safetensors file an exported ensemble stores for ``model`` (to within a
    few hundred bytes of header), from its tensors, without writing the file (a large backbone
    is hundreds of MB): every tensor of the state dict is stored in full, shared ones too."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, t in model.state_dict().items():
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": _DTYPES.get(t.dtype, "F32"),
            "shape": list(t.shape),
            "data_offsets": [offset, n + offset],
        }
        offset += n
    text = len(json.dumps(header, separators=(",", ":")).encode())
    return (8 + text + (-text) % 8 + offset) / MIB


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
           torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.float64: "F64"}  # fmt: skip


def measure(
    model: torch.nn.Module,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    views: int | list[View] = 1,
    repeats: int = 7,
    seed: int = 0,
    stop_above_ms: float | None = None,
) -> Cost:
    """Latency and size of ``model`` (which must carry its ``preprocess``). The model is moved to
    ``device`` for the measurement and left in eval mode there. ``stop_above_ms``: a model whose
    first timed call already takes longer is not timed again (far over a budget, a median of
    several seconds-long calls would decide nothing more)."""
    size = model.preprocess["image_size"]
    channels = 6 if getattr(model, "fusion", None) is not None else 3  # face + context views packed
    images = np.random.default_rng(seed).integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
    runner = TorchRunner(model.to(device))
    view_list = [View("none")] * views if isinstance(views, int) else list(views)
    with torch_threads(threads):
        runner(images, view_list)  # warm-up: allocations, oneDNN's kernel choice
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner(images, view_list)  # returns numpy: includes the copy back from a device
            times.append((time.perf_counter() - t0) * 1000)
            if stop_above_ms is not None and times[0] > stop_above_ms:
                break
    return Cost(statistics.median(times), size_mib(model), device, threads, batch, len(view_list))
