"""AffectNet's valence and arousal (issue #19 item 5): read from both layouts, carried by the
decode cache beside the pixels, and trained on by the VA head end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fersearch.config import build_config
from fersearch.data.cache import SplitArrays, load_split
from fersearch.data.formats import read_dataset
from fersearch.data.splits import with_validation
from fersearch.errors import ModelError
from fersearch.train import fit

HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
)
NO_VA_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression\n"


def write_affectnet(root: Path, rows: dict[str, list[tuple[int, str, str]]], with_va: bool = True) -> None:
    """AffectNet's CSV layout: file -> (expression, valence, arousal) per image; the face box
    holds a square whose colour follows the expression."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    colours = [(230, 10, 10), (10, 230, 10), (10, 10, 230), (230, 230, 10)]
    for file, items in rows.items():
        lines = [HEADER if with_va else NO_VA_HEADER]
        for i, (code, v, a) in enumerate(items):
            rel = f"{file[:3]}/{i}.png"
            photo = np.full((60, 80, 3), 90, np.uint8)
            photo[10:50, 20:60] = colours[code % 4]
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo).save(path)
            tail = f",{v},{a}" if with_va else ""
            lines.append(f'{rel},20,10,40,40,"1.0;2.0",{code}{tail}\n')
        (lists / file).write_text("".join(lines))


VA_OF = {0: ("0.0", "0.1"), 1: ("0.8", "0.4"), 2: ("-0.7", "-0.3"), 3: ("0.3", "0.9")}


def dataset(n_train: int = 48, n_test: int = 12) -> dict:
    train = [(i % 4, *VA_OF[i % 4]) for i in range(n_train)]
    train[5] = (1, "-2", "-2")  # the release's "no value"
    train[6] = (2, "0.5", "abc")  # not a number: unlabelled too
    train.append((9, "-2", "-2"))  # Uncertain: dropped with its VA
    test = [(i % 4, *VA_OF[i % 4]) for i in range(n_test)]
    return {"training.csv": train, "validation.csv": test}


def test_the_csv_layout_reads_valence_and_arousal(tmp_path):
    write_affectnet(tmp_path, dataset())
    m = read_dataset(tmp_path)
    va = m.va_matrix("train")
    assert va.shape == (48, 2) and va.dtype == np.float32
    assert np.allclose(va[1], (0.8, 0.4)) and np.isnan(va[5]).all()
    assert va[6, 0] == pytest.approx(0.5) and math.isnan(va[6, 1])  # each value on its own
    assert m.va_matrix("test").shape == (12, 2) and not np.isnan(m.va_matrix("test")).any()
    # the decode cache carries them with the kept samples, and validation carving keeps them
    arrays = load_split(m, "train", 24)
    assert arrays.va.shape == (48, 2) and np.array_equal(arrays.va, va, equal_nan=True)
    carved = with_validation(m, 0.25, 0)
    assert carved.va_targets is m.va_targets


def test_va_lives_beside_the_cache_so_existing_caches_stay_valid(tmp_path):
    write_affectnet(tmp_path, dataset())
    first = load_split(read_dataset(tmp_path), "train", 24)
    # new VA values (or none at all): the same cached pixels, the new values
    csv = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",1,0.8,0.4", ",1,0.25,-0.25")  # image 1 (line 1 is the header)
    csv.write_text("".join(lines))
    again = load_split(read_dataset(tmp_path), "train", 24)
    assert again.cache_file == first.cache_file
    assert tuple(again.va[1]) == (0.25, -0.25)
    part = again.subset([1, 5])
    assert part.va.shape == (2, 2) and np.isnan(part.va[1]).all()
    assert SplitArrays.concat(part, part).va.shape == (4, 2)
    assert SplitArrays.concat(part, SplitArrays(part.images, part.labels, part.paths)).va is None


def test_without_va_columns_or_values_there_is_no_va(tmp_path):
    write_affectnet(tmp_path / "a", dataset(), with_va=False)
    m = read_dataset(tmp_path / "a")
    assert m.va_targets is None and load_split(m, "train", 24).va is None
    rows = {f: [(code, "-2", "-2") for code, _, _ in items] for f, items in dataset().items()}
    write_affectnet(tmp_path / "b", rows)
    assert read_dataset(tmp_path / "b").va_targets is None  # every value "no value"


def test_the_npy_layout_reads_val_and_aro_files(tmp_path):
    for folder, n in (("train_set", 4), ("val_set", 2)):
        (tmp_path / folder / "images").mkdir(parents=True)
        ann = tmp_path / folder / "annotations"
        ann.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)).save(
                tmp_path / folder / "images" / f"{i}.jpg"
            )
            np.save(ann / f"{i}_exp.npy", np.array(str(i % 2)))  # the release stores strings
            np.save(ann / f"{i}_val.npy", np.array(str(-0.5 + 0.25 * i)))
            if i != 1:  # one image without its arousal file: no VA for it
                np.save(ann / f"{i}_aro.npy", np.array("-2" if i == 2 else "0.5"))
    m = read_dataset(tmp_path)
    va = m.va_matrix("train")
    assert np.allclose(va[0], (-0.5, 0.5)) and np.isnan(va[1]).all()
    assert va[2, 0] == pytest.approx(0.0) and math.isnan(va[2, 1])
    assert m.va_matrix("test").shape == (2, 2)


def _config(root: Path, **values):
    return build_config(
        {
            "data": {"root": str(root)},
            "backbone": "test_convnext",
            "image_size": 32,
            "epochs": 2,
            "batch_size": 16,
            "warmup_epochs": 0,
            "lr": 3e-3,
            "device": "cpu",
            "seed": 1,
            **values,
        }
    )


def test_the_va_head_trains_on_affectnet_and_is_absent_without_va(tmp_path):
    write_affectnet(tmp_path / "va", dataset())
    m = with_validation(read_dataset(tmp_path / "va"), 0.25, 0)
    train, val = load_split(m, "train", 32), load_split(m, "val", 32)
    assert train.va is not None and val.va is not None
    result = fit(_config(tmp_path, va_head=True), train, val, m.num_classes)
    assert result.model.va_head is not None
    for rec in result.history:
        assert all(math.isfinite(rec[k]) for k in ("va_ccc_valence", "va_ccc_arousal", "va_rmse"))
    plain = fit(_config(tmp_path, epochs=1), train, val, m.num_classes)
    assert plain.model.va_head is None and "va_rmse" not in plain.history[0]
    # va_head on a dataset without VA: a clear error, before any training
    write_affectnet(tmp_path / "none", dataset(), with_va=False)
    bare = with_validation(read_dataset(tmp_path / "none"), 0.25, 0)
    bare_train, bare_val = load_split(bare, "train", 32), load_split(bare, "val", 32)
    with pytest.raises(ModelError, match="no valence/arousal values"):
        fit(_config(tmp_path, va_head=True), bare_train, bare_val, bare.num_classes)


def test_create_refuses_a_va_head_space_on_data_without_va(tmp_path, tiny_data, capsys):
    from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)

    from fersearch.cli import main

    space = tmp_path / "va.yaml"
    space.write_text(yaml.safe_dump({**TINY_SPACE, "fixed": {**TINY_SPACE["fixed"], "va_head": True}}))
    journal = tmp_path / "s.journal"
    argv = [
        "create",
        "--study",
        "s",
        "--data",
        str(tiny_data),
        "--space",
        str(space),
        "--storage",
        f"journal:{journal}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has no valence/arousal values" in err and "drop va_head" in err
    assert not journal.exists()  # refused before any study exists
