"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing lost."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest

from fersearch.cli import main


def _run(capsys, argv) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _search(data, space, storage: str, *extra: str, study: str = "x") -> list[str]:
    """The argv of `fersearch search`."""
    return [
        "search",
        "--study",
        study,
        "--data",
        str(data),
        "--space",
        str(space),
        "--storage",
        storage,
        *extra,
    ]


def _one_line_error(rc: int, err: str) -> str:
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("fersearch: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_missing_data_directory(capsys, tmp_path, journal_url):
    line = _one_line_error(
        *_run(
            capsys,
            _search(str(tmp_path / "nope"), "demo", journal_url),
        )
    )
    assert "does not exist" in line and "fersearch synth" in line


def test_directory_of_unknown_layout(capsys, tmp_path, journal_url):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    line = _one_line_error(
        *_run(
            capsys,
            _search(str(tmp_path), "demo", journal_url),
        )
    )
    assert "not a known dataset layout" in line and "notes.txt" in line and "rafdb" in line


def test_label_out_of_range_names_file_and_line(capsys, tmp_path, journal_url):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 3\ntrain_00002.jpg 9\n")
    line = _one_line_error(
        *_run(
            capsys,
            _search(str(tmp_path), "demo", journal_url),
        )
    )
    assert "list_patition_label.txt:2" in line and "out of range" in line


def test_unknown_study_lists_existing(capsys, journal_url):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal_url.removeprefix("journal:"))
    )
    optuna.create_study(study_name="alpha", storage=storage)
    line = _one_line_error(*_run(capsys, ["worker", "--study", "beta", "--storage", journal_url]))
    assert "beta" in line and "alpha" in line


def test_unknown_backbone_in_space(capsys, tmp_path, tiny_data, journal_url):
    space = tmp_path / "bad.yaml"
    space.write_text("params:\n  backbone: {type: categorical, choices: [convnxt_tiny]}\n")
    line = _one_line_error(
        *_run(
            capsys,
            _search(str(tiny_data), str(space), journal_url),
        )
    )
    assert "bad.yaml" in line and "convnxt_tiny" in line and "convnext_tiny" in line


def test_invalid_space_low_above_high(capsys, tmp_path, tiny_data, journal_url):
    space = tmp_path / "bad.yaml"
    space.write_text("params:\n  lr: {type: float, low: 0.1, high: 0.001}\n")
    line = _one_line_error(
        *_run(
            capsys,
            _search(str(tiny_data), str(space), journal_url),
        )
    )
    assert "bad.yaml" in line and "params.lr" in line and "low (0.1) > high (0.001)" in line


def test_unreachable_database_masks_password(capsys, tiny_data):
    url = "postgresql+psycopg2://fer:s3cret-pw@127.0.0.1:1/nodb"
    t0 = time.monotonic()
    line = _one_line_error(*_run(capsys, _search(tiny_data, "demo", url)))
    assert time.monotonic() - t0 < 30
    assert "cannot open study storage" in line and "s3cret-pw" not in line and "fer:***@" in line


def test_finalize_nothing_to_lose(capsys, tiny_data, tiny_space, journal_url, tmp_path):
    """A failing command leaves the study as it was."""
    from fersearch.search.api import StudyOptions, create_or_join

    create_or_join(StudyOptions("kept", tiny_data, str(tiny_space), journal_url, n_trials=3))
    line = _one_line_error(
        *_run(
            capsys,
            [
                "finalize",
                "--study",
                "kept",
                "--top",
                "2",
                "--out",
                str(tmp_path / "o"),
                "--storage",
                journal_url,
            ],
        )
    )
    assert "no complete trials" in line and "fersearch worker --study kept" in line
    line = _one_line_error(
        *_run(
            capsys,
            [
                "finalize",
                "--study",
                "kept",
                "--top",
                "0",
                "--out",
                str(tmp_path / "o"),
                "--storage",
                journal_url,
            ],
        )
    )
    assert "--top" in line
    from fersearch.search.storage import open_storage

    study = optuna.load_study(study_name="kept", storage=open_storage(journal_url))
    assert study.user_attrs["fersearch:n_trials"] == 3


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fersearch.cli",
            "finalize",
            "--study",
            "s",
            "--out",
            str(tmp_path),
            "--storage",
            f"journal:{tmp_path / 'j.log'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "no study named 's'" in proc.stderr


@pytest.mark.parametrize("argv", [["search", "--study", "x"], ["finalize", "--bogus"]])
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
