"""The decode-once cache: one build for two processes, rebuilt on change, atomic, shared."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fersearch.data import read_dataset, with_validation
from fersearch.data.cache import fingerprint, load_split
from fersearch.data.decode import clear_memo, decode_split
from fersearch.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]

# Waits for a "go" file so both processes call load_split at the same moment, then reports
# whether it decoded anything itself (progress is only called by the builder) and a hash of
# the arrays it got.
WORKER = """
import hashlib, json, os, sys, time
from pathlib import Path
from fersearch.data import read_dataset
from fersearch.data.cache import load_split
root, go = Path(sys.argv[1]), Path(sys.argv[2])
m = read_dataset(root)
Path(str(go) + "." + str(os.getpid()) + ".ready").touch()
while not go.exists():
    time.sleep(0.005)
calls = []
arrays = load_split(m, "train", 40, progress=lambda d, t: calls.append(d))
digest = hashlib.sha256(arrays.images.tobytes() + arrays.labels.tobytes()).hexdigest()
print(json.dumps({"built": bool(calls), "digest": digest, "file": str(arrays.cache_file)}))
"""


@pytest.fixture
def small_data(tmp_path) -> Path:
    root = tmp_path / "raf"
    generate(root, n=160, size=48, seed=1)
    return root


def test_two_processes_build_once_and_get_identical_arrays(small_data, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(small_data), str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.*.ready"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both processes are waiting: release them together
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["built"] for r in results) == [False, True]  # exactly one built
    assert results[0]["digest"] == results[1]["digest"] and results[0]["file"] == results[1]["file"]
    cache = small_data / "fersearch_cache"
    assert len(list(cache.glob("train-40px-*.json"))) == 1
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]  # no temporary left behind
    # and this process, a third, reads the same bytes
    mine = load_split(read_dataset(small_data), "train", 40)
    assert hashlib.sha256(mine.images.tobytes() + mine.labels.tobytes()).hexdigest() == results[0]["digest"]


def test_rebuilt_when_the_source_changes(small_data):
    m = read_dataset(small_data)
    first = load_split(m, "train", 32)
    old_file = first.cache_file
    before = np.array(first.images[0])
    target = small_data / m.splits["train"][0][0]
    target.write_bytes((small_data / m.splits["train"][1][0]).read_bytes())  # replace image 0 by 1
    calls = []
    second = load_split(m, "train", 32, progress=lambda d, t: calls.append(d))
    assert calls and second.cache_file != old_file
    assert not old_file.exists()  # the stale cache is removed
    assert np.array_equal(second.images[0], second.images[1]) and not np.array_equal(second.images[0], before)
    calls.clear()
    load_split(m, "train", 32, progress=lambda d, t: calls.append(d))
    assert not calls  # unchanged source: no rebuild


def test_fingerprint_depends_on_size_crop_and_labels(small_data):
    m = read_dataset(small_data)
    base = fingerprint(m, "train", 32)
    assert fingerprint(m, "train", 32) == base
    assert fingerprint(m, "train", 48) != base
    assert fingerprint(m, "train", 32, crop="full") != base
    relabelled = m.derive({**m.splits, "train": [(r, (lab + 1) % 7) for r, lab in m.splits["train"]]})
    assert fingerprint(relabelled, "train", 32) != base


def test_incomplete_build_is_not_used(small_data):
    """Data renamed into place but no metadata (a crash in between): the cache is rebuilt."""
    m = read_dataset(small_data)
    arrays = load_split(m, "train", 32)
    meta = arrays.cache_file.with_suffix(".json")
    meta.unlink()
    calls = []
    again = load_split(m, "train", 32, progress=lambda d, t: calls.append(d))
    assert calls and meta.exists() and np.array_equal(again.images, arrays.images)


def test_mapped_read_only_on_disk(small_data):
    m = read_dataset(small_data)
    arrays = load_split(m, "train", 32)
    assert isinstance(arrays.images, np.memmap)
    on_disk = arrays.cache_file.read_bytes()
    arrays.images[0] = 0  # copy-on-write: this process's view only
    assert arrays.cache_file.read_bytes() == on_disk
    assert not np.all(load_split(m, "train", 32).images[0] == 0)


def test_worker_keeps_the_dataset_across_trials(small_data):
    clear_memo()
    m = with_validation(read_dataset(small_data), 0.1, 0)
    a = decode_split(m, "train", 32)
    b = decode_split(m, "train", 32)
    assert a is b
    assert decode_split(m, "val", 32) is not a
    clear_memo()


def test_cache_dir_override(small_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FERSEARCH_CACHE_DIR", str(tmp_path / "elsewhere"))
    arrays = load_split(read_dataset(small_data), "train", 32)
    assert str(arrays.cache_file).startswith(str(tmp_path / "elsewhere"))


def test_different_sample_lists_of_a_split_coexist(small_data):
    """k-fold folds (or subsets) of one split get their own caches and do not evict each other."""
    from fersearch.data.splits import kfold_manifest

    m = read_dataset(small_data)
    folds = [kfold_manifest(m, 2, f) for f in (0, 1)]
    first = [load_split(f, "train", 24).cache_file for f in folds]
    calls = []
    again = [load_split(f, "train", 24, progress=lambda d, t: calls.append(d)).cache_file for f in folds]
    assert first == again and first[0] != first[1] and all(p.exists() for p in first)
    assert not calls  # neither fold was rebuilt
