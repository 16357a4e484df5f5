"""Retrain ensemble members, one directory each, so a crashed finalize resumes where it stopped.

A member directory holds ``model.safetensors`` and the predictions it made, and last of all
``member.json``: a member is finished exactly when its record exists. Rerunning finalize with the
same ``--out`` reuses every finished member whose fingerprint (config, stage, the image lists it
was trained and scored on) still matches, and retrains only the rest. A finished member whose
weights file is missing or does not match its recorded hash is an error, never silently redone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import TrialConfig, build_config, comparable_config
from ..data import decode
from ..data.decode import SplitArrays
from ..data.manifest import Manifest
from ..data.views import packed_split
from ..ensemble import tta
from ..ensemble.weights import atomic_write, load_weights, save_weights, verify_weights
from ..errors import FersearchError, ModelError
from ..models import FERModel, create_model, without_finetune_source
from ..runtime import resolve_device
from ..train import fit
from ..train.checkpoint import load_checkpoint, unprefixed
from ..train.evaluate import predict_views
from .select import MemberSpec

WEIGHTS = "model.safetensors"
RECORD = "member.json"


def split_arrays(manifest: Manifest, split: str, size: int) -> SplitArrays:
    """Every split finalize reads goes through here (and through ``decode.decode_split`` by
    attribute, so a test can watch the order of reads)."""
    return decode.decode_split(manifest, split, size)


class Splits:
    """The dataset's splits at a given image size, for one finalize run. The test split is
    refused until ``seal()``: every choice is made on train and validation first."""

    def __init__(self, manifest: Manifest):
        self.manifest, self.sealed = manifest, False

    def get(self, split: str, size: int) -> SplitArrays:
        if split == "test" and not self.sealed:
            raise RuntimeError("finalize asked for the test split before its choices were sealed")
        return split_arrays(self.manifest, split, size)

    def seal(self) -> None:
        """Every choice is fixed: from here on the test split may be read."""
        self.sealed = True


def fingerprint(config: TrialConfig, stage: str, splits: dict[str, list[str]]) -> str:
    payload = {"config": config.to_json_dict(), "stage": stage, "splits": splits}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def save_array(path: Path, arr: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    atomic_write(path, write)


def load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ModelError(f"saved predictions {str(path)!r} are missing; delete {str(path.parent)!r} to redo")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ModelError(
            f"saved predictions {str(path)!r} are unreadable ({exc}); delete its directory"
        ) from None


@dataclass
class TrainedMember:
    dir: Path
    record: dict

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def config(self) -> TrialConfig:
        return build_config(self.record["config"])

    def load_model(self, num_classes: int) -> FERModel:
        model = create_model(without_finetune_source(self.config), num_classes)  # its weights follow
        load_weights(model, self.dir / WEIGHTS, self.record["weights_sha256"], self.fix)
        return model.eval()

    @property
    def fix(self) -> str:
        return f"delete {str(self.dir)!r} and re-run finalize with the same --out to retrain this member"

    def predictions(self, name: str) -> np.ndarray:
        return load_array(self.dir / f"{name}.npy")


class MemberStore:
    """Finished members of one stage (``train``, ``trainval``, ``cv2of5``...) under ``root/stage``."""

    def __init__(self, root: Path, stage: str):
        self.root, self.stage = Path(root) / stage, stage

    def finished(self, spec: MemberSpec, fp: str) -> TrainedMember | None:
        d = self.root / spec.id
        rec_path = d / RECORD
        if not rec_path.is_file():
            return None  # never finished: whatever is in the directory is a crashed attempt
        try:
            record = json.loads(rec_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"member record {str(rec_path)!r} is not valid JSON ({exc}); delete {str(d)!r}"
            ) from None
        if record.get("fingerprint") != fp:
            raise ModelError(
                f"{str(d)!r} holds member {spec.id} trained on a different config or data split "
                f"(fingerprint {record.get('fingerprint')} != {fp}); use a new --out, or delete it"
            )
        member = TrainedMember(d, record)
        verify_weights(d / WEIGHTS, record.get("weights_sha256"), member.fix)
        return member

    def save(
        self,
        spec: MemberSpec,
        fp: str,
        model: torch.nn.Module,
        info: dict,
        predictions: dict[str, np.ndarray],
    ) -> TrainedMember:
        d = self.root / spec.id
        d.mkdir(parents=True, exist_ok=True)
        (d / RECORD).unlink(missing_ok=True)
        sha = save_weights(d / WEIGHTS, model)
        for name, arr in predictions.items():
            save_array(d / f"{name}.npy", arr)
        record = {
            "id": spec.id,
            "trial": spec.trial,
            "seed": spec.seed,
            "stage": self.stage,
            "fingerprint": fp,
            "search_val_uar": spec.search_val_uar,
            "config": spec.config.to_json_dict(),
            "weights_sha256": sha,
            **info,
        }
        atomic_write(d / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
        return TrainedMember(d, record)


MEMBER_INFO = ("best_epoch", "val_uar", "history", "seconds", "trial_weights")


def _trial_model(spec: MemberSpec, num_classes: int) -> tuple[torch.nn.Module, dict] | None:
    """The trial's own best model, when ``spec`` would train it again (``spec.trial_weights``)
    and the checkpoint holds exactly this config and data; None: train instead."""
    if spec.trial_weights is None:
        return None
    try:
        tensors, state = load_checkpoint(spec.trial_weights)
        stored = state.get("config") or {}
        same_data = stored.get("data") == spec.config.data.model_dump(mode="json")
        same = same_data and comparable_config(stored) == comparable_config(spec.config.to_json_dict())
        if state.get("kind") != "model" or not same:
            return None
        info = {
            "best_epoch": int(state["epoch"]) + 1,
            "val_uar": float(state["val_uar"]),
            "history": None,
            "seconds": 0.0,
            "trial_weights": spec.trial_weights,
        }
        model = create_model(without_finetune_source(spec.config), num_classes)  # its weights follow
        model.load_state_dict(unprefixed("model", tensors))
    except (FersearchError, RuntimeError, AttributeError, KeyError, TypeError, ValueError):
        return None  # unreadable, or not this config's: training again is the safe answer
    return model.to(resolve_device(spec.config.device)), info


def train_member(
    spec: MemberSpec,
    store: MemberStore,
    train: SplitArrays,
    held: SplitArrays,
    num_classes: int,
    keep: str,
    views: list[tta.View],
    on_epoch: Callable[[dict], None] | None = None,
    class_names: list[str] | None = None,
) -> TrainedMember:
    """Fit one member (or reuse it: finished earlier in ``store``, or the trial's own best
    weights when it would repeat the trial) and save its per-view predictions on ``held``.

    keep="best": ``held`` is a true validation split and picks the epoch; keep="last": the epoch
    count is fixed in ``spec.config`` and ``held`` only receives predictions.
    """
    fp = fingerprint(spec.config, store.stage, {"train": train.paths, "held": held.paths})
    done = store.finished(spec, fp)
    if done is not None and done.record.get("views") == [v.name for v in views]:
        return done
    reused = None if done is not None or keep != "best" else _trial_model(spec, num_classes)
    if done is not None:  # finished, but scored on other views: re-score, don't retrain
        model = done.load_model(num_classes).to(resolve_device(spec.config.device))
        info = {k: v for k, v in done.record.items() if k in MEMBER_INFO}
    elif reused is not None:
        model, info = reused
    else:
        t0 = time.perf_counter()
        result = fit(
            spec.config, train, held, num_classes, on_epoch=on_epoch, keep=keep, class_names=class_names
        )
        model = result.model
        info = {
            "best_epoch": result.best_epoch + 1,  # 1-based: the number of epochs trained to get there
            "val_uar": float(result.best_uar) if keep == "best" else None,
            "history": result.history,
            "seconds": time.perf_counter() - t0,
        }
    held_views = predict_views(model, packed_split(held, spec.config.fusion != "none"), views)
    info["views"] = [v.name for v in views]
    info["held_labels_sha256"] = hashlib.sha256(held.labels.tobytes()).hexdigest()[:16]
    return store.save(spec, fp, model, info, {"held_views": held_views})
