"""Readers: tiny fixture trees in every official layout, built here from synthetic faces, read
back with the right classes and counts; bad input (labels out of range, missing, truncated and
non-image files) handled as documented."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fersearch.data import read_dataset, with_validation
from fersearch.data.cache import load_split
from fersearch.data.formats import affectnet, caers, fer2013, ferplus, list_formats, rafce, rafdb_compound
from fersearch.data.formats.ferplus import majority_label
from fersearch.data.synthetic import render_face
from fersearch.errors import DataError


def face(seed: int, size: int = 40, label: int = 3) -> np.ndarray:
    return render_face(label % 7, size, np.random.default_rng(seed))[0]


def save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=92)


# --------------------------------------------------------------------------------------------
# RAF-DB basic and compound


def test_rafdb_basic_auto(tiny_data):
    m = read_dataset(tiny_data)
    assert m.format == "rafdb" and m.num_classes == 7
    assert sum(m.counts("train")) + sum(m.counts("test")) == 600
    assert m.splits["train"][0][0].startswith("Image/aligned/train_") and m.splits["train"][0][0].endswith(
        "_aligned.jpg"
    )


def write_rafdb(root: Path, rows: list[tuple[str, int]]) -> None:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel/list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in rows))
    for i, (name, lab) in enumerate(rows):
        save(root / "Image/aligned" / f"{name[:-4]}_aligned.jpg", face(i, label=lab))


def test_rafdb_compound_detected_by_its_labels(tmp_path):
    rows = [(f"train_{i:04d}.jpg", 1 + i % 11) for i in range(22)] + [
        (f"test_{i:04d}.jpg", 1 + i % 11) for i in range(11)
    ]
    write_rafdb(tmp_path, rows)
    m = read_dataset(tmp_path)
    assert m.format == "rafdb_compound"
    assert m.class_names == rafdb_compound.CLASS_NAMES and len(m.class_names) == 11
    assert m.counts("train") == [2] * 11 and m.counts("test") == [1] * 11
    arrays = load_split(m, "train", 32)
    assert arrays.images.shape == (22, 32, 32, 3)


def test_rafdb_originals_cropped_by_their_bounding_box(tmp_path):
    """--format rafdb_original: Image/original/<name> cropped to Annotation/boundingbox/ (x1 y1 x2 y2)."""
    rows = [(f"train_{i:04d}.jpg", 1 + i % 7) for i in range(7)] + [("test_0000.jpg", 4)]
    (tmp_path / "EmoLabel").mkdir(parents=True)
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in rows))
    for name, _ in rows:
        photo = np.zeros((120, 160, 3), np.uint8)
        photo[:, :, 1] = 200  # a green scene ...
        photo[30:90, 70:130] = (220, 20, 20)  # ... with a red face at x 70-130, y 30-90
        save(tmp_path / "Image/original" / name, photo)
        box = tmp_path / "Annotation/boundingbox" / f"{name[:-4]}_boundingbox.txt"
        box.parent.mkdir(parents=True, exist_ok=True)
        if name != "train_0006.jpg":  # one image without a box file: used whole
            box.write_text("70.0 30.0 130.0 90.0\n")
    assert read_dataset(tmp_path).format == "rafdb"  # auto-detection keeps the aligned reader
    m = read_dataset(tmp_path, "rafdb_original")
    assert m.format == "rafdb_original" and m.counts("train") == [1] * 7
    assert m.splits["train"][0][0] == "Image/original/train_0000.jpg"
    assert m.boxes["Image/original/train_0000.jpg"] == (70.0, 30.0, 60.0, 60.0)
    assert "Image/original/train_0006.jpg" not in m.boxes
    face_crop = load_split(m, "train", 24).images
    centre = face_crop[:6, 8:16, 8:16].reshape(-1, 3).mean(0)
    assert centre[0] > 180 and centre[1] < 60  # the face box (red)
    assert face_crop[6, :3, :3, 1].mean() > 150  # no box: the whole photo, green corner
    full = load_split(m, "train", 24, crop="full").images[:6, :3, :3].reshape(-1, 3).mean(0)
    assert full[1] > 150  # crop: full keeps the scene
    (tmp_path / "Annotation/boundingbox/train_0001_boundingbox.txt").write_text("70 30 oops\n")
    with pytest.raises(DataError, match="train_0001_boundingbox.txt.*x1 y1 x2 y2"):
        read_dataset(tmp_path, "rafdb_original")


def test_rafdb_original_without_originals_says_which_format_to_use(tmp_path):
    write_rafdb(tmp_path, [("train_0001.jpg", 1), ("test_0001.jpg", 2)])
    with pytest.raises(DataError, match="Image/original.*--format rafdb for Image/aligned"):
        read_dataset(tmp_path, "rafdb_original")


def test_label_out_of_range_names_file_and_line(tmp_path):
    write_rafdb(tmp_path, [("train_0001.jpg", 1), ("train_0002.jpg", 7), ("test_0001.jpg", 9)])
    # one stray label above 7 is a typo in a basic file, not a compound dataset
    with pytest.raises(DataError, match=r"list_patition_label\.txt:3: label 9 is out of range 1\.\.7"):
        read_dataset(tmp_path)
    rows = [(f"train_{i:04d}.jpg", 8 + i % 4) for i in range(4)] + [("test_0001.jpg", 12)]
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in rows))
    with pytest.raises(DataError, match=r"list_patition_label\.txt:5: label 12 is out of range 1\.\.11"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# RAF-CE (generated by the compound synthesiser, which writes the official layout)


def test_rafce_with_au_targets(tmp_path):
    from fersearch.data.synthetic_compound import generate_compound

    counts = generate_compound(tmp_path, n=56, size=32, seed=2)
    m = read_dataset(tmp_path)
    assert m.format == "rafce" and m.class_names == rafce.CLASS_NAMES and m.num_classes == 14
    for split in ("train", "val", "test"):
        assert m.counts(split) == counts[split]
    au = m.au_matrix("train")
    assert au.shape == (len(m.splits["train"]), len(m.au_names)) and set(np.unique(au)) <= {0, 1}
    # the AU targets are the file's: check one line by hand
    name, aus = (root_line := (tmp_path / rafce.AU_FILE).read_text().splitlines()[0].split())[0], root_line[1]
    ref = f"aligned/{name}"
    expected = set() if aus == "null" else {f"AU{a}" for a in aus.split("+")}
    assert {a for a, v in zip(m.au_names, m.au_targets[ref]) if v} == expected
    # AU targets survive the validation carve and reach the cached arrays, aligned by sample
    arrays = load_split(with_validation(m, 0.1, 0), "train", 32)
    rows = {ref: row for ref, row in zip(arrays.paths, arrays.au)}
    assert tuple(rows[ref]) == m.au_targets[ref]


def test_rafce_out_of_range_and_bad_au(tmp_path):
    (tmp_path / rafce.EMO_FILE).write_text("0001.jpg 3\n0002.jpg 14\n")
    (tmp_path / rafce.PART_FILE).write_text("0001.jpg 0\n0002.jpg 0\n")
    with pytest.raises(DataError, match=r"RAFCE_emolabel\.txt:2: label 14 is out of range 0\.\.13"):
        read_dataset(tmp_path)
    (tmp_path / rafce.EMO_FILE).write_text("0001.jpg 3\n0002.jpg 4\n")
    (tmp_path / rafce.AU_FILE).write_text("0001.jpg 1+2\n0002.jpg 1+x\n")
    with pytest.raises(DataError, match=r"RAFCE_AUlabel\.txt:2: cannot read action unit 'x'"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# AffectNet: CSV with face boxes, and images + annotations/*.npy


AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
)


def write_affectnet_csv(root: Path, codes_train: list[int], codes_val: list[int]) -> None:
    """Photos of 120x90 whose face box (x=50, y=20, 40x40) holds a pure red square: a crop to
    the box must come out red, the whole photo would not."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for file, codes in (("training.csv", codes_train), ("validation.csv", codes_val)):
        lines = [AFFECTNET_HEADER]
        for i, code in enumerate(codes):
            rel = f"{file[:3]}/{i}.png"
            photo = np.full((90, 120, 3), (20, 160, 40), np.uint8)
            photo[20:60, 50:90] = (230, 10, 10)
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo).save(path)
            lines.append(f'{rel},50,20,40,40,"1.0;2.0;3.0",{code},0.1,-0.2\n')
        (lists / file).write_text("".join(lines))


