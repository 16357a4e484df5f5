"""`fersearch weights pull`: missing weights fetched from a hub (and a plain URL) served by a local
HTTP server on 127.0.0.1, into a Hugging Face cache of the test's own, each file verified by
building test_resnet from it. Every other address is refused, so nothing reaches the network."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import huggingface_hub.constants
import pytest
from test_weights import SHA, TAG_REPO, write_space  # tests/ is on sys.path (see tests/conftest.py)

from fersearch.cli import main
from fersearch.models.weights import weights_source

HUB_FILE = f"/{TAG_REPO}/resolve/main/model.safetensors"  # test_resnet's pretrained cfg asks for it
URL_FILE = "/files/test_resnet_r160.safetensors"


@pytest.fixture(scope="module")
def good_weights() -> bytes:
    """A real state dict of test_resnet (with its 1000-class head, as timm publishes it)."""
    import timm
    from safetensors.torch import save

    model = timm.create_model("test_resnet", pretrained=False)
    return save({k: v.contiguous().clone() for k, v in model.state_dict().items()})


class Server:
    """Serves ``files`` {path: bytes} the way the hub does (HEAD and GET on
    /{repo}/resolve/{revision}/{file} with X-Repo-Commit, ETag, Content-Length), honours
    ``Range: bytes=N-`` with a 206, and records every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", SHA)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                ask = self.headers.get("Range")
                if ask and body:
                    start = int(ask.removeprefix("bytes=").split("-")[0])
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("X-Repo-Commit", SHA)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def gets(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty HF cache and torch hub folder, huggingface_hub pointed at a local server, and
    every connection to another address refused."""
    server = Server()
    root = tmp_path / "hf-hub"
    root.mkdir()
    # huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE into its constants at import: patch both
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # telemetry fetches {endpoint}/api/agent-harnesses and caches it under HF_HOME: neither here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FERSEARCH_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("COLUMNS", "1000")  # one printed line per source
    connect = socket.socket.connect

    def loopback_only(sock, address, *args):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return connect(sock, address, *args)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    server.root = root
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_pull_fills_the_cache_then_list_and_create_accept_it(hub, good_weights, tmp_path, tiny_data, capsys):
    hub.files[HUB_FILE] = good_weights
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert weights_source("test_resnet", True).status == "missing"

    assert main(["weights", "pull", "--space", str(space)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "downloaded test_resnet (pretrained: true)" in out and "1 downloaded" in out
    size = len(good_weights)
    assert f"{TAG_REPO}/model.safetensors" in captured.err and f"{size}/{size}" in captured.err  # the bar
    assert hub.gets() == [HUB_FILE]
    # the HF cache layout: the snapshot file links to the blob named by the ETag
    s = weights_source("test_resnet", True)
    assert s.status == "present"
    assert Path(s.path).parent == hub.root / f"models--{TAG_REPO.replace('/', '--')}" / "snapshots" / SHA
    assert Path(s.path).read_bytes() == good_weights

    assert main(["weights", "list", "--space", str(space)]) == 0
    assert "1 present" in capsys.readouterr().out
    journal = tmp_path / "study.journal"
    create = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    assert main([*create, "--storage", f"journal:{journal}"]) == 0

    # idempotent: a second pull asks the server nothing and says so
    hub.requests.clear()
    assert main(["weights", "pull", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    assert hub.requests == []
    assert "already present test_resnet (pretrained: true)" in out and "nothing downloaded" in out


def test_pull_into_another_cache_dir(hub, good_weights, tmp_path, capsys):
    hub.files[HUB_FILE] = good_weights
    other = tmp_path / "shared-cache"
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "pull", "--space", str(space), "--cache", str(other)]) == 0
    assert "1 downloaded" in capsys.readouterr().out
    assert (
        other / f"models--{TAG_REPO.replace('/', '--')}" / "snapshots" / SHA / "model.safetensors"
    ).is_file()
    assert weights_source("test_resnet", True).status == "missing"  # HF_HUB_CACHE left alone
    assert weights_source("test_resnet", str(other)).status == "present"


def test_a_file_that_does_not_load_is_reported_and_deleted(hub, good_weights, tmp_path, capsys):
    hub.files[HUB_FILE] = good_weights[: len(good_weights) // 2]  # truncated on the server
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "pull", "--space", str(space)]) == 2
    captured = capsys.readouterr()
    assert "failed test_resnet (pretrained: true)" in captured.out
    assert "does not load into test_resnet" in captured.out and "deleted it" in captured.out
    error = captured.err.splitlines()[-1]  # the progress bar's lines come before it, on stderr
    assert error.startswith("fersearch: error: 1 weights source(s)") and "test_resnet" in error
    assert weights_source("test_resnet", True).status == "missing"
    assert not list(hub.root.rglob("blobs/*"))  # the blob too, or the next pull would relink it

    hub.files[HUB_FILE] = good_weights  # fixed upstream: the next pull downloads it again
    assert main(["weights", "pull", "--space", str(space)]) == 0
    assert weights_source("test_resnet", True).status == "present"


def test_a_file_missing_on_the_hub_fails_with_what_was_tried(hub, tmp_path, capsys):
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "pull", "--space", str(space)]) == 2
    out = capsys.readouterr().out
    # both candidate names were asked for; the line names each and the command to run by hand
    asked = [(method, path) for method, path, _ in hub.requests]
    assert asked == [("HEAD", HUB_FILE), ("HEAD", HUB_FILE.replace("model.safetensors", "pytorch_model.bin"))]
    assert "failed test_resnet (pretrained: true)" in out
    assert "model.safetensors: " in out and "pytorch_model.bin: " in out
    assert f"hf download {TAG_REPO} model.safetensors" in out


def test_the_second_candidate_file_is_taken_when_the_first_is_absent(hub, good_weights, tmp_path, capsys):
    import io

    import torch
    from safetensors.torch import load

    buffer = io.BytesIO()
    torch.save(load(good_weights), buffer)  # the same state dict as a torch.save'd .bin
    hub.files[HUB_FILE.replace("model.safetensors", "pytorch_model.bin")] = buffer.getvalue()
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "pull", "--space", str(space)]) == 0
    assert "1 downloaded" in capsys.readouterr().out
    assert Path(weights_source("test_resnet", True).path).name == "pytorch_model.bin"


def test_ir50_cannot_be_pulled_and_says_where_to_put_it(hub, tmp_path, capsys):
    space = write_space(tmp_path / "face.yaml", pretrained=True, backbone="ir50")
    assert main(["weights", "pull", "--space", str(space)]) == 2
    captured = capsys.readouterr()
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "backbone_ir50_ms1m_epoch120.pth"
    assert "cannot pull ir50 (pretrained: true)" in captured.out
    assert str(expected) in captured.out and "never downloaded" in captured.out
    assert "ir50 (pretrained: true)" in captured.err and hub.requests == []


@pytest.fixture
def url_only(hub, monkeypatch):
    """test_resnet's pretrained cfg rewritten to publish at a plain URL on the local server (as
    timm's older weights are), so the URL path is exercised end to end."""
    from fersearch.models.backbones.timm import TimmFamily

    original = TimmFamily._pretrained_cfg

    def at_url(self, name, tag):
        return {**original(self, name, tag), "hf_hub_id": None, "url": hub.url + URL_FILE}

    monkeypatch.setattr(TimmFamily, "_pretrained_cfg", at_url)
    return hub


def test_url_file_resumes_a_partial_download(url_only, good_weights, tmp_path, capsys):
    url_only.files[URL_FILE] = good_weights
    target = tmp_path / "torch" / "hub" / "checkpoints" / "test_resnet_r160.safetensors"
    assert weights_source("test_resnet", True).path == str(target)
    half = len(good_weights) // 2
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(good_weights[:half])  # an interrupted run

    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "pull", "--space", str(space)]) == 0
    assert "1 downloaded" in capsys.readouterr().out
    assert url_only.requests == [("GET", URL_FILE, f"bytes={half}-")]  # only the rest was asked for
    assert target.read_bytes() == good_weights and not target.with_name(target.name + ".part").exists()

    url_only.requests.clear()
    assert main(["weights", "pull", "--space", str(space)]) == 0
    assert url_only.requests == [] and "nothing downloaded" in capsys.readouterr().out
