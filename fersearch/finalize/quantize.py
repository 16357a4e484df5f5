"""Int8 members for an exported ensemble, kept only where they keep validation UAR.

For each member with a float ONNX file: quantise it (fersearch/ensemble/quantize.py) calibrated
on a seeded sample of training images, then run the float and the int8 file over the validation
split; the int8 file is used (backend ``onnxruntime-int8``) only when the member's validation UAR
drops by at most ``tolerance``. The test split is not read here: ``fersearch evaluate --backend
onnxruntime-int8`` reports its figure.

The data must be the dataset the ensemble was trained on (the study's validation carve is
persisted beside it); classes must match the ensemble's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from ..ensemble import MANIFEST, Ensemble, load_ensemble
from ..ensemble.onnx import onnx_runners
from ..ensemble.quantize import quantize_onnx
from ..ensemble.runners import INT8, OrtRunner
from ..ensemble.weights import sha256_file
from ..errors import DataError, InvalidArgument
from ..metrics import summarize
from ..progress import bar
from .evaluate import dataset_for, decode_for

DEFAULT_TOLERANCE = 0.01  # validation UAR a member may lose to int8
DEFAULT_CALIBRATION = 256  # training images that set the activation ranges


def quantize_ensemble(
    model: str | Path,
    data: str | Path,
    format: str = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    calibration_images: int = DEFAULT_CALIBRATION,
    threads: int | None = None,
    console: Console | None = None,
) -> dict:
    """Writes member_<i>.int8.onnx for each member and ``onnx_int8`` in the manifest; returns
    the per-member validation UARs (float, int8) and which members were quantised."""
    if not 0 <= tolerance <= 1:
        raise InvalidArgument(f"--tolerance must be a UAR difference in 0..1, got {tolerance}")
    if calibration_images < 1:
        raise InvalidArgument(f"--calibration-images must be at least 1, got {calibration_images}")
    console = console or Console(stderr=True)
    model = Path(model)
    ens = load_ensemble(model, backend="onnxruntime", threads=threads)  # needs the float ONNX files
    manifest = dict(ens.manifest)
    train = dataset_for(ens, data, format, "train")
    if list(train.class_names) != list(ens.class_names):
        raise DataError(
            f"int8 members are checked on the dataset the ensemble was trained on; {str(data)!r} has "
            f"classes {list(train.class_names)}, the ensemble {list(ens.class_names)}"
        )
    # only the calibration sample is decoded, not the whole training split
    every = train.splits["train"]
    pick = sorted(np.random.default_rng(0).permutation(len(every))[:calibration_images].tolist())
    sample = train.derive({**train.splits, "train": [every[i] for i in pick]})
    calib_images, calib = decode_for(ens, sample, "train", console, "quantize")
    val_images, val = decode_for(ens, dataset_for(ens, data, format, "val"), "val", console, "quantize")
    labels, k = np.asarray(val.labels), len(ens.class_names)

    def uar(runner) -> float:
        probs = runner(val_images[runner.preprocess["image_size"]], ens.views)
        return float(summarize(labels, probs.argmax(1), k)["uar"])

    files, quantized, rows = [], [], []
    with bar(f"quantize: {len(ens.runners)} members to int8", console) as update:
        for i, (runner, fp32_file) in enumerate(zip(ens.runners, manifest["onnx"]["files"])):
            int8_file = f"member_{i}.int8.onnx"
            size = runner.preprocess["image_size"]
            quantize_onnx(model / fp32_file, model / int8_file, calib_images[size], runner.preprocess)
            before, after = uar(runner), uar(OrtRunner(model / int8_file, runner.preprocess, threads))
            keep = before - after <= tolerance
            if not keep:
                (model / int8_file).unlink()
            files.append(int8_file if keep else fp32_file)
            quantized.append(keep)
            rows.append({"member": i, "val_uar_fp32": before, "val_uar_int8": after, "quantized": keep})
            update(i + 1, len(ens.runners))
    manifest["onnx_int8"] = {
        "files": files,
        "sha256": [sha256_file(model / f) for f in files],
        "quantized": quantized,
        "tolerance": tolerance,
        "calibration": f"{len(calib.labels)} training images, per-channel int8 weights, MinMax activations",
        "members": rows,
    }
    int8 = Ensemble([], manifest, onnx_runners(model, manifest, threads, int8=True), INT8)

    def ensemble_uar(e) -> float:  # weights, TTA views and calibration included
        return float(summarize(labels, e.predict_probs(lambda s: val_images[s]).argmax(1), k)["uar"])

    summary = {"val_uar_fp32": ensemble_uar(ens), "val_uar_int8": ensemble_uar(int8)}
    manifest["onnx_int8"]["ensemble"] = summary
    (model / MANIFEST).write_text(json.dumps(manifest, indent=2))  # once, all of it
    n_calib = len(calib.labels)
    return {"members": rows, "ensemble": summary, "tolerance": tolerance, "calibration_images": n_calib}
