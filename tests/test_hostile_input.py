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
    from fersearch.search.api import StudyOptions, create_or_join

    console = Console(record=True, width=400)
    options = StudyOptions("[red]x[/red]", tiny_data, str(tiny_space), f"journal:{tmp_path / 'j.log'}", 2)
    create_or_join(options, console)
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


def test_only_folders_inside_the_checkpoints_count_as_a_trials_own(tmp_path):
    from fersearch.search.trial_state import in_checkpoints

    own = checkpoint_dir_for(tmp_path, "s", 3)
    own.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (own.parent / "link").symlink_to(tmp_path / "elsewhere")
    assert in_checkpoints(tmp_path, own) and in_checkpoints(tmp_path, own / "last.json")
    for outside in [tmp_path / "elsewhere", own.parent / "link", own / ".." / ".." / "..", "/etc", "x\0y"]:
        assert not in_checkpoints(tmp_path, outside), outside


def test_a_new_checkpoint_never_deletes_what_a_tampered_one_names_outside(tmp_path):
    import torch

    from fersearch.train.checkpoint import save_checkpoint

    folder = tmp_path / "trial_0"
    folder.mkdir()
    victim = tmp_path / "victim.safetensors"
    victim.write_text("precious")
    (folder / "last.json").write_text(json.dumps({"tensors": "../victim.safetensors"}))
    save_checkpoint(folder, "last", {"w": torch.zeros(2)}, {"epoch": 1})
    assert victim.read_text() == "precious"
    assert json.loads((folder / "last.json").read_text())["epoch"] == 1


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

    monkeypatch.setenv(storage.GRPC_TIMEOUT_ENV, "2")
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


def test_a_grpc_timeout_that_is_not_a_number_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("FERSEARCH_GRPC_CONNECT_TIMEOUT", "soon")
    line = _one_line_error(*_run(capsys, ["status", "--study", "s", "--storage", "grpc://127.0.0.1:1"]))
    assert "FERSEARCH_GRPC_CONNECT_TIMEOUT must be a number of seconds (got 'soon')" in line


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


# ------------------------------------------------------------------ 10. search spaces and options

_SPACE_HEAD = "fixed: {backbone: test_resnet, warmup_epochs: 0}\n"


@pytest.mark.parametrize(
    "text, said",
    [
        (
            "params:\n  lr: {type: float, low: 1.0e-4, high: .inf}\n",
            "'params.lr.high': Input should be a finite",
        ),
        ("params:\n  lr: {type: float, low: .nan, high: 0.1}\n", "'params.lr.low': Input should be a finite"),
        ("params:\n  batch_size: {type: int, low: 8, high: 64, step: 0}\n", "'params.batch_size.step'"),
        ("params:\n  batch_size: {type: int, low: 8, high: 64, step: -8}\n", "'params.batch_size.step'"),
        ("params:\n  lr: {type: float, low: 0.001, high: 0.1, step: 0}\n", "'params.lr.step'"),
        ("params:\n  image_size: {type: categorical, choices: [32, 200000]}\n", "less than or equal to 1024"),
        ("params:\n  epochs: {type: int, low: 1, high: 1000000000000000000000000000000}\n", "'epochs'"),
        ("params:\n  epochs: {type: float, low: 1, high: 8}\n", "use type: int"),
        ("params:\n  head: {type: categorical, choices: [linear, [mlp]]}\n", "choice 1 is ['mlp']"),
        ("sampler: {name: tpe, seed: -1}\n", "'sampler.seed'"),
    ],
)
def test_space_values_every_worker_would_crash_on_are_refused_at_create(
    capsys, tmp_path, tiny_data, text, said
):
    space = tmp_path / "space.yaml"
    space.write_text(_SPACE_HEAD + text)
    journal = tmp_path / "j.log"
    argv = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    line = _one_line_error(*_run(capsys, [*argv, "--storage", f"journal:{journal}"]))
    assert "space.yaml" in line and said in line
    assert not journal.exists()  # refused before the storage is even opened


@pytest.mark.parametrize("fixed", ["epochs: 1000000000", "epochs: 1.0e+30", "image_size: 200000"])
def test_fixed_sizes_beyond_reason_are_refused(capsys, tmp_path, tiny_data, fixed):
    space = tmp_path / "space.yaml"
    space.write_text(f"fixed: {{{fixed}}}\n")
    argv = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    line = _one_line_error(*_run(capsys, [*argv, "--storage", f"journal:{tmp_path / 'j.log'}"]))
    assert "fixed" in line and f"'{fixed.split(':')[0]}'" in line


def test_a_duplicated_key_is_an_error_not_a_silent_merge(capsys, tmp_path, tiny_data):
    space = tmp_path / "space.yaml"
    space.write_text(
        _SPACE_HEAD + "params:\n  lr: {type: float, low: 0.001, high: 0.1}\nfixed: {epochs: 50}\n"
    )
    argv = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    line = _one_line_error(*_run(capsys, [*argv, "--storage", f"journal:{tmp_path / 'j.log'}"]))
    assert "key 'fixed' appears twice" in line and "line 4" in line and "first on line 1" in line


