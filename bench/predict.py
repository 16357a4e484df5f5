"""Predict latency per image and size on disk of a 5-member ensemble of small backbones,
against seed 004's deployment budgets (100 ms per image, 500 MB).

The members are random-init timm models, 224 px unless --size says otherwise (weights do not
change speed or size); the ensemble is exported and reloaded exactly as finalize does, and
timed through the same calls `fersearch predict` makes. Usage:

    PYTHONPATH=. python bench/predict.py [--images 30] [--threads 1] [--size 224] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fersearch.config import build_config
from fersearch.finalize.export import load_ensemble, save_ensemble, size_on_disk
from fersearch.models import create_model
from fersearch.predict import predict_images

BACKBONES = ["resnet18", "efficientnet_b0", "mobilenetv2_100", "convnext_atto", "regnety_004"]
CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
BUDGET_MS, BUDGET_BYTES = 100.0, 500 * 1024 * 1024


def build(out: Path, view_set: str, backbones: list[str], size: int) -> None:
    members = []
    for i, name in enumerate(backbones):
        config = build_config({"data": {"root": "."}, "backbone": name, "seed": i, "image_size": size})
        members.append(
            (create_model(config, len(CLASSES)).eval(), {"id": name, "config": config.to_json_dict()})
        )
    save_ensemble(out, members, CLASSES, [1.0] * len(members), view_set=view_set)


def timed(fn, n: int) -> tuple[list[float], float]:
    """Wall-clock ms per call, and this process's CPU ms per call. On a shared machine the wall
    time includes waiting for a core; with one thread the CPU time is what an idle core would
    take (plus cache effects of the neighbours), so both are printed."""
    fn(0)  # warm-up: first call allocates
    out = []
    c0 = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out, (time.process_time() - c0) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated timm names")
    ap.add_argument("--size", type=int, default=224, help="input size of every member")
    args = ap.parse_args()
    backbones = args.backbones.split(",")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    files = []
    for i in range(args.images):  # 480x480 JPEGs, as a face crop from a phone might arrive
        p = tmp / f"img_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 480, 3), dtype=np.uint8)).save(p, quality=90)
        files.append(p)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, device {device}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"members: {', '.join(backbones)} at {args.size} px; {args.images} images per row\n")
    print(
        f"{'TTA':<6}{'path':<38}{'wall ms/img':>12}{'p90':>8}{'CPU ms/img':>11}{'budget':>8}"
        f"{'size MiB':>10}{'budget':>8}"
    )
    for view_set in ("none", "flip"):
        d = tmp / f"ens_{view_set}"
        build(d, view_set, backbones, args.size)
        ens = load_ensemble(d).to(device)
        size = size_on_disk(d)
        arrays = np.stack([np.asarray(Image.open(f).convert("RGB").resize((args.size,) * 2)) for f in files])
        rows = [
            (
                f"ensemble on a {args.size} px array, batch 1",
                lambda i: ens.predict_probs(lambda s: arrays[i : i + 1]),
            ),
            ("predict: JPEG file -> probs, batch 1", lambda i: predict_images(ens, [files[i]])),
        ]
        for label, fn in rows:
            t, cpu = timed(fn, args.images)
            med = float(np.median(t))
            # verdict on CPU time: with one thread it is what an idle core takes (see timed)
            ok = "ok" if cpu <= BUDGET_MS else "OVER"
            sok = "ok" if size <= BUDGET_BYTES else "OVER"
            print(
                f"{view_set:<6}{label:<38}{med:>12.1f}{np.percentile(t, 90):>8.1f}{cpu:>11.1f}{ok:>8}"
                f"{size / 2**20:>10.1f}{sok:>8}"
            )
        t0, c0 = time.perf_counter(), time.process_time()
        ens.predict_probs(lambda s: arrays)
        per = (time.perf_counter() - t0) * 1000 / len(arrays)
        cpu = (time.process_time() - c0) * 1000 / len(arrays)
        label = f"ensemble, batch {len(arrays)} (throughput)"
        print(f"{view_set:<6}{label:<38}{per:>12.1f}{'':>8}{cpu:>11.1f}")
    params = sum(p.numel() for m in load_ensemble(tmp / "ens_none").models for p in m.parameters())
    print(f"\nparameters: {params / 1e6:.1f} M in total")


if __name__ == "__main__":
    main()
