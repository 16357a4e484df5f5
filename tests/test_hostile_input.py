"""Hostile input (issue #15): study names, storage URLs and files, search spaces, exported
ensembles, output files. Each case is one clear line on stderr and exit code 2 (or is handled
safely), never a traceback, a write or delete outside its folder, or silently wrong state."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)
from rich.console import Console
from test_cli_errors import _one_line_error, _run

from fersearch.cli import main
from fersearch.config import DataConfig
from fersearch.search.space import parse_space
from fersearch.search.storage import mask_url
from fersearch.search.study import create_study
from fersearch.search.trial_state import checkpoint_dir_for, remove_training_state, study_folder_name

# ------------------------------------------------------------------ 7. study names and paths


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_study_name_with_dots_and_slashes_keeps_checkpoints_in_the_artifacts_folder(
    capsys, tmp_path, tiny_data, tiny_space, monkeypatch
):
    monkeypatch.delenv("FERSEARCH_ARTIFACTS", raising=False)
    home = tmp_path / "a" / "b"  # the journal's folder is the artifacts folder
    argv = ["search", "--study", "../../../escaped", "--data", str(tiny_data), "--space", str(tiny_space)]
    argv += ["--storage", f"journal:{home / 'j.log'}", "--n-trials", "1"]
    rc, err = _run(capsys, argv)
    assert rc == 0, err
    outside = _files_under(tmp_path) - _files_under(home)
    assert not outside, f"written outside the artifacts folder: {sorted(map(str, outside))}"
    [folder] = (home / "checkpoints").iterdir()
    assert folder.name.startswith("escaped+") and (folder / "trial_0" / "best.json").is_file()


@pytest.mark.parametrize(
    "name", ["../../../../tmp/x", "..", ".", "/etc", "a/b", "a\\b", "C:\\x", "x\0y", "é" * 300, " "]
)
def test_any_optuna_study_name_maps_to_one_folder_inside_checkpoints(tmp_path, name):
    root = (tmp_path / "checkpoints").resolve()
    path = checkpoint_dir_for(tmp_path, name, 7)
    path.mkdir(parents=True)  # a real folder: the name is a usable path component
    assert path.resolve().parent.parent == root and path.name == "trial_7"


def test_distinct_names_get_distinct_folders_and_plain_names_keep_theirs():
    names = ["a/b", "a\\b", "a b", "a-b", "a?b", "..a-b", "s1", "raf-convnext_v2.1"]
    folders = [study_folder_name(n) for n in names]
    assert len(set(folders)) == len(names)
    assert study_folder_name("s1") == "s1" and study_folder_name("raf-convnext_v2.1") == "raf-convnext_v2.1"


@pytest.mark.parametrize(
    "name, said",
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("[/bold]oops", "style tag"),
        ("[/]x[red]", "style tag"),
        ("s1\n[fake] line", "control character"),
        ("\x1b[31mred", "control character"),
        (" s1", "whitespace"),
    ],
)
def test_unprintable_study_names_are_refused_before_anything_is_created(
    capsys, tmp_path, tiny_data, tiny_space, name, said
):
    journal = tmp_path / "j.log"
    argv = ["create", "--study", name, "--data", str(tiny_data), "--space", str(tiny_space)]
    line = _one_line_error(*_run(capsys, [*argv, "--storage", f"journal:{journal}"]))
    assert "--study" in line and said in line
    assert not journal.exists() or not optuna.get_all_study_names(
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    )


def test_library_prints_a_study_name_with_brackets_literally(tmp_path, tiny_data, tiny_space):
    from fersearch.search.api import create_from_cli

    console = Console(record=True, width=400)
    create_from_cli(
        "[red]x[/red]", tiny_data, str(tiny_space), f"journal:{tmp_path / 'j.log'}", 2, console=console
    )
    assert "created study [red]x[/red] in" in console.export_text()


def test_commands_print_user_paths_literally(capsys, tmp_path):
    out = tmp_path / "[bold]faces"
    rc, err = _run(capsys, ["synth", "--out", str(out), "--n", "28", "--size", "32"])
    assert rc == 0 and f"to {out}" in err.replace("\n", "")  # long lines are folded


def test_remove_training_state_never_deletes_outside_its_folder(tmp_path):
    folder = tmp_path / "checkpoints" / "s" / "trial_0"
    folder.mkdir(parents=True)
    victims = [tmp_path / "victim.safetensors", tmp_path / "abs.safetensors", tmp_path / "keep.txt"]
    for v in victims:
        v.write_text("precious")
    (folder / "best.json").write_text("{}")
    (folder / "last.json").write_text(json.dumps({"tensors": "../../../victim.safetensors"}))
    (folder / "interrupted.json").write_text(json.dumps({"tensors": str(victims[1])}))
    remove_training_state(folder)
    assert all(v.read_text() == "precious" for v in victims)
    assert not (folder / "last.json").exists() and not (folder / "interrupted.json").exists()
    assert (folder / "best.json").exists()

    # A real checkpoint's tensors still go; a JSON list (not a checkpoint) is left alone.
    (folder / "last-0123abcd.safetensors").write_bytes(b"x")
    (folder / "last.json").write_text(json.dumps({"tensors": "last-0123abcd.safetensors"}))
    (folder / "interrupted.json").write_text(json.dumps(["../../../keep.txt"]))
    remove_training_state(folder)
    assert not (folder / "last-0123abcd.safetensors").exists() and not (folder / "last.json").exists()
    assert (folder / "interrupted.json").exists() and victims[2].read_text() == "precious"


# ------------------------------------------------------------------ 11. storage URLs and files


def _journal_with_a_finished_trial(path: Path) -> bytes:
    """A real fersearch study 's' in a journal with one COMPLETE trial, whose completion is the
    journal's last record."""
    data = DataConfig(root=str(path.parent))
    study, _ = create_study("s", parse_space(TINY_SPACE), data, 2, f"journal:{path}")
    trial = study.ask()
    study.tell(trial, 0.5)
    return path.read_bytes()