@pytest.mark.parametrize(
    "content, said",
    [
        (bytes(range(256)), "not a UTF-8 text file"),
        (b"fixed: {epochs: 3\nparams: [\n", "not valid YAML: line 2"),
        (b"- a list\n- of things\n", "expected a mapping"),
    ],
)
def test_space_files_that_are_not_yaml_mappings(capsys, tmp_path, tiny_data, content, said):
    space = tmp_path / "space.yaml"
    space.write_bytes(content)
    argv = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    line = _one_line_error(*_run(capsys, [*argv, "--storage", f"journal:{tmp_path / 'j.log'}"]))
    assert said in line


@pytest.mark.parametrize(
    "text, said",
    [
        ("params:\n  lr: {type: flot, low: 0.001, high: 0.1}\n", "'params.lr.type': got 'flot'; valid:"),
        ("params:\n  lr: {low: 0.001, high: 0.1}\n", "'params.lr': needs a 'type' key"),
        (
            "params:\n  lr: {type: float, low: x, high: 0.1}\n",
            "'params.lr.low': Input should be a valid number",
        ),
        ("fixed: {pretrained: [1, 2]}\n", "'pretrained': Input should be a valid boolean or a valid string"),
    ],
)
def test_union_errors_name_the_one_thing_wrong(tmp_path, text, said):
    from fersearch.errors import SearchSpaceError
    from fersearch.search.space import load_space

    space = tmp_path / "space.yaml"
    space.write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(space)
    message = str(info.value)
    assert said in message and len(message) < 200 + len(str(space)), message
    assert "IntParam" not in message and "CategoricalParam" not in message and "function-after" not in message


@pytest.mark.parametrize("fraction", ["1.5", "0", "-0.1", "nan", "0.5"])
def test_val_fraction_outside_its_bounds(capsys, tiny_data, fraction):
    line = _one_line_error(
        *_run(capsys, ["data", "prepare", str(tiny_data), "--size", "32", "--val-fraction", fraction])
    )
    assert "--val-fraction must be above 0 and below 0.5" in line
    assert not list((tiny_data / "fersearch_splits").glob(f"val_f{fraction}_*"))


# ------------------------------------------------------------------ 12. exported ensembles

CLASSES = ["anger", "-sad", "joy"]  # a class name a spreadsheet would read as a formula


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> Path:
    """A real exported ensemble (save_ensemble) of one tiny random-init member."""
    import torch

    from fersearch.config import build_config
    from fersearch.ensemble import save_ensemble
    from fersearch.models import create_model

    torch.manual_seed(0)
    config = build_config({"data": {"root": "."}, "backbone": "test_resnet", "image_size": 32})
    model = create_model(config, len(CLASSES), CLASSES)
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    save_ensemble(out, [(model, {"id": "t0_s0", "config": config.to_json_dict()})], CLASSES, [1.0])
    return out


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "face.png"
    Image.new("RGB", (40, 40), (120, 90, 70)).save(path)
    return path


