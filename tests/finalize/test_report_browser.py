"""report.html opened by a real headless Chromium (Debian's, driven by Playwright): it renders,
shows the numbers of report.json, and every embedded figure decodes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _need_browser():
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[dev]')")
    if missing:
        message = "cannot open the report in a browser: missing " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_report_html_renders_in_headless_chromium(finalized, tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    report = json.loads((finalized.out / "report.json").read_text())
    html_path = finalized.out / "report.html"
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri())
            page.wait_for_load_state("load")
            assert page.title() == f"fersearch report: {report['study']}"
            # the headline numbers are the report's, and visible
            for key in ("uar", "war", "macro_f1"):
                card = page.locator(f"#test-{key}")
                assert card.is_visible()
                assert card.inner_text() == f"{report['test'][key]:.4f}"
            applied = report["recipe"]["calibration"]["applied"]
            assert page.locator("#calibration-applied").inner_text() == (
                "applied" if applied else "not applied"
            )
            text = page.locator("body").inner_text()
            for m in report["members"]:
                assert m["id"] in text
            assert f"{report['deployment']['latency_ms_per_image_median']:.1f} ms" in text
            for pair in report["test"]["most_confused"]:
                assert pair["predicted"] in text
            # every figure is embedded and decodes to a real bitmap
            images = page.evaluate(
                "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
                " w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 22)}))"
            )
            # the search's best so far, per-class scores and the confusion matrix
            assert len(images) == 3, images
            assert images[0]["alt"] == "validation UAR per trial and best so far"
            assert page.locator("#search-best").inner_text() == f"{report['search']['best_val_uar']:.4f}"
            baseline = page.locator("#baseline-uar").inner_text()
            assert baseline.startswith(f"chance {report['baselines']['chance_uar']:.4f}")
            for img in images:
                assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
                assert img["src"] == "data:image/png;base64,"
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    # self-contained: nothing but the file itself (and its data: URIs) was requested
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert (tmp_path / "report.png").stat().st_size > 10_000
