"""finalize under a deployment budget: members and TTA views chosen on validation so that the
exported ensemble meets it, measured for real, reported with every candidate; an impossible
budget is one clear error. The members of the shared finalize run are reused (none retrains)."""

from __future__ import annotations

import json
import shutil

import pytest

from fersearch.cli import main
from fersearch.ensemble import load_ensemble
from fersearch.errors import ModelError
from fersearch.finalize import finalize
from fersearch.finalize.budget import Budget


def _rerun(finalized, tmp_path, budget: Budget):
    out = tmp_path / "final"
    shutil.copytree(finalized.out, out)
    paths = finalize("fin", 3, out, finalized.storage, latency_images=2, onnx=False, budget=budget)
    return out, paths, json.loads((out / "report.json").read_text())


def test_a_size_budget_for_one_member_ships_one_member_within_it(finalized, tmp_path):
    base = json.loads((finalized.out / "report.json").read_text())
    members_mib = sorted(
        (finalized.out / "ensemble" / m["file"]).stat().st_size / 2**20
        for m in json.loads((finalized.out / "ensemble" / "manifest.json").read_text())["members"]
    )
    assert base["deployment"].get("budget") is None  # no budget: nothing about one in the report
    limit = members_mib[0] * 1.5  # room for one member, not two
    out, paths, report = _rerun(finalized, tmp_path, Budget(max_size_mb=limit))
    b = report["deployment"]["budget"]
    assert b["budget"] == {"max_latency_ms": None, "max_size_mb": limit, "threads": 1}
    chosen = [c for c in b["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and len(chosen[0]["members"]) == 1
    assert all(c["size_mib"] <= limit for c in b["candidates"])  # only affordable points are candidates
    ens = load_ensemble(out / "ensemble")
    assert len(ens.models) == 1 and ens.view_set == chosen[0]["view_set"]
    assert b["measured_members_mib"] <= limit and b["within"] is True
    assert len(b["member_costs"]) == 3 and all(c["size_mib"] > 0 for c in b["member_costs"])
    assert paths["budget_png"].stat().st_size > 0
    assert "Deployment budget" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "Deployment budget" in html and "candidates under the deployment budget" in html


def test_a_latency_budget_is_met_by_the_exported_ensemble(finalized, tmp_path):
    out, _, report = _rerun(finalized, tmp_path, Budget(max_latency_ms=10_000))
    b = report["deployment"]["budget"]
    chosen = next(c for c in b["candidates"] if c["chosen"])
    assert chosen["latency_ms"] <= 10_000 and b["measured_latency_ms_per_image_median"] <= 10_000
    assert b["within"] is True
    # every view set the members were scored on has candidates, each a greedy prefix
    sets = {c["view_set"] for c in b["candidates"]}
    assert "none" in sets
    for s in sets:
        sizes = [len(c["members"]) for c in b["candidates"] if c["view_set"] == s]
        assert sizes == list(range(1, len(sizes) + 1))


def test_an_impossible_budget_is_one_clear_error(finalized, tmp_path, capsys):
    with pytest.raises(ModelError, match="no member meets the deployment budget"):
        _rerun(finalized, tmp_path, Budget(max_size_mb=0.001))
    out = tmp_path / "cli"
    shutil.copytree(finalized.out, out)
    argv = ["finalize", "--study", "fin", "--out", str(out), "--top", "3", "--storage", finalized.storage]
    assert main([*argv, "--no-onnx", "--max-size-mb", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "no member meets the deployment budget" in err and "Traceback" not in err
