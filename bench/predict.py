"""Predict latency per image and size on disk of a 5-member ensemble of small backbones,
against seed 004's deployment budgets (100 ms per image, 500 MB), for each inference path.

The members are random-init timm models, 224 px unless --size says otherwise (weights do not
change speed or size); the ensemble is exported and reloaded exactly as finalize does, and
timed through the same calls `fersearch predict` makes. Paths, all on the same members:

    before       the previous inference path: each TTA view a separate eager forward under
                 no_grad, weights in the default memory format
    torch        `predict --backend torch`: inference_mode, channels_last, views in one batch
    onnxruntime  `predict --backend onnxruntime`: the members' ONNX files (needs the onnx extra)
    onnxruntime-int8  `predict --backend onnxruntime-int8`: the members' int8 ONNX files; here
                 calibrated on random images (speed only: what int8 costs in UAR is measured by
                 `fersearch export-onnx --quantize int8` on real data, BENCHMARKS.md)

The paths are timed round-robin, image by image, so a change in the machine's load hits all of
them alike. Usage:

    PYTHONPATH=. python bench/predict.py [--images 10] [--threads 1] [--size 224] [--paths ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fersearch.config import build_config
from fersearch.ensemble import Ensemble, export_onnx, load_ensemble, save_ensemble, size_on_disk, tta
from fersearch.ensemble.probs import apply_bias, combine
from fersearch.ensemble.quantize import quantize_onnx
from fersearch.ensemble.weights import sha256_file
from fersearch.models import create_model
from fersearch.predict import predict_images
from fersearch.train.evaluate import predict_views

BACKBONES = ["resnet18", "efficientnet_b0", "mobilenetv2_100", "convnext_atto", "regnety_004"]
CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
BUDGET_MS, BUDGET_BYTES = 100.0, 500 * 1024 * 1024
PATHS = ("before", "torch", "onnxruntime", "onnxruntime-int8")


def build(out: Path, backbones: list[str], size: int, onnx: bool, int8: bool = False) -> None:
    members = []
    for i, name in enumerate(backbones):
        config = build_config({"data": {"root": "."}, "backbone": name, "seed": i, "image_size": size})
        members.append(
            (create_model(config, len(CLASSES)).eval(), {"id": name, "config": config.to_json_dict()})
        )
    save_ensemble(out, members, CLASSES, [1.0] * len(members))
    if onnx:
        t0 = time.perf_counter()
        if not export_onnx(out, load_ensemble(out)):
            raise SystemExit(f"ONNX export failed: {json.loads((out / 'manifest.json').read_text())['onnx']}")
        print(f"ONNX export of {len(members)} members: {time.perf_counter() - t0:.0f} s")
    if int8:
        quantize_all(out, size)


def quantize_all(out: Path, size: int) -> None:
    """Every member's int8 file, calibrated on random images, listed in the manifest as
    finalize's check would list members it kept."""
    manifest = json.loads((out / "manifest.json").read_text())
    calibration = np.random.default_rng(1).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    files = []
    t0 = time.perf_counter()
    for i, (member, fp32) in enumerate(zip(manifest["members"], manifest["onnx"]["files"])):
        files.append(f"member_{i}.int8.onnx")
        quantize_onnx(out / fp32, out / files[-1], calibration, member["preprocess"])
    manifest["onnx_int8"] = {
        "files": files,
        "sha256": [sha256_file(out / f) for f in files],
        "quantized": [True] * len(files),
        "tolerance": 1.0,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    print(f"int8 quantisation of {len(files)} members: {time.perf_counter() - t0:.0f} s")


def with_view_set(src: Path, dst: Path, view_set: str) -> Path:
    """The same members (same files) with another TTA view set in the manifest."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["tta"] = {"view_set": view_set, "views": [v.__dict__ for v in tta.view_set(view_set)]}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


class Before:
    """The inference path this benchmark measured first: per view, eager, default memory format."""

    def __init__(self, path: Path):
        self.ens = load_ensemble(path)
        for m in self.ens.models:
            m.to(memory_format=torch.contiguous_format)

    def predict_probs(self, images_by_size):
        e = self.ens
        members = [
            predict_views(m, images_by_size(m.preprocess["image_size"]), e.views).mean(0) for m in e.models
        ]
        return apply_bias(combine(np.stack(members), e.weights), e.bias)

    def predict_pil(self, images):
        return Ensemble.predict_pil(self, images)  # the same resize, then predict_probs above


def load(path_name: str, d: Path, threads: int):
    if path_name == "before":
        return Before(d)
    return load_ensemble(d, backend=path_name, threads=threads)


def round_robin(fns: dict, n: int) -> dict[str, tuple[list[float], float]]:
    """Wall-clock ms per call and this process's CPU ms per call, for each of ``fns``, called in
    turn on image i. On a shared machine the wall time includes waiting for a core; with one
    thread the CPU time is what an idle core would take (plus cache effects of the neighbours)."""
    for fn in fns.values():
        fn(0)  # warm-up: first call allocates
    wall = {k: [] for k in fns}
    cpu = dict.fromkeys(fns, 0.0)
    for i in range(n):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn(i)
            wall[k].append((time.perf_counter() - t0) * 1000)
            cpu[k] += (time.process_time() - c0) * 1000
    return {k: (wall[k], cpu[k] / n) for k in fns}


def per_member(ens: dict, arrays: np.ndarray, backbones: list[str], n: int) -> None:
    """CPU ms per image of each member alone, batch 1, no TTA, for each path."""
    view = tta.view_set("none")
    fns = {}
    for p, e in ens.items():
        for j, name in enumerate(backbones):
            if isinstance(e, Before):
                m = e.ens.models[j]
                fns[(name, p)] = lambda i, m=m: predict_views(m, arrays[i : i + 1], view)
            else:
                fns[(name, p)] = lambda i, r=e.runners[j]: r(arrays[i : i + 1], view)
    results = round_robin(fns, n)
    print(f"\nper member, batch 1, no TTA, CPU ms/img: {'  '.join(f'{p:>12}' for p in ens)}")
    for name in backbones:
        print(f"  {name:<38}" + "  ".join(f"{results[(name, p)][1]:>12.1f}" for p in ens))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated timm names")
    ap.add_argument("--size", type=int, default=224, help="input size of every member")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    ap.add_argument("--tta", default="none,flip", help="comma-separated TTA view sets")
    args = ap.parse_args()
    backbones, paths = args.backbones.split(","), args.paths.split(",")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    files = []
    for i in range(args.images):  # 480x480 JPEGs, as a face crop from a phone might arrive
        p = tmp / f"img_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 480, 3), dtype=np.uint8)).save(p, quality=90)
        files.append(p)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"members: {', '.join(backbones)} at {args.size} px; {args.images} images per row")
    base = tmp / "ens"
    int8 = "onnxruntime-int8" in paths
    build(base, backbones, args.size, onnx=int8 or "onnxruntime" in paths, int8=int8)
    safetensors = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    onnx_bytes = sum(f.stat().st_size for f in base.glob("*.onnx") if not f.name.endswith(".int8.onnx"))
    int8_bytes = sum(f.stat().st_size for f in base.glob("*.int8.onnx"))
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB").resize((args.size,) * 2)) for f in files])
    print(f"\n{'TTA':<6}{'path':<18}{'call':<30}{'wall ms/img':>12}{'p90':>8}{'CPU ms/img':>11}{'budget':>8}")
    for view_set in args.tta.split(","):
        d = with_view_set(base, tmp / f"ens_{view_set}", view_set)
        ens = {p: load(p, d, args.threads) for p in paths}
        ref = ens[paths[0]].predict_probs(lambda s: arrays)
        for p in paths[1:]:  # same members, same answers: the speed-ups change no prediction
            diff = np.abs(ens[p].predict_probs(lambda s: arrays) - ref).max()
            if p == "onnxruntime-int8":  # int8 rounds: its difference is printed, not required to vanish
                print(f"{view_set}: int8 probabilities differ from {paths[0]}'s by at most {diff:.3f}")
                continue
            assert diff < 1e-4, f"{p} differs from {paths[0]} by {diff}"
        calls = {
            "ensemble on an array, batch 1": lambda e: lambda i: e.predict_probs(lambda s: arrays[i : i + 1]),
            "JPEG file -> probs, batch 1": lambda e: lambda i: predict_images(e, [files[i]]),
        }
        for label, make in calls.items():
            fns = {p: make(e) for p, e in ens.items()}
            results = round_robin(fns, args.images)
            for p, (t, cpu) in results.items():
                # verdict on CPU time: with one thread it is what an idle core takes (see round_robin)
                ok = "ok" if cpu <= BUDGET_MS else "OVER"
                print(
                    f"{view_set:<6}{p:<18}{label:<30}{np.median(t):>12.1f}{np.percentile(t, 90):>8.1f}"
                    f"{cpu:>11.1f}{ok:>8}"
                )
        for p, e in ens.items():
            t0, c0 = time.perf_counter(), time.process_time()
            e.predict_probs(lambda s: arrays)
            per = (time.perf_counter() - t0) * 1000 / len(arrays)
            cpu = (time.process_time() - c0) * 1000 / len(arrays)
            label = f"batch {len(arrays)}, per image"
            print(f"{view_set:<6}{p:<18}{label:<30}{per:>12.1f}{'':>8}{cpu:>11.1f}")
        if view_set == "none":
            per_member(ens, arrays, backbones, args.images)
    params = sum(p.numel() for m in load_ensemble(base).models for p in m.parameters())
    total = size_on_disk(base)
    print(
        f"\nparameters: {params / 1e6:.1f} M in total; on disk: safetensors {safetensors / 2**20:.1f} MiB, "
        f"ONNX {onnx_bytes / 2**20:.1f} MiB, int8 ONNX {int8_bytes / 2**20:.1f} MiB, "
        f"ensemble directory {total / 2**20:.1f} MiB "
        f"({'ok' if total <= BUDGET_BYTES else 'OVER'} against {BUDGET_BYTES / 2**20:.0f} MiB)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
