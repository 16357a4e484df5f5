"""The progress bar shown by long commands (data inspect / prepare, synth, demo)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fersearch.progress import bar


def test_bar_appears_with_its_first_update_only():
    out = io.StringIO()
    console = Console(file=out, width=100)
    with pytest.raises(ValueError), bar("checking images", console):
        raise ValueError("an unknown layout, before any image was checked")
    assert out.getvalue() == ""  # the error is printed alone, with no empty bar before it
    with bar("checking images", console):
        pass  # nothing to do (a cache already built)
    assert out.getvalue() == ""
    with bar("checking images", console) as update:
        update(1, 3)
        update(3, 3)
    assert "checking images" in out.getvalue() and "3/3" in out.getvalue()
