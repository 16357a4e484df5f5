"""evaluate: an exported ensemble on any dataset in any supported layout, classes matched by
canonical name (class_map.py), scored and reported as finalize reports its test split.

The ensemble is run exactly as ``predict`` runs it (its members, TTA views, weights and
calibration), on the split decoded as its members' study decoded data (crop policy, frames).
Pointed at the dataset it was trained on, it reproduces finalize's test figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from ..config import DataConfig, build_config
from ..data import load_manifest, read_dataset
from ..data.decode import decode_split
from ..data.manifest import Manifest
from ..data.views import packed_split
from ..ensemble import Ensemble, load_ensemble
from ..errors import DataError, InvalidArgument, one_of
from ..metrics import summarize
from ..progress import bar
from .bootstrap import bootstrap
from .class_map import ClassMap, build_class_map
from .evaluate_report import build_evaluation_report, write_evaluation_report
from .report import most_confused

SPLITS = ("train", "val", "test")
CHUNK = 256  # images per prediction call: one progress step, bounded memory for TTA views


@dataclass
class Predictions:
    refs: list[str]
    labels: np.ndarray  # (N,) data class per image
    probs: np.ndarray  # (N, K) the ensemble's output over its own classes
    skipped: list[str]


def evaluate(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    format: str = "auto",
    split: str = "test",
    restrict_to_data: bool = False,
    compound_to_basic: bool = False,
    backend: str = "torch",
    threads: int | None = None,
    console: Console | None = None,
) -> dict[str, Path]:
    """restrict_to_data: the model chooses among the data's classes only (an 8-class model on
    7-class data); compound_to_basic: compound classes scored by their basic components."""
    if split not in SPLITS:
        raise InvalidArgument(f"--split: {one_of(split, SPLITS)}")
    console = console or Console(stderr=True)
    ens = load_ensemble(model, backend=backend, threads=threads)
    manifest = dataset_for(ens, data, format, split)
    cmap = build_class_map(
        ens.class_names,
        ens.canonical_names,
        list(manifest.class_names),
        list(manifest.canonical_names),
        compound_to_basic,
    )
    pred = _predict(ens, manifest, split, console)
    probs = restrict(pred.probs, cmap.model_in_data) if restrict_to_data else pred.probs
    scores = score(pred.labels, probs, cmap)
    options = {"restrict_to_data": restrict_to_data, "compound_to_basic": compound_to_basic}
    report = build_evaluation_report(ens, Path(model), manifest, split, cmap, scores, options, pred.skipped)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_evaluation_report(out, report)
    paths["predictions"] = out / "predictions.npz"
    np.savez_compressed(
        paths["predictions"],
        labels=pred.labels,
        probs=probs,
        refs=np.array(pred.refs),
        data_class_names=np.array(manifest.class_names),
        model_class_names=np.array(ens.class_names),
    )
    return paths


def dataset_for(ens: Ensemble, data, format: str, split: str) -> Manifest:
    """The dataset as the members' study read its data: their crop policy and frames, and for
    train and val the same validation carve (a test split never depends on it)."""
    members = ens.manifest["members"]
    study = build_config(members[0]["config"]).data
    cfg = DataConfig.model_validate({**study.model_dump(), "root": str(data), "format": format})
    if split == "test":
        manifest = read_dataset(cfg.root, cfg.format)
        if cfg.frames > 1 and manifest.clips is None:
            raise DataError(
                f"the ensemble's members read {cfg.frames} frames per clip; {str(cfg.root)!r} is "
                f"{manifest.format}, whose samples are single images: evaluate it on a clip dataset "
                f"(raer layout)"
            )
        manifest.crop, manifest.frames = cfg.crop, cfg.frames
    else:
        manifest = load_manifest(cfg)
    if not manifest.splits.get(split):
        have = [s for s in SPLITS if manifest.splits.get(s)]
        raise DataError(
            f"{str(cfg.root)!r} ({manifest.format}) has no {split} split; it has: {', '.join(have)}. "
            f"Choose one with --split"
        )
    return manifest


def decode_for(ens: Ensemble, manifest: Manifest, split: str, console: Console, what: str = "evaluate"):
    """The split decoded at every member's size: ({size: (N, S, S, 3V) uint8}, the split's
    arrays at the first size: labels, paths, skipped files)."""
    use_context = any(getattr(m, "fusion", None) is not None for m in ens.models)
    by_size = {}
    for size in ens.sizes:
        with bar(f"{what}: decoding {split} at {size} px", console) as update:
            by_size[size] = decode_split(manifest, split, size, progress=update)
    first = by_size[ens.sizes[0]]
    if any(a.paths != first.paths for a in by_size.values()):  # the same files skipped at every size
        raise DataError(f"the {split} split decoded to different images at different sizes; rerun {what}")
    return {s: packed_split(a, use_context) for s, a in by_size.items()}, first


def _predict(ens: Ensemble, manifest: Manifest, split: str, console: Console) -> Predictions:
    images, first = decode_for(ens, manifest, split, console)
    n = len(first.labels)
    parts = []
    with bar(f"evaluate: predicting {n} {split} images", console) as update:
        for start in range(0, n, CHUNK):
            parts.append(ens.predict_probs(lambda s, a=start: images[s][a : a + CHUNK]))
            update(min(start + CHUNK, n), n)
    probs = np.concatenate(parts) if parts else np.zeros((0, len(ens.class_names)), np.float32)
    return Predictions(list(first.paths), np.asarray(first.labels), probs, list(first.skipped))


def restrict(probs: np.ndarray, allowed: list[bool]) -> np.ndarray:
    """The probabilities renormalised over the allowed classes (the others set to 0)."""
    keep = np.asarray(allowed, dtype=bool)
    out = np.where(keep[None, :], probs, 0.0)
    return (out / np.maximum(out.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def score(labels: np.ndarray, probs: np.ndarray, cmap: ClassMap) -> dict:
    """The split's block of report.json: UAR, WAR and macro F1 over the classes that can be
    scored, per-class figures, the confusion matrix over the model's classes, and apart from
    them the data's classes the model does not know and its compound classes (when scored)."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    k = len(cmap.model_names)
    mapped = np.array([-1 if m is None else m for m in cmap.to_model], dtype=np.int64)[labels]
    shared = mapped >= 0
    # the model's view: every data class that is one of its outputs
    m = summarize(mapped[shared], preds[shared], k)
    shown = [i for i, inside in enumerate(cmap.model_shared) if inside]
    f1 = [m["per_class"]["f1"][i] for i in shown if np.isfinite(m["per_class"]["f1"][i])]
    block = {
        "uar": m["uar"],
        "war": m["war"],
        "macro_f1": float(np.mean(f1)) if f1 else None,
        "per_class": {
            cmap.model_names[i]: {
                key: _num(m["per_class"][key][i]) for key in ("precision", "recall", "f1", "support")
            }
            for i in shown
        },
        "confusion_matrix": m["confusion_matrix"],
        "most_confused": most_confused(m["confusion_matrix"], cmap.model_names),
        "n": int(shared.sum()),
    }
    hits, scored = _hits(labels, preds, mapped, cmap)
    if not scored.any():
        raise DataError(
            f"the split has no image of a class the model can be scored on "
            f"({', '.join(cmap.data_names[d] for d in cmap.scored)}); choose another --split or dataset"
        )
    if cmap.compound:
        block.update(_compound(labels, preds, hits, scored, cmap))
    block["bootstrap"] = _intervals(labels[scored], hits[scored], cmap, mapped[shared], preds[shared], k)
    block["unknown_classes"] = _predicted_as(labels, preds, cmap, cmap.unknown)
    block["model_classes_not_in_data"] = {
        cmap.model_names[i]: int(np.sum(preds[scored] == i))
        for i, inside in enumerate(cmap.model_in_data)
        if not inside
    }
    return block


