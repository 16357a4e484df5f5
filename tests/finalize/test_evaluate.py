"""fersearch evaluate on the exported ensemble of the shared finalize run (trained on RAF-DB's
layout): on its own dataset it reproduces finalize's test figures; on the same images written
in every other official layout, each with its own class order, it gets the same per-class
recall (a mapping by label number would scramble it), and classes the model does not know are
reported apart, out of UAR."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fersearch.cli import main
from fersearch.data import read_dataset
from fersearch.data.formats import affectnet, caers, fer2013, ferplus, rafdb, rafdb_compound
from fersearch.data.vocabulary import canonical, components
from fersearch.ensemble import load_ensemble
from fersearch.errors import ModelError
from fersearch.metrics import summarize

# ImageFolder spellings of the canonical names (the folder names of FER2013's image release)
FOLDERS = {
    "Anger": "angry",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happiness": "happy",
    "Sadness": "sad",
    "Surprise": "surprised",
    "Neutral": "neutral",
    "Contempt": "contempt",
}


def _evaluate(ens: Path, data: Path, out: Path, *extra: str) -> dict:
    assert main(["evaluate", "--model", str(ens), "--data", str(data), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


def _png(path: Path, grey: np.ndarray) -> None:
    """Lossless, so every layout decodes to the very pixels FER2013's CSV holds. (PIL reads a
    file by its content, so PNG bytes under RAF-DB's and AffectNet's .jpg names are fine.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey).save(path, format="PNG")


# --------------------------------------------------------------------------------------------
# one set of images, written in each official layout; items: (48x48 grey, canonical name)


def write_rafdb(root: Path, items, names=rafdb.CLASS_NAMES) -> None:
    lines = []
    for split in ("train", "test"):
        for i, (grey, name) in enumerate(items):
            lines.append(f"{split}_{i:05d}.jpg {[canonical(n) for n in names].index(name) + 1}\n")
            _png(root / "Image/aligned" / f"{split}_{i:05d}_aligned.jpg", grey)
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel/list_patition_label.txt").write_text("".join(lines))


def _fer_rows(items):
    return [(s, grey, name) for s in ("Training", "PrivateTest") for grey, name in items]


