"""bench/gpu_check.py --device cpu --quick: the GPU check's code paths run on the CPU, so the
script that the first GPU runs cannot rot between GPU sessions."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _fit_variants() -> list[str]:
    """Every fit variant the script knows, the one its full check leaves out by default too."""
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return list(module.FIT_VARIANTS)


@pytest.mark.slow
def test_quick_cpu_run_measures_every_section(tmp_path):
    env = {**os.environ, "FERSEARCH_LOCK_DIR": str(tmp_path / "locks")}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)]
        + ["--variants", *_fit_variants()],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # the bound for the quick run
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    assert results["quick"] is True and results["environment"]["device"] == "cpu"

    steps = {row["arch"]: row for row in results["steps"]}
    assert len(steps) == 5 and any("ir50" in a for a in steps) and any("clip" in a for a in steps)
    for row in steps.values():
        rates = [row[k] for k in ("model_only", "fit", "fit+cpu_aug+prefetch", "fit+cpu_aug-prefetch")]
        assert all(r > 0 for r in rates + [row["fit+device_aug"]]), row
        assert row["fit/model_only"] == pytest.approx(row["fit"] / row["model_only"])

    memory = results["memory"]
    assert [m["trial"] for m in memory] == [0, 1, 2, 3, 4]  # one reading after each trial
    assert all(m["rss_mib"] > 0 for m in memory)

    one, two = results["workers"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["complete"] == two["complete"] == 5  # the whole budget, shared by two processes
    assert two["speed_up"] == pytest.approx(one["seconds"] / two["seconds"])

    assert [p["batch"] for p in results["predict"]] == [1, 32]
    assert all(p["median_ms"] > 0 for p in results["predict"])
    assert set(results["seconds"]) == {"steps", "memory", "workers", "predict"}
    assert "results in" in proc.stdout
