"""finalize: retrain the top-K trials, ensemble them, evaluate once on test, export, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import build_config
from ..data import load_manifest
from ..data.decode import decode_split
from ..errors import InvalidArgument
from ..metrics import summarize
from ..models import preprocess_for
from ..search.study import load_study, settings
from ..train import fit, predict_probs
from ..version import code_version
from .export import save_ensemble
from .report import metrics_block, write_report
from .select import top_trials


def finalize(
    study_name: str,
    top: int,
    out: str | Path,
    storage_url: str | None = None,
    console: Console | None = None,
) -> dict[str, Path]:
    if top < 1:
        raise InvalidArgument(f"--top must be at least 1 (got {top})")
    console = console or Console(stderr=True)
    out = Path(out)
    study = load_study(study_name, storage_url)
    cfg = settings(study)
    chosen = top_trials(study, top)
    if len(chosen) < top:
        console.print(f"[yellow]only {len(chosen)} distinct complete trial(s); using them all[/]")
    manifest = load_manifest(cfg.data)
    n_cls = manifest.num_classes

    # 1. Retrain every member on train, selecting its epoch on validation. No test data yet.
    members, val_probs = [], []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        overall = progress.add_task("finalize: retrain members", total=len(chosen))
        for trial in chosen:
            config = build_config(trial.user_attrs["config"])
            size = preprocess_for(config)["image_size"]
            train = decode_split(manifest, "train", size)
            val = decode_split(manifest, "val", size)
            task = progress.add_task(f"  trial {trial.number}: epoch", total=config.epochs)
            result = fit(config, train, val, n_cls, on_epoch=lambda rec, t=task: progress.advance(t))
            progress.remove_task(task)
            members.append(
                (
                    result.model,
                    {
                        "trial": trial.number,
                        "search_val_uar": float(trial.value),
                        "val_uar": float(result.best_uar),
                        "best_epoch": result.best_epoch + 1,
                        "config": config.to_json_dict(),
                    },
                )
            )
            val_probs.append(result.best_val_probs)
            progress.advance(overall)

    weights = [1.0] * len(members)
    val_labels = decode_split(manifest, "val", members[0][0].preprocess["image_size"]).labels
    ens_val = np.mean(val_probs, axis=0)

    # 2. The ensemble is fixed now. Read the test split, once, for the report.
    test_probs = []
    for model, _ in members:
        test = decode_split(manifest, "test", model.preprocess["image_size"])
        test_probs.append(
            predict_probs(model, test.images, model.preprocess, next(model.parameters()).device)
        )
    test_labels = test.labels
    ens_test = np.mean(test_probs, axis=0)

    out.mkdir(parents=True, exist_ok=True)
    ensemble_dir = out / "ensemble"
    save_ensemble(ensemble_dir, members, list(manifest.class_names), weights)
    np.savez_compressed(
        out / "predictions.npz",
        val_labels=val_labels,
        val_probs=ens_val,
        member_val_probs=np.stack(val_probs),
        test_labels=test_labels,
        test_probs=ens_test,
        member_test_probs=np.stack(test_probs),
    )
    class_names = list(manifest.class_names)
    for (_, info), p in zip(members, test_probs):
        info["test_uar"] = summarize(test_labels, p.argmax(1), n_cls)["uar"]
    report = {
        "study": study_name,
        "class_names": class_names,
        "data": cfg.data.model_dump(mode="json"),
        "dataset": {
            "root": str(manifest.root),
            "format": manifest.format,
            "counts": {s: manifest.counts(s) for s in ("train", "val", "test")},
        },
        "validation": metrics_block(val_labels, ens_val, class_names),
        "test": metrics_block(test_labels, ens_test, class_names),
        "members": [info for _, info in members],
        "weights": weights,
        "ensemble_dir": str(ensemble_dir),
        "code_version": code_version(),
    }
    paths = write_report(out, report)
    paths["ensemble"] = ensemble_dir
    paths["predictions"] = out / "predictions.npz"
    return paths
