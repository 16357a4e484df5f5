"""One emotion vocabulary: every reader's classes by canonical name, the dataset's own spelling
kept for display; and the class map evaluate scores with (classes matched by name, the model's
unknown classes apart, compound classes by their components only when asked)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fersearch.data import read_dataset
from fersearch.data.formats import affectnet, caers, fer2013, ferplus, rafce, rafdb, rafdb_compound
from fersearch.data.vocabulary import BASIC, COMPOUND, canonical, canonical_names, components
from fersearch.errors import DataError
from fersearch.finalize.class_map import build_class_map
from fersearch.finalize.evaluate import restrict, score


def test_known_spellings_map_to_canonical_names_and_unknown_ones_stay():
    for spelling, name in {
        "Angry": "Anger",
        "happy": "Happiness",
        "SAD": "Sadness",
        "surprised": "Surprise",
        "fearful": "Fear",
        "disgusted": "Disgust",
        "neutral": "Neutral",
        "contempt": "Contempt",
        "happily_surprised": "Happily Surprised",
        "Sadly-Angry": "Sadly Angry",
    }.items():
        assert canonical(spelling) == name
    assert canonical("calm") == "calm" and canonical("Confusion") == "Confusion"
    assert components("Happily Surprised") == ("Happiness", "Surprise") and components("Happiness") is None
    assert all(set(parts) <= set(BASIC) for parts in COMPOUND.values())


def test_every_reader_has_canonical_names_in_its_own_label_order():
    expected = {
        rafdb: ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"),
        fer2013: ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral"),
        affectnet: ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
        ferplus: ("Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt"),
        caers: ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
    }
    for reader, names in expected.items():
        assert canonical_names(reader.CLASS_NAMES) == names, reader.__name__
    for reader in (rafdb_compound, rafce):
        assert canonical_names(reader.CLASS_NAMES) == reader.CLASS_NAMES
        assert all(components(n) for n in reader.CLASS_NAMES)


def _folder(root, names):
    for split in ("train", "test"):
        for name in names:
            (root / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / name / "0.png")


def test_imagefolder_names_keep_their_spelling_and_get_canonical_ones(tmp_path):
    _folder(tmp_path, ["angry", "calm", "happy", "surprised"])
    m = read_dataset(tmp_path)
    assert m.class_names == ("angry", "calm", "happy", "surprised")
    assert m.canonical_names == ("Anger", "calm", "Happiness", "Surprise")


def test_two_spellings_of_one_emotion_in_one_dataset_are_refused(tmp_path):
    _folder(tmp_path, ["Happiness", "happy", "sad"])
    with pytest.raises(DataError, match=r"'Happiness' and 'happy' both mean Happiness.*merge"):
        read_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# the class map and the scores evaluate writes

RAF = list(rafdb.CLASS_NAMES)


def _map(data_names, model_names=RAF, **kw):
    return build_class_map(
        list(model_names),
        list(canonical_names(model_names)),
        list(data_names),
        list(canonical_names(data_names)),
        **kw,
    )


def _onehot(preds, k):
    return np.eye(k, dtype=np.float32)[preds]


def test_classes_are_matched_by_name_not_by_label_number():
    cmap = _map(fer2013.CLASS_NAMES)
    # FER2013's 0 Angry is RAF-DB's output 5 Anger; its 3 Happy is RAF-DB's 3 Happiness
    assert cmap.to_model == [5, 2, 1, 3, 4, 0, 6] and cmap.unknown == [] and all(cmap.model_in_data)


def test_a_class_the_model_does_not_know_is_reported_apart_and_left_out_of_uar():
    cmap = _map(ferplus.CLASS_NAMES)  # FERPlus adds Contempt (its label 7)
    labels = np.array([0, 1, 1, 2, 7, 7, 7])  # Neutral, Happiness x2, Surprise, Contempt x3
    preds = np.array([6, 3, 4, 0, 6, 3, 3])  # RAF outputs: Neutral, Happiness, Sadness, Surprise, ...
    s = score(labels, _onehot(preds, 7), cmap)
    assert s["n"] == 4 and s["uar"] == pytest.approx((1 + 0.5 + 1) / 3) and s["war"] == pytest.approx(0.75)
    assert s["unknown_classes"] == {
        "Contempt": {"canonical": "Contempt", "n": 3, "predicted_as": {"Happiness": 2, "Neutral": 1}}
    }
    assert "Contempt" not in s["per_class"] and sum(map(sum, s["confusion_matrix"])) == 4


def test_a_model_class_the_data_lacks_leaves_the_table_and_restrict_is_explicit():
    data = [n for n in fer2013.CLASS_NAMES if n != "Fear"]  # 6 classes, no Fear
    cmap = _map(data)
    assert cmap.model_in_data == [True, False, True, True, True, True, True]
    labels = np.array([2, 2, 0])  # Happy, Happy, Angry (indices into ``data``)
    probs = np.array([[0.1, 0.5, 0, 0.4, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0]], np.float32)
    s = score(labels, probs, cmap)  # image 0: Fear wins, and counts as an error
    assert "Fear" not in s["per_class"] and s["model_classes_not_in_data"] == {"Fear": 1}
    assert s["per_class"]["Happiness"]["recall"] == 0.5
    restricted = restrict(probs, cmap.model_in_data)
    np.testing.assert_allclose(restricted.sum(1), 1.0, rtol=1e-6)
    s = score(labels, restricted, cmap)
    assert s["model_classes_not_in_data"] == {"Fear": 0} and s["per_class"]["Happiness"]["recall"] == 1.0


def test_compound_classes_need_the_option_and_then_score_either_component():
    with pytest.raises(DataError, match="--compound-to-basic"):
        _map(rafdb_compound.CLASS_NAMES)
    cmap = _map(rafdb_compound.CLASS_NAMES, compound_to_basic=True)
    assert not cmap.unknown and len(cmap.compound) == 11
    # Happily Surprised (0): Happiness or Surprise is right; Sadly Angry (3): Sadness or Anger
    labels = np.array([0, 0, 0, 3])
    preds = np.array([3, 0, 6, 5])  # Happiness, Surprise, Neutral, Anger
    s = score(labels, _onehot(preds, 7), cmap)
    assert s["compound"]["Happily Surprised"] == {
        "recall": pytest.approx(2 / 3),
        "support": 3,
        "scored_as": ["Happiness", "Surprise"],
        "predicted_as": {"Surprise": 1, "Happiness": 1, "Neutral": 1},
    }
    assert s["uar"] == pytest.approx((2 / 3 + 1) / 2) and s["war"] == pytest.approx(0.75) and s["n"] == 4
    assert s["macro_f1"] is None  # no class is one of the model's own
