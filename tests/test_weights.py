"""`fersearch weights list` and `create`'s weights check: every (backbone, pretrained) a space can
sample, its source and whether it is on this host, found from real files in a Hugging Face cache
folder built here (``models--org--name/{refs/main, snapshots/<sha>/<file>}``) and torch hub's
checkpoints folder; never the network, and no model is built."""

from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from conftest import TINY_SPACE  # tests/ is on sys.path (see tests/conftest.py)

from fersearch.cli import main
from fersearch.errors import ModelError
from fersearch.models.weights import weights_source
from fersearch.search.space import load_space, parse_space
from fersearch.search.weights import check_space_weights, space_pairs

TAG_REPO = "timm/test_resnet.r160_in1k"  # test_resnet's default (and only) timm tag
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty HF cache and torch hub folder of the test's own, downloads off, sockets refused."""
    root = tmp_path / "hf-hub"
    root.mkdir()
    # huggingface_hub reads HF_HUB_CACHE into its constants at import: patch both
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir() for ir50
    monkeypatch.delenv("FERSEARCH_ALLOW_DOWNLOAD", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return root


def put_in_cache(root: Path, repo: str, filename: str) -> Path:
    """One file in the layout huggingface_hub writes."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(SHA)
    target = folder / "snapshots" / SHA / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"not read: only its presence is checked")
    return target


def write_space(path: Path, **fixed) -> Path:
    raw = {**TINY_SPACE, "fixed": {**TINY_SPACE["fixed"], **fixed}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def no_builds(monkeypatch):
    """Building any backbone fails the test: the sources come from configs alone."""
    from fersearch.models.backbones import clip, ir50, timm

    def refuse(*args, **kwargs):
        raise AssertionError("a backbone was built")

    for cls in (timm.TimmBackbone, clip.OpenClipBackbone, ir50.IR50Backbone):
        monkeypatch.setattr(cls, "__init__", refuse)


def test_timm_tag_is_missing_until_its_file_is_in_the_cache(hub, no_builds):
    for pretrained in (True, "r160_in1k"):  # the default tag and the tag by name: one file
        s = weights_source("test_resnet", pretrained)
        assert (s.kind, s.tag, s.repo, s.status) == ("timm", "r160_in1k", TAG_REPO, "missing")
        assert s.files == ("model.safetensors", "pytorch_model.bin") and s.path is None
        assert s.fetch == f"hf download {TAG_REPO} model.safetensors"
        assert s.downloadable
    target = put_in_cache(hub, TAG_REPO, "pytorch_model.bin")  # the second candidate counts too
    s = weights_source("test_resnet", True)
    assert (s.status, s.path, s.problem, s.fetch) == ("present", str(target), None, None)


def test_local_file_none_unknown_tag_open_clip_and_ir50(hub, tmp_path, no_builds):
    local = tmp_path / "mine.safetensors"
    local.write_bytes(b"x")
    s = weights_source("test_resnet", str(local))
    assert (s.kind, s.path, s.status) == ("file", str(local), "present")
    s = weights_source("test_resnet", str(tmp_path / "gone.safetensors"))
    assert s.status == "missing" and "not found" in s.problem and not s.downloadable

    s = weights_source("test_resnet", False)
    assert (s.kind, s.status, s.path, s.origin) == ("none", "not needed", None, "-")

    s = weights_source("test_resnet", "nope")
    assert s.status == "invalid" and "valid: r160_in1k" in s.problem

    s = weights_source("open_clip:ViT-B-32", "openai")
    assert (s.kind, s.tag, s.repo, s.status) == (
        "open_clip",
        "openai",
        "timm/vit_base_patch32_clip_224.openai",
        "missing",
    )
    assert s.files[0] == "open_clip_model.safetensors"

    expected = tmp_path / "torch" / "hub" / "checkpoints" / "backbone_ir50_ms1m_epoch120.pth"
    s = weights_source("ir50", True)
    assert (s.kind, s.path, s.status) == ("face", str(expected), "missing")
    assert "never downloaded" in s.problem and not s.downloadable
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")
    assert weights_source("ir50", True).status == "present"


def test_space_pairs_follow_when_conditions_and_seed_recipes():
    conditional = parse_space(
        {
            "params": {
                "backbone": {"type": "categorical", "choices": ["test_resnet", "test_convnext"]},
                "pretrained": {
                    "type": "categorical",
                    "choices": [True],
                    "when": {"backbone": "test_convnext"},
                },
            }
        }
    )
    # test_resnet never samples pretrained, so it keeps TrialConfig's default (false)
    assert space_pairs(conditional) == [("test_resnet", False), ("test_convnext", True)]
    assert space_pairs(conditional, seed_recipes=True) == space_pairs(conditional)  # space owns backbone

    open_backbone = parse_space({"fixed": {"pretrained": True}})
    assert space_pairs(open_backbone) == [("resnet18", True)]
    # the recipes set their own backbones where the space leaves the key alone
    assert space_pairs(open_backbone, seed_recipes=True) == [
        ("resnet18", True),
        ("open_clip:ViT-B-16", True),
        ("convnext_large.fb_in22k_ft_in1k", True),
        ("efficientnet_b4.ra2_in1k", True),
        ("swin_base_patch4_window7_224.ms_in22k_ft_in1k", True),
    ]


def test_pretrained_false_spaces_pass_the_check(hub, tiny_space):
    for space in ("demo", "scratch", tiny_space):
        check_space_weights(load_space(space), str(space), seed_recipes=True)


def test_default_space_is_pretrained_imagenet_checkpoints_named_by_timm_tag(hub, no_builds):
    """Every backbone the default space samples reads a published ImageNet checkpoint named by
    its timm tag; the backbone gets its own (fine-tuning) learning rate."""
    space = load_space("default")
    assert space.fixed["pretrained"] is True
    assert "lr_backbone" in space.params and "lr" in space.params
    choices = space.params["backbone"].choices
    sources = [weights_source(b, True) for b in choices]
    assert len(sources) == 5
    for choice, s in zip(choices, sources):
        assert s.kind == "timm" and s.status == "missing" and s.repo == f"timm/{choice}"  # its own tag
        assert s.tag.endswith("in1k")  # ImageNet-1k weights (some pretrained on 22k first)
    assert {s.repo.split("/")[1].split(".")[0] for s in sources} >= {
        "resnet50",
        "convnext_tiny",
        "efficientnet_b0",
    }
    assert any(r.startswith(("timm/swin", "timm/vit")) for r in (s.repo for s in sources))


def test_create_with_the_default_space_needs_its_weights_pulled_first(hub, tmp_path, tiny_data, capsys):
    journal = tmp_path / "study.journal"
    create = ["create", "--study", "s", "--data", str(tiny_data), "--storage", f"journal:{journal}"]
    assert main(create) == 2  # --space default is the default
    err = capsys.readouterr().err
    assert "fersearch weights pull --space default" in err and "resnet50.a1_in1k" in err
    assert not journal.exists()  # refused before any study exists
    for choice in load_space("default").params["backbone"].choices:
        put_in_cache(hub, weights_source(choice, True).repo, "model.safetensors")
    check_space_weights(load_space("default"), "default")  # nothing missing now: no error


def test_create_refuses_a_missing_tag_and_accepts_it_once_cached(hub, tmp_path, tiny_data, capsys):
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    journal = tmp_path / "study.journal"
    create = ["create", "--study", "s", "--data", str(tiny_data), "--space", str(space)]
    create += ["--storage", f"journal:{journal}"]

    assert main(create) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert "test_resnet (pretrained: true)" in err and f"{TAG_REPO}/model.safetensors" in err
    assert f"`hf download {TAG_REPO} model.safetensors`" in err
    assert f"fersearch weights list --space {space}" in err and "nothing was created" in err
    assert f"fersearch weights pull --space {space}" in err
    assert not journal.exists()  # refused before the store was touched

    put_in_cache(hub, TAG_REPO, "model.safetensors")
    assert main(create) == 0
    assert "created study s" in capsys.readouterr().err


def test_download_switch_lets_hub_files_through_but_never_ir50(hub, tmp_path, tiny_data, monkeypatch):
    from fersearch.search.api import StudyOptions, create_or_join

    monkeypatch.setenv("FERSEARCH_ALLOW_DOWNLOAD", "1")
    store = f"journal:{tmp_path / 'study.journal'}"
    hub_space = write_space(tmp_path / "hub.yaml", pretrained=True)
    # the trials would fetch the hub file themselves; nothing is downloaded here (sockets refused)
    study = create_or_join(StudyOptions("hub", tiny_data, space=str(hub_space), storage=store))
    assert study.study_name == "hub"
    face_space = write_space(tmp_path / "face.yaml", pretrained=True, backbone="ir50")
    with pytest.raises(ModelError, match="backbone_ir50_ms1m_epoch120.pth"):
        create_or_join(StudyOptions("face", tiny_data, space=str(face_space), storage=store))


def test_weights_list_prints_the_table(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    space = write_space(tmp_path / "pre.yaml", pretrained=True)
    assert main(["weights", "list", "--space", str(space)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "test_resnet" in line and "│" in line)
    assert "timm r160_in1k" in row and f"{TAG_REPO}/model.safetensors" in row and "missing" in row
    assert "1 missing" in out and f"hf download {TAG_REPO} model.safetensors" in out

    cached = put_in_cache(hub, TAG_REPO, "model.safetensors")
    assert main(["weights", "list", "--space", str(space), "--seed-recipes"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "test_resnet" in line and "│" in line)
    assert "present" in row and str(cached) in row
    assert "convnext_large" not in out  # the space fixes its backbone: the recipes' do not apply

    assert main(["weights", "list", "--space", "demo"]) == 0
    out = capsys.readouterr().out
    assert "3 not needed" in out and "missing" not in out

    assert main(["weights", "list", "--space", "nope"]) == 2
    assert "search space file 'nope' not found" in capsys.readouterr().err
