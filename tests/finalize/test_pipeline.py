"""finalize end to end on a real study: data hygiene, the report's numbers, export, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fersearch.config import DataConfig
from fersearch.data import load_manifest
from fersearch.data.decode import decode_split
from fersearch.ensemble import load_ensemble
from fersearch.ensemble.probs import combine
from fersearch.errors import ModelError
from fersearch.finalize import calibrate
from fersearch.metrics import summarize

from .conftest import TRIALS, _instrumented_finalize


def _choices_then_test(events, n_val):
    """Assert that every validation-driven choice happened before the first test decode."""
    first_test = next(i for i, e in enumerate(events) if e == ("decode", "test"))
    choices = [i for i, e in enumerate(events) if e[0] == "choose"]
    assert choices, "no selection step was observed: the instrumentation is broken"
    assert max(choices) < first_test, events
    # The choices saw validation-sized inputs (crossfit halves are smaller, never test-sized).
    assert all(e[2] <= n_val for e in events if e[0] == "choose")
    assert {e[1] for e in events if e[0] == "choose"} == {"choose_view_set", "greedy_select", "fit_bias"}
    return first_test


def test_test_split_is_decoded_only_after_every_choice(finalized):
    report = json.loads((finalized.out / "report.json").read_text())
    first_test = _choices_then_test(finalized.events, report["validation"]["n"])
    before = {e[1] for e in finalized.events[:first_test] if e[0] == "decode"}
    assert before == {"train", "val"}
    fits = [e for e in finalized.events if e[0] == "fit"]
    assert [e[1] for e in fits] == [0, 1, 2] and all(e[3] == "best" for e in fits)
    assert max(i for i, e in enumerate(finalized.events) if e[0] == "fit") < first_test


def test_top_k_merges_identical_configs(finalized):
    report = json.loads((finalized.out / "report.json").read_text())
    # trial 3 repeats trial 0's config with another seed: merged, so trials 0, 1, 2 are retrained
    assert [m["trial"] for m in report["members"]] == [0, 1, 2]
    assert [m["search_val_uar"] for m in report["members"]] == [t["value"] for t in TRIALS[:3]]


def test_report_numbers_equal_those_recomputed_from_saved_predictions(finalized):
    out = finalized.out
    r = json.loads((out / "report.json").read_text())
    p = np.load(out / "predictions.npz", allow_pickle=False)
    k = len(r["class_names"])
    w, bias = p["weights"], p["bias"]
    assert w.tolist() == pytest.approx(r["weights"]) and bias.tolist() == pytest.approx(
        r["recipe"]["calibration"]["bias"]
    )

    # the final predictions are the documented combination of the members
    val = calibrate.apply_bias(combine(p["member_val_probs"], w), bias)
    test = calibrate.apply_bias(combine(p["member_test_probs"], w), bias)
    np.testing.assert_allclose(p["val_probs"], val, atol=1e-6)
    np.testing.assert_allclose(p["test_probs"], test, atol=1e-6)
    for split, key in (("val", "validation"), ("test", "test")):
        m = summarize(p[f"{split}_labels"], p[f"{split}_probs"].argmax(1), k)
        for metric in ("uar", "war", "macro_f1"):
            assert r[key][metric] == pytest.approx(m[metric])
        assert r[key]["confusion_matrix"] == m["confusion_matrix"]
        for i, name in enumerate(r["class_names"]):
            assert r[key]["per_class"][name]["recall"] == pytest.approx(
                m["per_class"]["recall"][i], nan_ok=True
            )

    # every comparison row, including the best single member chosen on validation
    best = [mem["id"] for mem in r["members"]].index(r["recipe"]["best_single_member"])
    assert best == int(np.argmax([mem["val_uar"] for mem in r["members"]]))
    rows = {
        "best_single": lambda q: q[best],
        "plain_mean": lambda q: q.mean(0),
        "ensemble": lambda q: combine(q, w),
        "ensemble_calibrated": lambda q: calibrate.apply_bias(combine(q, w), bias),
    }
    for name, fn in rows.items():
        for split, key in (("val", "member_val_probs"), ("test", "member_test_probs")):
            expect = summarize(p[f"{split}_labels"], fn(p[key]).argmax(1), k)
            got = r["comparison"][name][split]
            assert got["uar"] == pytest.approx(expect["uar"]) and got["war"] == pytest.approx(expect["war"])
    gain = r["bootstrap"]["test"]["deltas"]["ensemble - best_single"]["uar"]["value"]
    assert gain == pytest.approx(
        r["comparison"]["ensemble"]["test"]["uar"] - r["comparison"]["best_single"]["test"]["uar"]
    )
    for i, mem in enumerate(r["members"]):
        assert mem["test_uar"] == pytest.approx(
            summarize(p["test_labels"], p["member_test_probs"][i].argmax(1), k)["uar"]
        )
    lo, hi = r["bootstrap"]["test"]["intervals"]["ensemble_calibrated"]["uar"]
    assert lo <= r["test"]["uar"] <= hi
    # the markdown and HTML show the same headline figure
    assert f"{r['test']['uar']:.4f}" in (out / "report.md").read_text()
    assert f"{r['test']['uar']:.4f}" in (out / "report.html").read_text()


def test_report_states_what_no_learning_gets_and_how_the_search_went(finalized):
    r = json.loads((finalized.out / "report.json").read_text())
    manifest = load_manifest(DataConfig(root=str(finalized.data)))
    k = len(r["class_names"])
    test_labels = np.load(finalized.out / "predictions.npz", allow_pickle=False)["test_labels"]
    majority = int(np.argmax(manifest.counts("train")))
    b = r["baselines"]
    assert b["chance_uar"] == pytest.approx(1 / k)
    assert b["majority_class"] == r["class_names"][majority]
    assert b["majority_class_war"] == pytest.approx(float(np.mean(test_labels == majority)))
    # the search section lists the study's trials with a best-so-far that never falls
    search = r["search"]
    assert [t["trial"] for t in search["trials"]] == [0, 1, 2, 3]
    assert [t["best_so_far"] for t in search["trials"]] == [0.5, 0.5, 0.5, 0.5]
    assert search["best_val_uar"] == 0.5 and search["complete"] == 4
    md = (finalized.out / "report.md").read_text()
    assert f"chance UAR 1/{k}" in md and "## The search" in md
    html = (finalized.out / "report.html").read_text()
    assert f"chance {1 / k:.4f}" in html and 'id="selection-used"' in html
    assert (finalized.out / "search.png").is_file()


def test_exported_ensemble_reloads_and_predicts_identically(finalized):
    r = json.loads((finalized.out / "report.json").read_text())
    p = np.load(finalized.out / "predictions.npz", allow_pickle=False)
    ens = load_ensemble(finalized.out / "ensemble")
    manifest = json.loads((finalized.out / "ensemble" / "manifest.json").read_text())
    assert manifest["class_names"] == r["class_names"]
    assert manifest["tta"]["view_set"] == r["recipe"]["tta"]["chosen"]
    assert manifest["calibration"]["bias"] == pytest.approx(r["recipe"]["calibration"]["bias"])
    assert len(ens.models) == sum(1 for m in r["members"] if m["selected"])
    assert sum(manifest["weights"]) == pytest.approx(1.0)
    assert {"torch", "timm", "fersearch", "numpy", "safetensors"} <= set(manifest["versions"])
    assert all(m["preprocess"]["image_size"] == 32 for m in manifest["members"])
    data = load_manifest(DataConfig(**r["data"]))
    probs = ens.predict_probs(lambda size: decode_split(data, "test", size).images)
    np.testing.assert_allclose(probs, p["test_probs"], atol=1e-6)


def test_missing_or_corrupted_member_file_is_a_clear_error(finalized, tmp_path):
    ens_dir = tmp_path / "ensemble"
    shutil.copytree(finalized.out / "ensemble", ens_dir)
    member = ens_dir / "member_0.safetensors"
    data = member.read_bytes()
    member.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(ModelError, match=r"member_0\.safetensors.*SHA-256"):
        load_ensemble(ens_dir)
    member.unlink()
    with pytest.raises(ModelError, match=r"member_0\.safetensors.*missing"):
        load_ensemble(ens_dir)
    (ens_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_ensemble(ens_dir)
    with pytest.raises(ModelError, match="manifest.json is missing"):
        load_ensemble(tmp_path)


def test_rerun_reuses_finished_members_and_retrains_only_a_crashed_one(finalized, tmp_path, monkeypatch):
    import fersearch.finalize.retrain as retrain

    out = tmp_path / "final"
    shutil.copytree(finalized.out, out)
    # a crash while the third member trained: its directory exists, its record does not
    crashed = out / "members" / "train" / "trial2_seed2"
    (crashed / "member.json").unlink()
    (crashed / "model.safetensors").write_bytes(b"half written")
    fits = []
    real_fit = retrain.fit
    monkeypatch.setattr(
        retrain, "fit", lambda config, *a, **k: fits.append(config.seed) or real_fit(config, *a, **k)
    )
    from fersearch.finalize import finalize

    finalize("fin", 3, out, finalized.storage, latency_images=2, onnx=False)
    assert fits == [2], "only the member without a record may be retrained"
    before = json.loads((finalized.out / "report.json").read_text())
    after = json.loads((out / "report.json").read_text())
    assert after["test"]["uar"] == pytest.approx(before["test"]["uar"])  # deterministic on a CPU
    assert after["weights"] == pytest.approx(before["weights"])

    # a finished member whose weights changed on disk is an error that names the fix
    w = out / "members" / "train" / "trial0_seed0" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"trial0_seed0.*SHA-256.*delete"):
        finalize("fin", 3, out, finalized.storage, latency_images=2, onnx=False)
    assert fits == [2]


def test_train_plus_val_refits_selected_members_for_their_chosen_epochs(finalized_trainval):
    run = finalized_trainval
    r = json.loads((run.out / "report.json").read_text())
    first_test = _choices_then_test(run.events, r["validation"]["n"])
    # resumed: the train-only members came from disk (re-scored on the flip views, not refit);
    # what trained is one refit per selected member and one model per member per fold, each
    # for a fixed epoch count with the last epoch kept, all after the validation choices.
    n_sel = sum(m["selected"] for m in r["members"])
    fits = [i for i, e in enumerate(run.events) if e[0] == "fit"]
    assert len(fits) == n_sel * (1 + 2)
    assert all(run.events[i][3] == "last" for i in fits)
    last_choice = max(i for i, e in enumerate(run.events) if e[0] == "choose")
    assert min(fits) > last_choice and max(fits) < first_test
    assert r["recipe"]["retrain_on"] == "train+val"
    assert "val" in r["recipe"]["hygiene"] and "optimistic" in r["recipe"]["hygiene"]
    assert r["comparison"]["deployed"]["val"] is None  # no honest validation number exists
    manifest = json.loads((run.out / "ensemble" / "manifest.json").read_text())
    assert manifest["trained_on"] == "train+val"
    for entry in manifest["members"]:
        assert entry["stage"] == "trainval"
        train_rec = json.loads((run.out / "members" / "train" / entry["id"] / "member.json").read_text())
        refit_rec = json.loads((run.out / "members" / "trainval" / entry["id"] / "member.json").read_text())
        assert refit_rec["config"]["epochs"] == train_rec["best_epoch"] == entry["best_epoch"]
        assert len(refit_rec["history"]) == train_rec["best_epoch"]
    # the deployed test predictions are those of the refit members, and reload identically
    p = np.load(run.out / "predictions.npz", allow_pickle=False)
    sel = p["weights"] > 0
    raw = combine(p["deployed_member_test_probs"], p["weights"][sel])
    np.testing.assert_allclose(p["test_probs"], calibrate.apply_bias(raw, p["bias"]), atol=1e-6)
    data = load_manifest(DataConfig(**r["data"]))
    probs = load_ensemble(run.out / "ensemble").predict_probs(lambda s: decode_split(data, "test", s).images)
    np.testing.assert_allclose(probs, p["test_probs"], atol=1e-6)
    # the k-fold estimate ran before the test split was read, on train+val only
    cv = r["cv"]
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    n_pool = r["validation"]["n"] + sum(r["dataset"]["counts"]["train"])
    assert sum(f["n"] for f in cv["per_fold"]) <= n_pool
    assert np.mean([f["calibrated"]["uar"] for f in cv["per_fold"]]) == pytest.approx(
        cv["summary"]["calibrated"]["uar"]["mean"]
    )
    assert r["recipe"]["tta"]["chosen"] in ("none", "flip")


def test_bad_arguments_are_clear_errors(finalized, tmp_path, capsys):
    from fersearch.cli import main

    for args, msg in (
        (["--top", "0"], "--top must be at least 1"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--retrain-on", "test"], "--retrain-on"),
        (["--cv", "1"], "--cv needs at least 2 folds"),
        (["--tta", "many"], "--tta"),
    ):
        base = ["finalize", "--study", "fin", "--out", str(tmp_path / "x"), "--storage", finalized.storage]
        assert main(base + args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_resume_detects_a_member_trained_on_other_data(finalized, tmp_path, tiny_data):
    """The same --out with a changed config must not silently reuse the old member."""
    out = tmp_path / "final"
    shutil.copytree(finalized.out, out)
    rec_path = out / "members" / "train" / "trial0_seed0" / "member.json"
    rec = json.loads(rec_path.read_text())
    rec["fingerprint"] = "0" * 16
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(ModelError, match="different config or data split"):
        _instrumented_finalize(tmp_path, tiny_data, finalized.storage)  # writes to tmp_path / "final"


def test_onnx_export_predicts_what_the_torch_ensemble_predicts(finalized, tmp_path, capsys):
    """finalize --onnx writes one self-contained ONNX file per member and reports the onnxruntime
    latency; that backend gives the torch ensemble's probabilities (TTA views, weights and
    calibration included); export-onnx adds the files to an ensemble without them; a missing
    or altered ONNX file is a clear error."""
    onnx = pytest.importorskip("onnx", reason="the optional onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    pytest.importorskip("onnxruntime", reason="the optional onnx extra is not installed")
    from fersearch.cli import main
    from fersearch.finalize import finalize

    out = tmp_path / "final"
    shutil.copytree(finalized.out, out)
    finalize("fin", 3, out, finalized.storage, latency_images=2, onnx=True)  # members are reused
    ens_dir = out / "ensemble"
    mpath = ens_dir / "manifest.json"
    manifest = json.loads(mpath.read_text())
    n = len(manifest["members"])
    files = [f"member_{i}.onnx" for i in range(n)]
    assert manifest["onnx"]["files"] == files and len(manifest["onnx"]["sha256"]) == n
    assert sorted(p.name for p in ens_dir.glob("*.onnx*")) == files  # weights inside, no .data files
    for f in files:
        onnx.checker.check_model(onnx.load(str(ens_dir / f)))
    report = json.loads((out / "report.json").read_text())
    assert report["deployment"]["onnxruntime"]["latency_ms_per_image_median"] > 0
    assert "With ONNX Runtime" in (out / "report.md").read_text()
    assert "ONNX Runtime backend" in (out / "report.html").read_text()

    manifest["tta"]["view_set"] = "flip"  # two views per member: the view batching is compared too
    mpath.write_text(json.dumps(manifest))
    data = load_manifest(DataConfig(**report["data"]))
    torch_ens = load_ensemble(ens_dir)
    by_size = {s: decode_split(data, "test", s).images for s in torch_ens.sizes}
    reference = torch_ens.predict_probs(by_size.__getitem__)
    ort_ens = load_ensemble(ens_dir, backend="onnxruntime", threads=1)
    assert ort_ens.models == [] and len(ort_ens.runners) == n
    assert load_ensemble(ens_dir, backend="auto").backend == "onnxruntime"
    np.testing.assert_allclose(ort_ens.predict_probs(by_size.__getitem__), reference, atol=1e-5)

    # export-onnx on an ensemble without ONNX files (the first member alone, to keep this short)
    solo = tmp_path / "solo"
    shutil.copytree(finalized.out / "ensemble", solo)
    m = json.loads((solo / "manifest.json").read_text())
    m["members"], m["weights"] = m["members"][:1], [1.0]
    (solo / "manifest.json").write_text(json.dumps(m))
    assert load_ensemble(solo, backend="auto").backend == "torch"
    with pytest.raises(ModelError, match="fersearch export-onnx"):
        load_ensemble(solo, backend="onnxruntime")
    assert main(["export-onnx", "--model", str(solo)]) == 0
    solo_torch = load_ensemble(solo).predict_probs(by_size.__getitem__)
    solo_ort = load_ensemble(solo, backend="onnxruntime").predict_probs(by_size.__getitem__)
    np.testing.assert_allclose(solo_ort, solo_torch, atol=1e-5)

    (ens_dir / files[-1]).write_bytes((ens_dir / files[-1]).read_bytes()[:1000])
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        load_ensemble(ens_dir, backend="onnxruntime")
    image = sorted((data.root / "Image" / "aligned").glob("test_*"))[0]
    capsys.readouterr()
    assert main(["predict", "--model", str(ens_dir), str(image), "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "SHA-256" in err and "export-onnx" in err and "Traceback" not in err, err
    assert main(["predict", "--model", str(ens_dir), str(image), "--backend", "tflite"]) == 2
    assert "unknown inference backend" in capsys.readouterr().err