def write_fer2013(root: Path, items) -> None:
    root.mkdir(parents=True)
    order = [canonical(n) for n in fer2013.CLASS_NAMES]
    with open(root / "fer2013.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for usage, grey, name in _fer_rows(items):
            w.writerow([order.index(name), " ".join(map(str, grey.ravel().tolist())), usage])


def write_ferplus(root: Path, items) -> None:
    root.mkdir(parents=True)
    order = [canonical(n) for n in ferplus.CLASS_NAMES]
    with (
        open(root / "fer2013.csv", "w", newline="") as fh,
        open(root / "fer2013new.csv", "w", newline="") as votes,
    ):
        w, v = csv.writer(fh), csv.writer(votes)
        w.writerow(["emotion", "pixels", "Usage"])
        v.writerow(["Usage", "Image name", *ferplus.VOTE_COLUMNS])
        for i, (usage, grey, name) in enumerate(_fer_rows(items)):
            w.writerow([0, " ".join(map(str, grey.ravel().tolist())), usage])  # FERPlus ignores it
            counts = [0] * len(ferplus.VOTE_COLUMNS)
            counts[order.index(name)] = 10
            v.writerow([usage, f"fer{i:07d}.png", *counts])


def write_affectnet(root: Path, items) -> None:
    order = [canonical(n) for n in affectnet.CLASS_NAMES]
    for folder in ("train_set", "val_set"):
        for i, (grey, name) in enumerate(items):
            _png(root / folder / "images" / f"{i}.jpg", grey)
            (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
            np.save(root / folder / "annotations" / f"{i}_exp.npy", np.array(str(order.index(name))))


def write_folders(root: Path, items, folder_of) -> None:
    for split in ("train", "test"):
        for i, (grey, name) in enumerate(items):
            _png(root / split / folder_of(name) / f"{i:04d}.png", grey)


def write_caers(root: Path, items) -> None:
    spelled = {canonical(n): n for n in caers.CLASS_NAMES}
    write_folders(root, items, lambda name: spelled[name])


def write_imagefolder(root: Path, items) -> None:
    write_folders(root, items, FOLDERS.get)


@pytest.fixture(scope="module")
def faces(finalized):
    """RAF-DB test faces of the shared run as 48x48 grey images (what FER2013 can hold) with
    their canonical classes, and a few more faces to stand for Contempt."""
    m = read_dataset(finalized.data)
    names = [canonical(n) for n in m.class_names]

    def grey(ref):
        return np.asarray(Image.open(finalized.data / ref).convert("L").resize((48, 48), Image.BILINEAR))

    items = [(grey(ref), names[label]) for ref, label in m.splits["test"]]
    contempt = [(grey(ref), "Contempt") for ref, _ in m.splits["train"][:5]]
    return items, contempt


@pytest.fixture(scope="module")
def reference(finalized, faces, tmp_path_factory) -> dict:
    """The grey faces in RAF-DB's own layout: what every other layout must agree with."""
    root = tmp_path_factory.mktemp("layouts") / "rafdb"
    write_rafdb(root, faces[0])
    return _evaluate(finalized.out / "ensemble", root, root.parent / "rafdb_report")


def test_evaluate_on_the_training_dataset_reproduces_finalize(finalized, tmp_path, capsys):
    final = json.loads((finalized.out / "report.json").read_text())
    r = _evaluate(finalized.out / "ensemble", finalized.data, tmp_path / "eval")
    for key in ("uar", "war", "macro_f1", "confusion_matrix", "n"):
        assert r["test"][key] == final["test"][key], key
    for name, pc in final["test"]["per_class"].items():
        assert r["test"]["per_class"][name] == pc
    lo, hi = r["test"]["bootstrap"]["intervals"]["uar"]
    assert lo <= r["test"]["uar"] <= hi
    assert r["held_out"] and r["dataset"]["same_as_training"] and not r["test"]["unknown_classes"]
    assert "finalize's test figures" in " ".join(r["notes"])
    for page in ("report.md", "report.html"):
        assert f"{final['test']['uar']:.4f}" in (tmp_path / "eval" / page).read_text()
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0
    assert f"test: UAR {final['test']['uar']:.4f}" in capsys.readouterr().err


LAYOUTS = {
    "fer2013": (write_fer2013, False),
    "ferplus": (write_ferplus, True),
    "affectnet": (write_affectnet, True),
    "caers": (write_caers, False),
    "imagefolder": (write_imagefolder, True),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_same_images_in_another_layout_get_the_same_per_class_recall(
    layout, finalized, faces, reference, tmp_path
):
    write, with_contempt = LAYOUTS[layout]
    items, contempt = faces
    root = tmp_path / layout
    write(root, items + (contempt if with_contempt else []))
    assert read_dataset(root).format == layout  # --format auto found it
    r = _evaluate(finalized.out / "ensemble", root, tmp_path / "report")
    ref = reference["test"]
    # the model's classes, each with the same images: the same recall, the same confusions
    assert {n: pc["recall"] for n, pc in r["test"]["per_class"].items()} == {
        n: pc["recall"] for n, pc in ref["per_class"].items()
    }
    assert r["test"]["confusion_matrix"] == ref["confusion_matrix"]
    assert (r["test"]["uar"], r["test"]["war"], r["test"]["n"]) == (ref["uar"], ref["war"], ref["n"])
    unknown = r["test"]["unknown_classes"]
    if with_contempt:
        assert list(unknown) == [FOLDERS["Contempt"] if layout == "imagefolder" else "Contempt"]
        assert next(iter(unknown.values()))["n"] == len(contempt)
        assert any("not a class of the model" in n and "left out of UAR" in n for n in r["notes"])
        assert "Contempt" in (tmp_path / "report" / "report.md").read_text()
    else:
        assert not unknown
    # reading the labels by number, in RAF-DB's order, would have scrambled the classes (this
    # weak model's recall alone may not show it: FER2013 numbers Happy and Neutral as RAF-DB does)
    p = np.load(tmp_path / "report" / "predictions.npz", allow_pickle=False)
    known = np.array([canonical(n) != "Contempt" for n in p["data_class_names"]])[p["labels"]]
    by_number = summarize(p["labels"][known], p["probs"][known].argmax(1), 8)["confusion_matrix"]
    assert [row[:7] for row in by_number[:7]] != ref["confusion_matrix"]


def test_the_manifest_lists_canonical_names_and_old_ensembles_still_evaluate(finalized, tmp_path):
    manifest = json.loads((finalized.out / "ensemble" / "manifest.json").read_text())
    assert manifest["canonical_names"] == [canonical(n) for n in manifest["class_names"]]
    old = tmp_path / "old"
    shutil.copytree(finalized.out / "ensemble", old)
    del manifest["canonical_names"]  # as exported before they were recorded
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_ensemble(old).canonical_names == [canonical(n) for n in manifest["class_names"]]
    final = json.loads((finalized.out / "report.json").read_text())
    assert _evaluate(old, finalized.data, tmp_path / "eval")["test"]["uar"] == final["test"]["uar"]
    # a manifest is input like any other: canonical names, when given, are one per class
    (old / "manifest.json").write_text(json.dumps({**manifest, "canonical_names": ["Anger"]}))
    with pytest.raises(ModelError, match="canonical_names must be 7 distinct names"):
        load_ensemble(old)


def test_a_split_other_than_test_says_it_is_not_held_out(finalized, tmp_path, capsys):
    r = _evaluate(finalized.out / "ensemble", finalized.data, tmp_path / "eval", "--split", "val")
    assert r["split"] == "val" and not r["held_out"] and "val" in r and "test" not in r
    assert r["notes"][0].startswith("Not a held-out figure")
    assert "Not a held-out figure" in (tmp_path / "eval" / "report.html").read_text()
    assert "val (not held out): UAR" in capsys.readouterr().err


def test_compound_classes_are_scored_by_their_components_only_when_asked(finalized, faces, tmp_path, capsys):
    items = [(grey, rafdb_compound.CLASS_NAMES[i % 11]) for i, (grey, _) in enumerate(faces[0])]
    root = tmp_path / "compound"
    write_rafdb(root, items, names=rafdb_compound.CLASS_NAMES)
    ens = finalized.out / "ensemble"
    assert main(["evaluate", "--model", str(ens), "--data", str(root), "--out", str(tmp_path / "no")]) == 2
    assert "pass --compound-to-basic" in capsys.readouterr().err
    r = _evaluate(ens, root, tmp_path / "yes", "--compound-to-basic")
    p = np.load(tmp_path / "yes" / "predictions.npz", allow_pickle=False)
    model = list(p["model_class_names"])
    preds = p["probs"].argmax(1)
    for d, name in enumerate(rafdb_compound.CLASS_NAMES):
        sel = p["labels"] == d
        if sel.any():
            either = [model.index(c) for c in components(name)]
            assert r["test"]["compound"][name]["recall"] == pytest.approx(np.isin(preds[sel], either).mean())
    assert r["test"]["macro_f1"] is None and "scored by their two basic components" in " ".join(r["notes"])


def test_a_model_class_the_data_lacks_is_left_out_and_restrict_is_explicit(finalized, faces, tmp_path):
    items = [(g, n) for g, n in faces[0] if n != "Sadness"]
    root = tmp_path / "no_sadness"
    write_imagefolder(root, items)
    ens = finalized.out / "ensemble"
    r = _evaluate(ens, root, tmp_path / "plain")
    assert "Sadness" not in r["test"]["per_class"] and set(r["test"]["model_classes_not_in_data"]) == {
        "Sadness"
    }
    r = _evaluate(ens, root, tmp_path / "restricted", "--restrict-to-data")
    assert r["test"]["model_classes_not_in_data"] == {"Sadness": 0}
    p = np.load(tmp_path / "restricted" / "predictions.npz", allow_pickle=False)
    assert not np.any(p["probs"].argmax(1) == list(p["model_class_names"]).index("Sadness"))


def test_bad_input_is_one_line_and_exit_code_2(finalized, tmp_path, capsys):
    ens, data = str(finalized.out / "ensemble"), str(finalized.data)
    assert main(["evaluate", "--model", ens, "--data", data, "--out", str(tmp_path), "--split", "dev"]) == 2
    assert "--split: got 'dev'; valid: train, val, test" in capsys.readouterr().err
    # finalize's own report is never overwritten
    assert main(["evaluate", "--model", ens, "--data", data, "--out", str(finalized.out)]) == 2
    assert "give evaluate a folder of its own" in capsys.readouterr().err
    assert (
        main(["evaluate", "--model", ens, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
