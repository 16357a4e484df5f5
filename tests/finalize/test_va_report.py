"""finalize on AffectNet with a VA-head member: the report shows valence/arousal CCC and RMSE on
test (issue #19 item 5); a run without VA shows none (test_pipeline's reports)."""

from __future__ import annotations

import json

from tests.test_affectnet_va import dataset, write_affectnet

from .conftest import make_study, torch_threads


def test_finalize_reports_va_on_test_for_va_members(tmp_path):
    from fersearch.finalize import finalize

    data = tmp_path / "affectnet"
    write_affectnet(data, dataset(n_train=64, n_test=16))
    storage = f"journal:{tmp_path / 'study.journal'}"
    make_study(
        storage, data, [{"value": 0.5, "params": {"lr": 3e-3, "va_head": True, "va_loss_weight": 1.0}}]
    )
    with torch_threads(1):
        paths = finalize("fin", 1, tmp_path / "final", storage, latency_images=2, onnx=False, tta_mode="none")
    report = json.loads((tmp_path / "final" / "report.json").read_text())
    va = report["va"]
    assert va["n"] == 16 and va["labelled"] == 16 and len(va["members"]) == 1
    for scores in (va["ensemble"], va["members"][0]):
        assert 0 <= scores["va_rmse"] <= 2 and -1 <= scores["va_ccc_valence"] <= 1
    # one member: the ensemble's VA is that member's
    assert va["ensemble"]["va_rmse"] == va["members"][0]["va_rmse"]
    md = (tmp_path / "final" / "report.md").read_text()
    assert "## Valence and arousal (test)" in md and "CCC valence" in md
    html = (tmp_path / "final" / "report.html").read_text()
    assert 'id="va"' in html and "CCC arousal" in html
    assert paths["ensemble"].is_dir()
