"""What one model costs to deploy: its prediction latency and its size on disk.

Measured the way ``fersearch predict --backend torch`` runs a member (``TorchRunner``: inference
mode, channels_last, bf16 autocast on CUDA) on random images at the model's input size, and the
size of the safetensors file an exported ensemble stores for it. A search measures every trial's
model with this before training it (``deploy:`` in the space), and finalize can sum it over
members.

The latency is the median wall time of one predict call of ``batch`` images, each seen in
``views`` TTA views (a view costs what an image costs), with torch limited to ``threads`` CPU
threads while it runs. It is measured on this host's ``device``: a worker with a GPU measuring a
CPU budget measures its own CPU, which is a stand-in for the deployment's, not the same chip.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .runners import TorchRunner
from .tta import View
from .weights import save_weights

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
    """The size of the file an exported ensemble stores for ``model``."""
    with tempfile.TemporaryDirectory(prefix="fersearch-size-") as tmp:
        path = Path(tmp) / "member.safetensors"
        save_weights(path, model)
        return path.stat().st_size / MIB


def measure(
    model: torch.nn.Module,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    views: int = 1,
    repeats: int = 7,
    seed: int = 0,
) -> Cost:
    """Latency and size of ``model`` (which must carry its ``preprocess``). The model is moved to
    ``device`` for the measurement and left in eval mode there."""
    size = model.preprocess["image_size"]
    channels = 6 if getattr(model, "fusion", None) is not None else 3  # face + context views packed
    images = np.random.default_rng(seed).integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
    runner = TorchRunner(model.to(device))
    identity = [View("none")] * views
    with torch_threads(threads):
        runner(images, identity)  # warm-up: allocations, oneDNN's kernel choice
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner(images, identity)  # returns numpy: includes the copy back from a device
            times.append((time.perf_counter() - t0) * 1000)
    return Cost(statistics.median(times), size_mib(model), device, threads, batch, views)
