"""export-onnx --quantize int8: int8 members calibrated on training images, each used only where
its validation UAR holds within the tolerance, run by --backend onnxruntime-int8 (predict and
evaluate), with clear errors where the files or the data are missing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fersearch.cli import main
from fersearch.ensemble import load_ensemble
from fersearch.errors import ModelError

pytest.importorskip("onnx", reason="the optional onnx extra is not installed")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
pytest.importorskip("onnxruntime", reason="the optional onnx extra is not installed")


@pytest.fixture
def ensemble(finalized, tmp_path):
    out = tmp_path / "ensemble"
    shutil.copytree(finalized.out / "ensemble", out)
    return out


def _quantize(ensemble, data, capsys, *extra) -> tuple[int, dict, str]:
    rc = main(["export-onnx", "--model", str(ensemble), "--quantize", "int8", "--data", str(data), *extra])
    err = capsys.readouterr().err
    manifest = json.loads((ensemble / "manifest.json").read_text())
    return rc, manifest, err


def test_int8_members_are_checked_on_validation_and_predict_like_the_float_ones(
    finalized, ensemble, tmp_path, capsys
):
    with pytest.raises(ModelError, match="no int8 members"):
        load_ensemble(ensemble, backend="onnxruntime-int8")
    rc, manifest, err = _quantize(
        ensemble, finalized.data, capsys, "--tolerance", "1", "--calibration-images", "32"
    )
    assert rc == 0, err
    n = len(manifest["members"])
    q = manifest["onnx_int8"]
    assert q["files"] == [f"member_{i}.int8.onnx" for i in range(n)] and q["quantized"] == [True] * n
    for row in q["members"]:  # tolerance 1: every member is kept, whatever it lost
        assert 0 <= row["val_uar_int8"] <= 1 and 0 <= row["val_uar_fp32"] <= 1
    assert "val UAR" in err and "--backend onnxruntime-int8" in err
    # int8 files are smaller, and give nearly the float members' answers
    for i in range(n):
        assert (ensemble / f"member_{i}.int8.onnx").stat().st_size < (
            ensemble / f"member_{i}.onnx"
        ).stat().st_size
    fp32 = load_ensemble(ensemble, backend="onnxruntime")
    int8 = load_ensemble(ensemble, backend="onnxruntime-int8")
    assert int8.backend == "onnxruntime-int8"
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (16, s, s, 3), dtype=np.uint8) for s in fp32.sizes}
    a, b = fp32.predict_probs(lambda s: images[s]), int8.predict_probs(lambda s: images[s])
    assert np.allclose(a.sum(1), 1, atol=1e-5) and np.allclose(b.sum(1), 1, atol=1e-5)
    assert np.abs(a - b).max() < 0.2  # quantisation noise, not another model
    # the test figure comes from evaluate with the int8 backend
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(ensemble), "--data", str(finalized.data), "--out", str(out)]
    assert main([*argv, "--backend", "onnxruntime-int8"]) == 0
    assert json.loads((out / "report.json").read_text())["model"]["backend"] == "onnxruntime-int8"


def test_a_member_that_loses_more_than_the_tolerance_stays_float(finalized, ensemble, capsys):
    # tolerance 0 and an int8 UAR that must not drop at all: a member that lost any UAR keeps its
    # float file; one that lost nothing is int8
    rc, manifest, err = _quantize(
        ensemble, finalized.data, capsys, "--tolerance", "0", "--calibration-images", "4"
    )
    assert rc == 0, err
    q = manifest["onnx_int8"]
    for i, row in enumerate(q["members"]):
        kept = row["val_uar_fp32"] - row["val_uar_int8"] <= 0
        assert row["quantized"] == kept == q["quantized"][i]
        assert q["files"][i] == (f"member_{i}.int8.onnx" if kept else f"member_{i}.onnx")
        assert (ensemble / f"member_{i}.int8.onnx").exists() == kept  # refused files are removed
    load_ensemble(ensemble, backend="onnxruntime-int8")  # loads whatever the mix


def test_quantize_needs_the_training_data_and_says_so(ensemble, tmp_path, capsys):
    assert main(["export-onnx", "--model", str(ensemble), "--quantize", "int8"]) == 2
    assert "give --data" in capsys.readouterr().err
    assert main(["export-onnx", "--model", str(ensemble), "--quantize", "int4", "--data", "."]) == 2
    assert "the only quantisation is int8" in capsys.readouterr().err


def test_finalize_quantize_reports_int8_validation_and_test_uar_and_latency(finalized, tmp_path):
    from fersearch.finalize import finalize

    out = tmp_path / "final"
    shutil.copytree(finalized.out, out)
    finalize("fin", 3, out, finalized.storage, latency_images=2, onnx=True, quantize="int8")  # members reused
    q = json.loads((out / "report.json").read_text())["deployment"]["int8"]
    assert 1 <= len(q["members"]) <= 3 and q["tolerance"] == 0.01  # the deployed members
    for key in ("test_uar_float", "test_uar_int8"):
        assert 0 <= q[key] <= 1
    assert q["latency_ms_per_image_int8"] > 0 and q["latency_ms_per_image_float_onnx"] > 0
    assert set(q["ensemble"]) == {"val_uar_fp32", "val_uar_int8"}
    assert (
        "Int8 members" in (out / "report.md").read_text()
        and "Int8 members" in (out / "report.html").read_text()
    )
    load_ensemble(out / "ensemble", backend="onnxruntime-int8")


def test_finalize_quantize_needs_onnx(finalized, tmp_path):
    from fersearch.errors import InvalidArgument
    from fersearch.finalize import finalize

    with pytest.raises(InvalidArgument, match="needs --onnx"):
        finalize("fin", 3, tmp_path / "x", finalized.storage, onnx=False, quantize="int8")