def test_affectnet_csv_modes_and_face_crop(tmp_path):
    train = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 1]
    write_affectnet_csv(tmp_path, train, [0, 1, 7, 10])
    m = read_dataset(tmp_path)
    assert m.format == "affectnet" and m.class_names == affectnet.CLASS_NAMES
    assert m.counts("train") == [1, 3, 1, 1, 1, 1, 1, 1] and m.counts("test") == [1, 1, 0, 0, 0, 0, 0, 1]
    assert any("No-Face" in note for note in m.notes)
    m7 = read_dataset(tmp_path, "affectnet7")
    assert m7.num_classes == 7 and m7.counts("train") == [1, 3, 1, 1, 1, 1, 1]
    assert any("Contempt" in note for note in m7.notes)
    # the official validation set is the test split; val is carved from train
    assert "val" not in m.splits
    arrays = load_split(m, "train", 24)
    centre = arrays.images[:, 8:16, 8:16].reshape(-1, 3).mean(0)
    assert centre[0] > 200 and centre[1] < 40  # the face box (red), not the green photo
    full = load_split(m, "train", 24, crop="full").images[:, :4, :4].reshape(-1, 3).mean(0)
    assert full[1] > 140 and full[0] < 40  # without the crop, the photo's green corner is there


def test_affectnet_csv_bad_code(tmp_path):
    write_affectnet_csv(tmp_path, [0, 11], [0])
    with pytest.raises(DataError, match=r"training\.csv:3: label 11 is out of range 0\.\.10"):
        read_dataset(tmp_path)