def _hits(labels, preds, mapped, cmap: ClassMap) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether it counts as correct, and whether it is scored at all."""
    hits = (mapped >= 0) & (preds == mapped)
    scored = mapped >= 0
    for d, parts in cmap.compound.items():
        sel = labels == d
        hits[sel] = np.isin(preds[sel], parts)
        scored |= sel
    return hits, scored


def _compound(labels, preds, hits, scored, cmap: ClassMap) -> dict:
    """Compound classes scored by their components: a prediction of either is a hit, so each
    has a recall and joins UAR and WAR; precision and F1 are not defined for them."""
    rows = {}
    predicted = _predicted_as(labels, preds, cmap, sorted(cmap.compound))
    for d, (a, b) in sorted(cmap.compound.items()):
        sel = labels == d
        rows[cmap.data_names[d]] = {
            "recall": float(hits[sel].mean()) if sel.any() else None,
            "support": int(sel.sum()),
            "scored_as": [cmap.model_names[a], cmap.model_names[b]],
            "predicted_as": predicted[cmap.data_names[d]]["predicted_as"],
        }
    recalls = [hits[labels == d].mean() for d in cmap.scored if np.any(labels == d)]
    return {
        "uar": float(np.mean(recalls)),
        "war": float(hits[scored].mean()),
        "n": int(scored.sum()),
        "compound": rows,
    }


def _intervals(labels, hits, cmap: ClassMap, targets, preds, k: int) -> dict:
    """Percentile bootstrap 95% intervals: UAR and WAR over the scored data classes (a hit or a
    miss per image), macro F1 in the model's view when every model class is in the data."""
    order = {d: j for j, d in enumerate(cmap.scored)}
    t = np.array([order[d] for d in labels], dtype=np.int64)
    p = np.where(hits, t, len(order))  # a miss: an extra class no image belongs to
    data_view = bootstrap(t, {"ensemble": p}, len(order) + 1)
    out = {m: data_view["intervals"]["ensemble"][m] for m in ("uar", "war")}
    out["macro_f1"] = None
    if all(cmap.model_shared) and not cmap.compound:
        out["macro_f1"] = bootstrap(targets, {"ensemble": preds}, k)["intervals"]["ensemble"]["macro_f1"]
    return {"n_boot": data_view["n_boot"], "intervals": out}


def _predicted_as(labels, preds, cmap: ClassMap, classes: list[int]) -> dict:
    out = {}
    for d in classes:
        sel = labels == d
        counts = np.bincount(preds[sel], minlength=len(cmap.model_names))
        out[cmap.data_names[d]] = {
            "canonical": cmap.data_canonical[d],
            "n": int(sel.sum()),
            "predicted_as": {cmap.model_names[i]: int(c) for i, c in enumerate(counts) if c},
        }
    return out


def _num(x):
    x = float(x)
    return None if np.isnan(x) else x