def _tampered(ensemble: Path, tmp_path: Path, change) -> Path:
    import shutil

    copy = tmp_path / "ensemble"
    shutil.copytree(ensemble, copy, symlinks=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    result = change(manifest, copy)
    # A change returns bytes to write instead of the (changed) manifest.
    (copy / "manifest.json").write_bytes(
        result if isinstance(result, bytes) else json.dumps(manifest).encode()
    )
    return copy


def _member(m):
    return m["members"][0]


def _link_out(m, d):
    (d / "member_0.safetensors").unlink()
    (d / "member_0.safetensors").symlink_to(d.parent.parent / "elsewhere.safetensors")


TAMPERING = {
    "no members": (lambda m, d: m.pop("members"), "'members': required"),
    "no class names": (lambda m, d: m.pop("class_names"), "'class_names': required"),
    "empty members": (lambda m, d: m.update(members=[]), "'members': List should have at least 1"),
    "bias of the wrong length": (
        lambda m, d: m["calibration"].update(bias=[0.0]),
        "calibration.bias has 1 values for 3 classes",
    ),
    "a JSON list": (lambda m, d: json.dumps([m]).encode(), "must hold a JSON object, not a list"),
    "image size 0": (lambda m, d: _member(m)["config"].update(image_size=0), "greater than or equal to 16"),
    "image size 60000": (
        lambda m, d: _member(m)["config"].update(image_size=60000),
        "less than or equal to 1024",
    ),
    "preprocess size 60000": (
        lambda m, d: _member(m)["preprocess"].update(image_size=60000),
        "'members.0.preprocess.image_size'",
    ),
    "NaN weight": (lambda m, d: m.update(weights=[float("nan")]), "'weights.0': Input should be a finite"),
    "infinite bias": (
        lambda m, d: m["calibration"].update(bias=[0.0, float("inf"), 0.0]),
        "'calibration.bias.1': Input should be a finite",
    ),
    "no sha256": (lambda m, d: _member(m).pop("sha256"), "'members.0.sha256': required"),
    "member outside": (
        lambda m, d: _member(m).update(file="../elsewhere.safetensors"),
        "is not a file name inside the ensemble folder",
    ),
    "member absolute": (lambda m, d: _member(m).update(file="/etc/passwd"), "is not a file name inside"),
    "member linked outside": (_link_out, "leads outside"),
    "unknown view set": (lambda m, d: m["tta"].update(view_set="bogus"), "'tta.view_set'"),
    "onnx file without hash": (
        lambda m, d: m.update(onnx={"files": ["member_0.onnx"]}),
        "1 ONNX files but 0 SHA-256 values",
    ),
    "nested beyond reason": (lambda m, d: b"[" * 100000 + b"]" * 100000, "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_manifest_is_one_clear_error(capsys, tmp_path, ensemble, face, case):
    change, said = TAMPERING[case]
    (tmp_path / "elsewhere.safetensors").write_bytes((ensemble / "member_0.safetensors").read_bytes())
    copy = _tampered(ensemble, tmp_path, change)
    line = _one_line_error(*_run(capsys, ["predict", "--model", str(copy), str(face), "--backend", "torch"]))
    assert "manifest.json" in line and said in line


def test_ensembles_as_finalize_writes_them_still_load(capsys, tmp_path, ensemble, face):
    # As exported, and with the note finalize leaves when the optional ONNX export failed.
    noted = _tampered(ensemble, tmp_path, lambda m, d: m.update(onnx={"files": [], "error": "no onnx"}))
    for folder in (ensemble, noted):
        out = tmp_path / f"{folder.parent.name}.csv"
        rc, err = _run(capsys, ["predict", "--model", str(folder), str(face), "--csv", str(out)])
        assert rc == 0, err
        assert len(out.read_text().splitlines()) == 2


# ------------------------------------------------------------------ 13. output files


def test_csv_cells_never_start_a_formula(capsys, tmp_path, ensemble, face, monkeypatch):
    import csv
    import shutil

    name = "=cmd|' calc'!A0.jpg"
    shutil.copy(face, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, ["predict", "--model", str(ensemble), name, "--csv", "out.csv", "--top", "3"])
    assert rc == 0, err
    with open(tmp_path / "out.csv", newline="") as fh:
        header, row = list(csv.reader(fh))
    assert row[0] == "'" + name
    assert "'-sad" in row[8:14] and "-sad" not in row  # among top1..top3
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in header + row)


def test_predict_csv_that_is_a_folder_is_refused_before_any_work(capsys, tmp_path, face):
    line = _one_line_error(
        *_run(capsys, ["predict", "--model", str(tmp_path / "no-model"), str(face), "--csv", str(tmp_path)])
    )
    assert "--csv" in line and "is a folder" in line


@pytest.mark.parametrize("verb", ["finalize", "explain"])
def test_out_that_is_an_existing_file_is_refused_before_any_work(capsys, tmp_path, face, verb):
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    if verb == "finalize":
        argv = ["finalize", "--study", "nope", "--out", str(target), "--storage", f"journal:{tmp_path / 'j'}"]
    else:
        argv = ["explain", "--model", str(tmp_path / "no-model"), str(face), "--out", str(target)]
    line = _one_line_error(*_run(capsys, argv))
    assert "--out" in line and "existing file, not a folder" in line
    assert target.read_text() == "root:x:0:0\n"
    # A path under a file is refused the same way.
    argv[argv.index("--out") + 1] = str(target / "sub")
    line = _one_line_error(*_run(capsys, argv))
    assert "--out" in line and "lies under" in line


# ------------------------------------------------------------------ 14. services


@pytest.mark.parametrize(
    "verb, exposure", [("dashboard", "no login"), ("storage-proxy", "no authentication and no TLS")]
)
def test_service_help_says_what_exposing_gives_away_and_the_safe_way(capsys, verb, exposure):
    assert main([verb, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert exposure in text and "ssh -N -L" in text and "127.0.0.1" in text and "0.0.0.0" in text


def test_services_default_to_loopback_and_warn_otherwise(capsys):
    from fersearch.commands import service

    for verb in (service.dashboard, service.storage_proxy):
        assert __import__("inspect").signature(verb).parameters["host"].default == "127.0.0.1"
    assert all(service._is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(service._is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "example.org"))
    service._warn_if_exposed("0.0.0.0", 13000, service.PROXY_EXPOSES)
    warning = " ".join(capsys.readouterr().err.split())
    assert "warning:" in warning and "no authentication" in warning and "SSH tunnel" in warning
    service._warn_if_exposed("127.0.0.1", 13000, service.PROXY_EXPOSES)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("port", ["0", "70000"])
def test_service_port_out_of_range(capsys, tmp_path, port):
    line = _one_line_error(
        *_run(capsys, ["dashboard", "--port", port, "--storage", f"journal:{tmp_path / 'j.log'}"])
    )
    assert "--port must be in 1..65535" in line
