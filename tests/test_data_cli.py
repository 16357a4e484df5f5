"""Stratified k-fold, and the `data inspect`, `data prepare` and `synth` variants through the CLI."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fersearch.cli import main
from fersearch.data import read_dataset
from fersearch.data.splits import kfold_manifest, stratified_kfold
from fersearch.errors import DataError


def test_stratified_kfold_balances_every_class():
    labels = [0] * 23 + [1] * 7 + [2] * 3 + [3] * 50
    fold = stratified_kfold(labels, 5, seed=0)
    assert set(fold.tolist()) == set(range(5))
    for cls in range(4):
        per_fold = np.bincount(fold[np.asarray(labels) == cls], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert np.array_equal(fold, stratified_kfold(labels, 5, seed=0))
    assert not np.array_equal(fold, stratified_kfold(labels, 5, seed=1))
    with pytest.raises(DataError, match="k >= 2"):
        stratified_kfold(labels, 1, 0)


def test_kfold_manifest_partitions_train_and_keeps_test(tiny_data):
    m = read_dataset(tiny_data)
    folds = [kfold_manifest(m, 4, f, seed=0) for f in range(4)]
    vals = [set(r for r, _ in f.splits["val"]) for f in folds]
    everything = set(r for r, _ in m.splits["train"])
    assert set().union(*vals) == everything and sum(map(len, vals)) == len(everything)  # disjoint cover
    for f, val in zip(folds, vals):
        assert not val & set(r for r, _ in f.splits["train"])
        assert f.splits["test"] == m.splits["test"]
    with pytest.raises(DataError, match="fold must be in 0..3"):
        kfold_manifest(m, 4, 4)


def test_study_data_options_fold_crop_and_frames(tiny_data, tmp_path, capsys):
    """`create --folds K --fold F` stores the fold on the study; workers then validate on it."""
    from fersearch.config import DataConfig
    from fersearch.data import load_manifest
    from fersearch.search.study import load_study

    storage = str(tmp_path / "journal.log")
    argv = ["create", "--study", "f", "--data", str(tiny_data), "--space", "scratch", "--storage", storage]
    argv += ["--folds", "4", "--fold", "2"]
    assert main(argv) == 0
    cfg = load_study("f", storage)[1].data
    assert (cfg.folds, cfg.fold, cfg.crop, cfg.frames) == (4, 2, "face", 1)
    expected = kfold_manifest(read_dataset(tiny_data), 4, 2, seed=0)
    assert load_manifest(cfg).splits["val"] == expected.splits["val"]
    assert "fold 2 of 4" in capsys.readouterr().err

    assert main([*argv[:-4], "--study", "g", "--folds", "4", "--fold", "4"]) == 2
    assert "fold must be in 0..3" in capsys.readouterr().err
    assert main([*argv[:-4], "--study", "g", "--crop", "tight"]) == 2
    assert "crop" in capsys.readouterr().err
    with pytest.raises(DataError, match="frames=4 needs a clip dataset"):
        load_manifest(DataConfig(root=str(tiny_data), frames=4))


def test_data_inspect_and_prepare(tiny_data, tmp_path, capsys):
    import shutil

    root = tmp_path / "raf"
    shutil.copytree(tiny_data, root, ignore=shutil.ignore_patterns("fersearch_*"))
    (root / "Image/aligned/train_00002_aligned.jpg").write_bytes(b"garbage")
    assert main(["data", "inspect", str(root)]) == 0
    out = capsys.readouterr().err
    assert "layout: rafdb" in out and "Happiness" in out and "imbalance" in out
    assert (
        "1 of 600 files are missing or unreadable" in out and "train_00002_aligned.jpg: not an image" in out
    )
    assert main(["data", "prepare", str(root), "--size", "24"]) == 0
    out = capsys.readouterr().err
    assert "1 skipped" in out and "train-24px-face-" in out
    assert len(list((root / "fersearch_cache").glob("*-24px-*.json"))) == 3  # train, val, test
    assert main(["data", "inspect", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_synth_compound14_and_context_through_the_cli(tmp_path, capsys):
    assert (
        main(["synth", "--out", str(tmp_path / "ce"), "--classes", "compound14", "--n", "56", "--size", "32"])
        == 0
    )
    m = read_dataset(tmp_path / "ce")
    assert m.format == "rafce" and m.num_classes == 14 and m.au_names
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "ctx"),
                "--context",
                "--n",
                "20",
                "--size",
                "32",
                "--frames",
                "2",
            ]
        )
        == 0
    )
    m = read_dataset(tmp_path / "ctx")
    assert m.format == "raer" and Counter(len(c.frames) for c in m.clips.values()) == {2: 20}
    assert main(["synth", "--out", str(tmp_path / "x"), "--classes", "compound7"]) == 2
    assert "--classes must be one of basic7, compound14" in capsys.readouterr().err