def _status(capsys, journal: Path) -> tuple[int, str]:
    return _run(capsys, ["status", "--study", "s", "--storage", f"journal:{journal}"])


def test_journal_path_that_is_a_directory(capsys, tmp_path):
    line = _one_line_error(*_status(capsys, tmp_path))
    assert "is a directory" in line and str(tmp_path / "journal.log") in line


def test_journal_with_garbage_appended_names_the_line_and_the_repair(capsys, tmp_path):
    journal = tmp_path / "j.log"
    good = _journal_with_a_finished_trial(journal)
    n = good.count(b"\n")
    journal.write_bytes(good + b"garbage\n")
    line = _one_line_error(*_status(capsys, journal))
    assert str(journal) in line and f"line {n + 1}" in line and "Nothing was changed" in line
    assert journal.read_bytes() == good + b"garbage\n"
    # The repair the message gives works: afterwards the study reads again.
    command = line[line.index("`") + 1 : line.rindex("`")]
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    assert journal.read_bytes() == good
    assert main(["status", "--study", "s", "--storage", f"journal:{journal}"]) == 0
    assert "study s: 1 complete" in capsys.readouterr().out


def test_journal_truncated_mid_record_is_reported_not_left_running(capsys, tmp_path):
    journal = tmp_path / "j.log"
    good = _journal_with_a_finished_trial(journal)
    last_start = good.rindex(b"\n", 0, len(good) - 1) + 1  # the trial's completion record
    journal.write_bytes(good[: last_start + 30])  # without the check: the trial shows RUNNING
    line = _one_line_error(*_status(capsys, journal))
    n = good.count(b"\n")
    assert f"line {n}" in line and "incomplete last record" in line and f"head -n {n - 1}" in line


def test_journal_garbage_in_the_middle_names_its_line(capsys, tmp_path):
    journal = tmp_path / "j.log"
    lines = _journal_with_a_finished_trial(journal).splitlines(keepends=True)
    journal.write_bytes(b"".join([*lines[:2], b'{"op_code": \n', *lines[2:]]))
    line = _one_line_error(*_status(capsys, journal))
    assert "line 3" in line and "not a JSON journal record" in line and "after it are dropped" in line


def test_random_bytes_are_not_a_journal(capsys, tmp_path):
    journal = tmp_path / "j.log"
    journal.write_bytes(bytes(range(256)) * 4)
    line = _one_line_error(*_status(capsys, journal))
    assert "is not an Optuna study journal" in line


@pytest.mark.parametrize("listening", [False, True], ids=["closed-port", "silent-port"])
def test_grpc_to_a_closed_or_silent_port_is_one_line(capsys, monkeypatch, listening):
    import fersearch.search.storage as storage

    monkeypatch.setattr(storage, "GRPC_CONNECT_TIMEOUT_S", 2.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if listening:
        sock.listen()  # accepts TCP, never speaks gRPC
    else:
        sock.close()
    try:
        t0 = time.monotonic()
        line = _one_line_error(
            *_run(capsys, ["status", "--study", "s", "--storage", f"grpc://127.0.0.1:{port}"])
        )
    finally:
        sock.close()
    assert time.monotonic() - t0 < 20
    assert f"grpc://127.0.0.1:{port}" in line and "fersearch storage-proxy" in line


def test_a_password_with_at_signs_is_never_printed(capsys):
    url = "postgresql+psycopg2://fer:sec@retPW@127.0.0.1:1/nodb"
    line = _one_line_error(*_run(capsys, ["status", "--study", "s", "--storage", url]))
    assert "sec" not in line and "retPW" not in line and "fer:***@127.0.0.1:1/nodb" in line
    assert "%40" in line  # how to write such a password


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://user:sec@retPW@host/db", "postgresql://user:***@host/db"),
        ("postgresql://us@er:p:w/x@host:5432/db", "postgresql://us@er:***@host:5432/db"),
        ("postgresql://user@host:5432/db", "postgresql://user@host:5432/db"),
    ],
)
def test_mask_url_hides_everything_up_to_the_last_at(url, masked):
    assert mask_url(url) == masked
