"""Synthetic FER faces: RAF-DB layout, counts, determinism, AU semantics, argument errors."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fersearch.data import synthetic as synth
from fersearch.errors import FersearchError, InvalidArgument

LINE = re.compile(r"^(train_\d{5}|test_\d{4})\.jpg [1-7]$")


def read_labels(root: Path) -> list[tuple[str, int]]:
    lines = (root / synth.LABEL_FILE).read_text().splitlines()
    bad = [line for line in lines if not LINE.match(line)]
    assert not bad, f"lines not in RAF-DB format: {bad[:3]}"
    return [(name, int(label)) for name, label in (line.split(" ") for line in lines)]


def disk_counts(labels: list[tuple[str, int]], split: str) -> list[int]:
    counts = Counter(label for name, label in labels if name.startswith(split + "_"))
    return [counts.get(k, 0) for k in range(1, len(synth.EMOTIONS) + 1)]


def read_au(root: Path) -> tuple[list[str], list[list[str]]]:
    with open(root / synth.AU_FILE, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synth.SynthSummary:
    root = tmp_path_factory.mktemp("synth") / "rafdb"
    return synth.generate(root, n=300, size=64, seed=3, label_noise=0.0, preview=True)


# --------------------------------------------------------------------------------------------
# Counts


def test_full_size_is_rafdb():
    counts = synth.split_counts(None)
    assert counts == {"train": list(synth.RAFDB_TRAIN_COUNTS), "test": list(synth.RAFDB_TEST_COUNTS)}
    assert sum(counts["train"]) == 12271 and sum(counts["test"]) == 3068
    assert synth.split_counts(12271 + 3068) == counts  # scaling to the full size is exact


@pytest.mark.parametrize("n", [synth.MIN_IMAGES, 29, 100, 300, 1001, 5000])
def test_scaled_counts_are_exact_and_proportional(n):
    counts = synth.split_counts(n)
    assert sum(counts["train"]) + sum(counts["test"]) == n
    for split, base in (("train", synth.RAFDB_TRAIN_COUNTS), ("test", synth.RAFDB_TEST_COUNTS)):
        got = np.array(counts[split])
        assert got.min() >= synth.MIN_PER_CLASS
        order = np.argsort(base)
        assert np.all(np.diff(got[order]) >= 0)  # a bigger RAF-DB class never gets fewer images
        quota = np.array(base) * got.sum() / sum(base)
        if quota.min() >= synth.MIN_PER_CLASS:  # no floor needed: plain largest remainder
            assert np.all(np.abs(got - quota) < 1)
    if n >= 1000:
        assert abs(sum(counts["test"]) / n - 3068 / 15339) < 0.002


def test_counts_on_disk_match_summary(dataset):
    labels = read_labels(dataset.root)
    assert dataset.counts == synth.split_counts(300)
    for split in synth.SPLITS:
        assert disk_counts(labels, split) == dataset.counts[split]


# --------------------------------------------------------------------------------------------
# Layout


def test_label_file_is_rafdb_layout(dataset):
    labels = read_labels(dataset.root)
    n_train = sum(dataset.counts["train"])
    names = [name for name, _ in labels]
    assert names[:n_train] == [f"train_{i:05d}.jpg" for i in range(1, n_train + 1)]
    assert names[n_train:] == [f"test_{i:04d}.jpg" for i in range(1, len(names) - n_train + 1)]
    on_disk = sorted(p.name for p in (dataset.root / synth.IMAGE_DIR).iterdir())
    assert on_disk == sorted(name.replace(".jpg", "_aligned.jpg") for name in names)


def test_images_open_at_the_right_size(dataset):
    for path in (dataset.root / synth.IMAGE_DIR).iterdir():
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 64), path


def test_au_csv_has_one_row_per_image(dataset):
    header, rows = read_au(dataset.root)
    assert header == ["image", "label", *synth.AU_NAMES, "intensity"]
    assert [(row[0], int(row[1])) for row in rows] == read_labels(dataset.root)
    values = np.array([row[2:] for row in rows], float)
    assert values.min() >= 0 and values.max() <= 1
    assert all(re.fullmatch(r"\d\.\d{3}", v) for v in rows[0][2:])


def test_marker_describes_the_generator(dataset):
    meta = json.loads((dataset.root / synth.MARKER).read_text())
    assert meta["generator"] == synth.GENERATOR and meta["complete"] is True
    assert (meta["seed"], meta["n"], meta["size"], meta["label_noise"]) == (3, 300, 64, 0.0)
    assert meta["counts"] == dataset.counts and meta["version"] == synth.GENERATOR_VERSION


def test_preview_is_a_contact_sheet(dataset):
    assert dataset.preview == dataset.root / "preview.png"
    with Image.open(dataset.preview) as img:
        width, height = img.size
    assert width >= 8 * 64 and height >= len(synth.EMOTIONS) * 64
    assert width <= 2000 and height <= 2000


# --------------------------------------------------------------------------------------------
# Semantics: the expression is in the AUs drawn


def test_au_intensities_follow_the_emotion(dataset):
    header, rows = read_au(dataset.root)
    labels = np.array([int(row[1]) - 1 for row in rows])
    values = np.array([row[2:] for row in rows], float)

    def mean(au: str, emotion: str) -> float:
        column = header.index(next(name for name in synth.AU_NAMES if name.startswith(au + "_")))
        return values[labels == synth.EMOTIONS.index(emotion), column - 2].mean()

    assert mean("AU12", "Happiness") > mean("AU12", "Neutral") + 0.3
    assert mean("AU6", "Happiness") > mean("AU6", "Sadness") + 0.2
    assert mean("AU26", "Surprise") > mean("AU26", "Sadness") + 0.2
    assert mean("AU1", "Surprise") > mean("AU1", "Anger") + 0.3
    assert mean("AU20", "Fear") > mean("AU20", "Surprise") + 0.2  # what tells fear from surprise
    assert mean("AU9", "Disgust") > mean("AU9", "Anger") + 0.3
    assert mean("AU4", "Anger") > mean("AU4", "Happiness") + 0.3
    assert mean("AU15", "Sadness") > mean("AU15", "Neutral") + 0.3
    intensity = values[:, -1]
    assert np.all(intensity[labels == synth.EMOTIONS.index("Neutral")] == 0)
    expressive = intensity[labels != synth.EMOTIONS.index("Neutral")]
    assert expressive.min() < 0.25 and expressive.max() > 0.9  # weak and strong both occur


def test_render_face_returns_image_and_aus():
    img, au, intensity = synth.render_face(3, 48, np.random.default_rng(0))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert au.shape == (len(synth.AU_NAMES),) and 0 <= au.min() and au.max() <= 1
    assert 0 < intensity <= 1


# --------------------------------------------------------------------------------------------
# Determinism and label noise


def image_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / synth.IMAGE_DIR).iterdir())}


def test_same_seed_gives_identical_files(tmp_path):
    a = synth.generate(tmp_path / "a", n=40, size=48, seed=11)
    b = synth.generate(tmp_path / "b", n=40, size=48, seed=11)
    c = synth.generate(tmp_path / "c", n=40, size=48, seed=12)
    for name in (synth.LABEL_FILE, synth.AU_FILE, synth.MARKER):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    assert image_bytes(a.root) == image_bytes(b.root)
    images_c = image_bytes(c.root)
    assert all(images_c[name] != data for name, data in image_bytes(a.root).items())
    assert (a.root / synth.LABEL_FILE).read_bytes() != (c.root / synth.LABEL_FILE).read_bytes()


def test_label_noise_flips_labels_but_keeps_counts_and_faces(tmp_path):
    clean = synth.generate(tmp_path / "clean", n=200, size=32, seed=5, label_noise=0.0)
    noisy = synth.generate(tmp_path / "noisy", n=200, size=32, seed=5, label_noise=0.25)
    assert image_bytes(clean.root) == image_bytes(noisy.root)  # same faces, only labels differ
    clean_labels, noisy_labels = read_labels(clean.root), read_labels(noisy.root)
    for split in synth.SPLITS:
        assert disk_counts(noisy_labels, split) == disk_counts(clean_labels, split)
        pairs = [(c, n) for (name, c), (_, n) in zip(clean_labels, noisy_labels) if name.startswith(split)]
        flipped = sum(c != n for c, n in pairs)
        assert flipped == round(0.25 * len(pairs))


# --------------------------------------------------------------------------------------------
# Output directory and arguments


def test_overwrites_a_previous_synthetic_dataset(tmp_path):
    root = tmp_path / "data"
    synth.generate(root, n=60, size=32, preview=True)
    summary = synth.generate(root, n=30, size=32)
    assert len(list((root / synth.IMAGE_DIR).iterdir())) == 30
    assert len(read_labels(root)) == 30 and summary.preview is None
    assert not (root / "preview.png").exists()


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not empty"):
        synth.generate(tmp_path, n=30)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(InvalidArgument, match="is a file"):
        synth.generate(tmp_path / "notes.txt", n=30)


@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"n": 10}, "10"),
        ({"n": synth.MIN_IMAGES - 1}, str(synth.MIN_IMAGES - 1)),
        ({"n": 100.5}, "100.5"),
        ({"n": True}, "True"),
        ({"size": 16}, "16"),
        ({"size": 4096}, "4096"),
        ({"size": 64.0}, "64.0"),
        ({"label_noise": 1.0}, "1.0"),
        ({"label_noise": -0.1}, "-0.1"),
        ({"label_noise": "0.1"}, "'0.1'"),
        ({"seed": -1}, "-1"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, received):
    with pytest.raises(InvalidArgument) as err:
        synth.generate(tmp_path / "out", **kwargs)
    assert isinstance(err.value, FersearchError)
    assert f"got {received}" in str(err.value)
    assert not (tmp_path / "out").exists()  # validated before touching the disk


def test_progress_and_speed(tmp_path):
    calls: list[tuple[int, int]] = []
    start = time.perf_counter()
    synth.generate(
        tmp_path / "speed", n=400, size=100, progress=lambda done, total: calls.append((done, total))
    )
    rate = 400 / (time.perf_counter() - start)
    print(f"\nsynthetic generation: {rate:.0f} images/s at 100 px on one core")
    assert calls == [(i, 400) for i in range(1, 401)]
    assert rate > 50  # a floor for gross regressions only; shared CI machines vary a lot


# --------------------------------------------------------------------------------------------
# Difficulty


def test_standard_difficulty_is_the_generator_as_it_was():
    # sha256 of 14 faces (pixels, AUs, intensity) rendered before the difficulty knob existed:
    # the default must keep writing the same data. (A different OpenCV build can change
    # anti-aliased pixels; then regenerate this with the code of the commit that added it.)
    digest = hashlib.sha256()
    for i in range(14):
        img, au, intensity = synth.render_face(i % 7, 32, np.random.default_rng([0, 1, 2, i]))
        digest.update(img.tobytes() + au.tobytes() + np.float64(intensity).tobytes())
    assert digest.hexdigest() == "ab6540fd7d1123c486462f5e1a2a8bc74e2f5e99ee3fee2e12af7f6db4b42f0e"


def pixel_probe_uar(root: Path) -> float:
    """UAR on the test split of a class-balanced ridge regression on raw pixels fitted on train:
    how much of the label a linear model can read straight off the images."""
    names, labels = zip(*read_labels(root))
    x = (
        np.stack(
            [
                np.asarray(Image.open(root / synth.IMAGE_DIR / n.replace(".jpg", "_aligned.jpg")))
                for n in names
            ]
        ).reshape(len(names), -1)
        / 255.0
    )
    y = np.array(labels) - 1
    train = np.array([n.startswith("train_") for n in names])
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-3
    x = (x - mu) / sd
    k = len(synth.EMOTIONS)
    w = np.sqrt(1.0 / np.bincount(y[train], minlength=k)[y[train]])[:, None]  # balance classes
    a, t = x[train] * w, np.eye(k)[y[train]] * w
    coef = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ t)
    pred = (x[~train] @ coef).argmax(1)
    return float(np.mean([np.mean(pred[y[~train] == c] == c) for c in range(k)]))


def test_easy_is_learnably_easier_and_hard_is_not(tmp_path):
    uar = {
        d: pixel_probe_uar(synth.generate(tmp_path / d, n=900, size=32, seed=1, difficulty=d).root)
        for d in synth.DIFFICULTIES
    }
    print(f"\npixel ridge probe, test UAR (chance 1/7 = 0.14): {uar}")
    assert uar["easy"] > uar["standard"] + 0.25
    assert uar["hard"] <= uar["standard"] + 0.05


def test_difficulty_is_recorded_and_checked(tmp_path):
    easy = synth.generate(tmp_path / "easy", n=30, size=32, label_noise=0.0, difficulty="easy")
    assert json.loads((easy.root / synth.MARKER).read_text())["difficulty"] == "easy"
    standard = synth.generate(tmp_path / "standard", n=30, size=32)
    assert "difficulty" not in json.loads((standard.root / synth.MARKER).read_text())
    assert image_bytes(easy.root) != image_bytes(standard.root)
    _, au_easy = read_au(easy.root)
    assert min(float(row[-1]) for row in au_easy if row[1] != "7") >= 0.7  # strong expressions only
    with pytest.raises(InvalidArgument, match="difficulty must be one of easy, standard, hard; got 'medium'"):
        synth.generate(tmp_path / "bad", n=30, difficulty="medium")
    assert not (tmp_path / "bad").exists()


def test_difficulty_through_the_cli(tmp_path, capsys):
    from fersearch.cli import main

    out = tmp_path / "easy"
    assert main(["synth", "--out", str(out), "--n", "30", "--size", "32", "--difficulty", "easy"]) == 0
    assert json.loads((out / synth.MARKER).read_text())["difficulty"] == "easy"
    bad = ["synth", "--out", str(tmp_path / "x"), "--n", "60", "--size", "32", "--classes", "compound14"]
    assert main([*bad, "--difficulty", "easy"]) == 2
    assert "--difficulty easy applies to the basic7 faces only" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "y"), "--n", "30", "--difficulty", "trivial"]) == 2
    assert "difficulty must be one of easy, standard, hard; got 'trivial'" in capsys.readouterr().err
