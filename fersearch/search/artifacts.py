"""Per-trial files the dashboard shows (checkpoint, confusion matrix, per-class recall).

Stored through ``optuna.artifacts``: a filesystem store on a shared volume by default
(``$FERSEARCH_ARTIFACTS``, else beside the embedded journal or in ``./.fersearch``), S3 when given ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from ..errors import InvalidArgument
from ..plots import confusion_png, recall_png
from .trial_state import default_artifacts_dir

ENV_VAR = "FERSEARCH_ARTIFACTS"


def artifact_location(spec: str | Path | None = None, storage_url: str | None = None) -> str:
    """--artifacts, else $FERSEARCH_ARTIFACTS, else beside an embedded journal / ./.fersearch.
    Checkpoints go under <location>/checkpoints, the dashboard's files under <location>/store."""
    return str(spec or os.environ.get(ENV_VAR) or default_artifacts_dir(storage_url))


def open_artifact_store(spec: str | Path | None = None, storage_url: str | None = None):
    where = artifact_location(spec, storage_url)
    if where.startswith("s3://"):
        try:
            import boto3
            from optuna.artifacts import Boto3ArtifactStore
        except ImportError:
            raise InvalidArgument(
                f"artifact store {where!r} needs boto3: `pip install boto3`, or use a directory"
            ) from None
        bucket = where.removeprefix("s3://").split("/", 1)[0]
        return Boto3ArtifactStore(bucket, client=boto3.client("s3"))
    path = Path(where) / "store"
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def upload_trial_files(store, trial: optuna.Trial, files: dict[str, Path]) -> dict[str, str]:
    """Upload each file under its given name (the dashboard shows the file name); returns
    name -> artifact id, also stored as ``artifact:<name>`` user attrs for lookup."""
    ids = {}
    with tempfile.TemporaryDirectory(prefix="fersearch-upload-") as tmp:
        for name, path in files.items():
            if path.name != name:  # e.g. best-1a2b3c4d.safetensors -> best.safetensors
                named = Path(tmp) / name
                try:
                    os.link(path, named)  # no copy on the same filesystem
                except OSError:
                    shutil.copyfile(path, named)
                path = named
            mimetype = "image/png" if path.suffix == ".png" else "application/octet-stream"
            ids[name] = upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
            )
            trial.set_user_attr(f"artifact:{name}", ids[name])
    return ids


def plot_trial_figures(
    confusion: list[list[int]], class_names: list[str], recall: list[float], out_dir: Path
) -> dict[str, Path]:
    """Confusion-matrix and per-class-recall PNGs for one trial's best validation epoch."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cm_path = out_dir / "confusion_matrix.png"
    cm_path.write_bytes(confusion_png(confusion, class_names, split="validation"))
    recall_path = out_dir / "per_class_recall.png"
    recall_path.write_bytes(recall_png(recall, class_names))
    return {"confusion_matrix.png": cm_path, "per_class_recall.png": recall_path}