def test_affectnet_npy_layout(tmp_path):
    codes = {"train_set": [0, 1, 2, 7, 9, 3], "val_set": [4, 5, 6]}
    for folder, values in codes.items():
        for i, code in enumerate(values):
            save(tmp_path / folder / "images" / f"{i}.jpg", face(i))
            ann = tmp_path / folder / "annotations"
            ann.mkdir(parents=True, exist_ok=True)
            np.save(ann / f"{i}_exp.npy", np.array(str(code)))  # the release stores strings
            np.save(ann / f"{i}_val.npy", np.array("0.5"))
    m = read_dataset(tmp_path)
    assert m.format == "affectnet"
    assert m.counts("train") == [1, 1, 1, 1, 0, 0, 0, 1] and sum(m.counts("test")) == 3
    assert m.boxes is None  # already cropped
    assert load_split(m, "train", 32).images.shape == (5, 32, 32, 3)


def test_affectnet_npy_never_unpickles(tmp_path):
    ann = tmp_path / "train_set" / "annotations"
    ann.mkdir(parents=True)
    np.save(ann / "0_exp.npy", np.array([{"label": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="0_exp.npy: cannot read the expression"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# FER2013 and FERPlus


def write_fer2013(root: Path, rows: list[tuple[int, str]]) -> list[np.ndarray]:
    """Rows of (emotion, Usage) with random 48x48 grey pixels; returns the pixel arrays."""
    rng = np.random.default_rng(0)
    pixels = []
    with open(root / "fer2013.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for emotion, usage in rows:
            p = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            pixels.append(p)
            w.writerow([emotion, " ".join(map(str, p.ravel().tolist())), usage])
    return pixels


def test_fer2013_pixels_decoded_exactly(tmp_path):
    usages = ["Training"] * 14 + ["PublicTest"] * 7 + ["PrivateTest"] * 7
    pixels = write_fer2013(tmp_path, [(i % 7, u) for i, u in enumerate(usages)])
    m = read_dataset(tmp_path)
    assert m.format == "fer2013" and m.class_names == fer2013.CLASS_NAMES
    assert m.counts("train") == [2] * 7 and m.counts("val") == [1] * 7 and m.counts("test") == [1] * 7
    arrays = load_split(m, "train", 48)
    assert np.array_equal(arrays.images[5, :, :, 0], pixels[5]) and np.array_equal(
        arrays.images[5, :, :, 2], pixels[5]
    )


def test_fer2013_bad_rows(tmp_path):
    write_fer2013(tmp_path, [(0, "Training"), (9, "Training")])
    with pytest.raises(DataError, match=r"fer2013\.csv:3: label 9 is out of range 0\.\.6"):
        read_dataset(tmp_path)
    write_fer2013(tmp_path, [(0, "Training"), (1, "Holdout")])
    with pytest.raises(DataError, match=r"fer2013\.csv:3: Usage 'Holdout'"):
        read_dataset(tmp_path)


@pytest.mark.parametrize(
    "votes, expected",
    [
        # neutral happy surpr sad anger disg fear contempt unknown NF
        ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0),  # unanimous
        ([6, 4, 0, 0, 0, 0, 0, 0, 0, 0], 0),  # 6 of 10 > half
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),  # 5 of 10 is not more than half
        ([5, 4, 1, 0, 0, 0, 0, 0, 0, 0], 0),  # the single vote is ignored: 5 of 9 > half
        ([4, 3, 1, 1, 1, 0, 0, 0, 0, 0], 0),  # three single votes ignored: 4 of 7
        ([3, 3, 2, 1, 1, 0, 0, 0, 0, 0], None),  # 3 of 8: no majority
        ([0, 0, 0, 0, 0, 0, 0, 2, 1, 0], 7),  # contempt 2 of 2 after the single 'unknown'
        ([1, 0, 0, 0, 0, 0, 0, 0, 7, 2], None),  # majority 'unknown': dropped
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # not a face: dropped
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),  # only single votes: nothing left
        ([0, 9, 0, 0, 0, 0, 0, 0, 0, 0], 1),
    ],
)
def test_ferplus_majority_rule(votes, expected):
    assert majority_label(votes) == expected


def test_ferplus_joined_row_by_row(tmp_path):
    usages = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    pixels = write_fer2013(tmp_path, [(0, u) for u in usages])
    votes = [
        [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # no majority: dropped
        [0, 0, 8, 2, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # NF: dropped
        [0, 0, 0, 7, 3, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 6, 4, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 6, 4, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 10, 0, 0],
        [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # empty image name: dropped
    ]
    with open(tmp_path / "fer2013new.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *ferplus.VOTE_COLUMNS])
        for i, (usage, v) in enumerate(zip(usages, votes)):
            w.writerow([usage, "" if i == 9 else f"fer{i:07d}.png", *v])
    m = read_dataset(tmp_path)
    assert m.format == "ferplus" and m.class_names == ferplus.CLASS_NAMES
    assert [label for _, label in m.splits["train"]] == [0, 1, 2, 3]
    assert [label for _, label in m.splits["val"]] == [5, 6] and [label for _, label in m.splits["test"]] == [
        7
    ]
    assert m.splits["train"][3][0] == "fer2013.csv#5"  # row 5 kept its own pixels
    arrays = load_split(m, "train", 48)
    assert np.array_equal(arrays.images[3, :, :, 0], pixels[5])
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name\n")
    with pytest.raises(DataError, match="header lacks column"):
        read_dataset(tmp_path)


def test_ferplus_row_count_mismatch(tmp_path):
    write_fer2013(tmp_path, [(0, "Training")] * 3)
    (tmp_path / "fer2013new.csv").write_text(
        "Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS) + "\nTraining,a.png,10,0,0,0,0,0,0,0,0,0\n"
    )
    with pytest.raises(DataError, match="joined row by row"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# CAER-S, ImageFolder, RAER-style clips


def test_caers_and_imagefolder(tmp_path):
    caer = tmp_path / "caer"
    for split, per in (("train", 2), ("test", 1)):
        for k, name in enumerate(caers.CLASS_NAMES):
            for i in range(per):
                save(caer / split / name / f"{i:04d}.png", face(k * 10 + i, label=k))
    m = read_dataset(caer)
    assert m.format == "caers" and m.counts("train") == [2] * 7 and m.counts("test") == [1] * 7

    folder = tmp_path / "folder"
    for split, per in (("train", 3), ("val", 1), ("test", 2)):
        for k, name in enumerate(("calm", "happy", "sad")):
            for i in range(per):
                save(folder / split / name / f"{i}.jpg", face(k * 10 + i))
    m = read_dataset(folder)
    assert m.format == "imagefolder" and m.class_names == ("calm", "happy", "sad")
    assert m.counts("train") == [3, 3, 3] and m.counts("val") == [1, 1, 1] and m.counts("test") == [2, 2, 2]
    save(folder / "test" / "angry" / "0.jpg", face(99))
    with pytest.raises(DataError, match="angry"):
        read_dataset(folder)


def test_raer_clips_face_and_context(tmp_path):
    from fersearch.data.synthetic_context import generate_context

    counts = generate_context(tmp_path, n=20, size=32, frames=3, seed=0)
    m = read_dataset(tmp_path)
    assert m.format == "raer" and m.num_classes == 5
    assert m.counts("train") == counts["train"] and m.counts("test") == counts["test"]
    ref = m.splits["train"][0][0]
    clip = m.clips[ref]
    assert len(clip.frames) == 3 and all(b is not None for b in clip.face_boxes) and clip.body_box is not None
    one = load_split(m, "train", 24)  # one frame per clip: the shape the image trainer takes
    assert one.images.shape == (len(m.splits["train"]), 24, 24, 3) and one.context.shape == one.images.shape
    three = load_split(m, "train", 24, frames=3)
    assert three.images.shape == (len(m.splits["train"]), 3, 24, 24, 3)
    assert not np.array_equal(three.images[0, 0], three.context[0, 0])  # two different views
    lines = (tmp_path / "annotation/train.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " 6"
    (tmp_path / "annotation/train.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"train\.txt:2: label 6 is out of range 1\.\.5"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# Detection, unknown layouts, missing and corrupt files


def test_unknown_layout_lists_supported(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        read_dataset(tmp_path)
    text = str(err.value)
    assert "notes.txt" in text
    for name in ("rafdb", "rafce", "affectnet", "fer2013", "ferplus", "caers", "raer", "imagefolder"):
        assert f"{name}:" in text
    with pytest.raises(DataError, match=r"unknown data format 'rafdbb' \(did you mean rafdb"):
        read_dataset(tmp_path, "rafdbb")
    assert {"rafdb", "rafdb_compound", "affectnet7"} <= set(list_formats())


def test_missing_truncated_and_non_image_files_are_skipped_and_reported(tmp_path):
    rows = [(f"train_{i:04d}.jpg", 1 + i % 7) for i in range(14)] + [("test_0001.jpg", 1)]
    write_rafdb(tmp_path, rows)
    aligned = tmp_path / "Image/aligned"
    (aligned / "train_0001_aligned.jpg").unlink()  # missing
    data = (aligned / "train_0002_aligned.jpg").read_bytes()
    (aligned / "train_0002_aligned.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (aligned / "train_0003_aligned.jpg").write_text("this is not a JPEG")  # not an image
    m = read_dataset(tmp_path)
    arrays = load_split(m, "train", 32)
    assert len(arrays.labels) == 11 and arrays.images.shape[0] == 11
    reasons = {Path(ref).name: why for ref, why in arrays.skip_reasons.items()}
    assert reasons["train_0001_aligned.jpg"] == "missing"
    assert reasons["train_0002_aligned.jpg"].startswith("unreadable")
    assert reasons["train_0003_aligned.jpg"] == "not an image"
    kept = {Path(p).name for p in arrays.paths}
    assert "train_0004_aligned.jpg" in kept and "train_0001_aligned.jpg" not in kept
    # labels stay aligned with the kept images
    expected = [lab for i, (_, lab) in enumerate(m.splits["train"]) if i not in (1, 2, 3)]
    assert arrays.labels.tolist() == expected

    from fersearch.data.inspect import inspect_dataset

    rep = inspect_dataset(tmp_path)
    assert set(rep.bad) == {f"Image/aligned/train_000{i}_aligned.jpg" for i in (1, 2, 3)}
    assert rep.sizes[(40, 40)] == 12 and rep.imbalance["train"] == 1.0


def test_every_image_missing_is_fatal(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("train_0001.jpg 1\ntrain_0002.jpg 2\n")
    m = read_dataset(tmp_path)
    with pytest.raises(DataError, match=r"none of the 2 train samples .* missing"):
        load_split(m, "train", 32)
    assert not list((tmp_path / "fersearch_cache").glob("*.json"))  # nothing half-built left


def test_raer_json_box_errors(tmp_path):
    (tmp_path / "annotation").mkdir()
    (tmp_path / "bounding_box").mkdir()
    (tmp_path / "annotation/train.txt").write_text("clips/a 2 1\n")
    (tmp_path / "bounding_box/face.json").write_text(json.dumps({"clips/a": {"0.jpg": [1, 2, "x", 4]}}))
    (tmp_path / "clips/a").mkdir(parents=True)
    save(tmp_path / "clips/a/0.jpg", face(0))
    with pytest.raises(DataError, match=r"face\.json\[clips/a\]\[0\.jpg\]: a box must be"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("name", ["train_/../../../../etc/secret.jpg", "train_\\..\\..\\x.jpg"])
def test_a_label_file_naming_a_file_outside_the_dataset_is_refused(tmp_path, name):
    write_rafdb(tmp_path, [("train_0001.jpg", 1), ("test_0001.jpg", 2)])
    with (tmp_path / "EmoLabel/list_patition_label.txt").open("a") as f:
        f.write(f"{name} 3\n")
    with pytest.raises(DataError, match="the train split lists .* which leads outside the dataset folder"):
        read_dataset(tmp_path)
