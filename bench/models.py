"""Seed-recipe models at their real size: parameters, forward FLOPs, CPU latency per image.

    PYTHONPATH=. python bench/models.py [--runs 5] [--only convnext_emotenet]

Random init (nothing is downloaded). FLOPs come from torch.utils.flop_counter.FlopCounterMode
(one multiply-add = 2 FLOPs) for one image; latency is the median of ``--runs`` forward passes
at batch 1 in inference mode on this machine's CPU threads, after one warm-up pass. GPU training
throughput needs a GPU; without one the script prints that it was not measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from fersearch.config import build_config
from fersearch.models import create_model

# (name, seed, classes, config) — the architecture each seed document describes
RECIPES = [
    (
        "convnext_emotenet",
        "001",
        7,
        dict(
            backbone="convnext_large",
            image_size=224,
            attention="cbam+eca+se",
            fpn=True,
            fpn_dim=512,
            pool="gem",
            head="mlp",
            head_hidden=1024,
            head_layers=2,
            head_dropout=0.6,
            dropout=0.4,
        ),
    ),
    (
        "efficientnet_bilstm",
        "003",
        8,
        dict(backbone="efficientnet_b4", image_size=224, attention="dual", head="bilstm", lstm_hidden=512),
    ),
    (
        "clip_caer (face + context)",
        "000",
        5,
        dict(
            backbone="open_clip:ViT-B-16",
            head="prompt",
            prompt_ctx=8,
            fusion="xattn",
            fusion_heads=8,
            fusion_layers=1,
        ),
    ),
    (
        "compound_au convnext_tiny",
        "004",
        14,
        dict(backbone="convnext_tiny", image_size=224, head="mlp", head_hidden=512, au_classes=18),
    ),
    (
        "compound_au swin_base",
        "004",
        14,
        dict(
            backbone="swin_base_patch4_window7_224",
            image_size=224,
            head="mlp",
            head_hidden=512,
            au_classes=18,
        ),
    ),
]
RAER = ["neutral", "enjoyment", "confusion", "fatigue", "distraction"]


def _inputs(model, config) -> tuple[tuple, dict]:
    s = model.preprocess["image_size"]
    x = torch.randn(1, 3, s, s)
    return (x,), ({"context": torch.randn(1, 3, s, s)} if config.fusion != "none" else {})


def measure(name: str, seed: str, classes: int, values: dict, runs: int) -> dict:
    config = build_config({"data": {"root": "."}, **values})
    t0 = time.perf_counter()
    model = create_model(config, classes, RAER if classes == 5 else None).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args, kwargs = _inputs(model, config)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(*args, **kwargs)
        flops = counter.get_total_flops()
        model(*args, **kwargs)  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            model(*args, **kwargs)
            times.append(time.perf_counter() - t)
    return {
        "model": name,
        "seed": seed,
        "input": f"{args[0].shape[-1]} px" + (" face + context" if kwargs else ""),
        "params_m": params / 1e6,
        "trainable_m": trainable / 1e6,
        "gflops": flops / 1e9,
        "latency_ms": 1000 * statistics.median(times),
        "build_s": build_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default=None, help="substring of a recipe name")
    args = ap.parse_args()
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, runs={args.runs}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    print(
        "| model | seed | input | params (M) | trainable (M) | forward GFLOPs / image "
        "| CPU latency ms / image (batch 1, median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, seed, classes, values in RECIPES:
        if args.only and args.only not in name:
            continue
        r = measure(name, seed, classes, values, args.runs)
        print(
            f"| {r['model']} | {r['seed']} | {r['input']} | {r['params_m']:.1f} | {r['trainable_m']:.1f} | "
            f"{r['gflops']:.1f} | {r['latency_ms']:.0f} |",
            flush=True,
        )
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    if torch.cuda.is_available():
        print("GPU present: training throughput at 224 px bf16 is not implemented in this script yet")
    else:
        print(
            "GPU training throughput (224 px, bf16; convnext_tiny, efficientnet_b4, CLIP ViT-B/16): "
            "not measured: no GPU on this machine"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
