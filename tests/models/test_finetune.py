"""pretrained: a finished fersearch model (a trial's best.json, an exported ensemble's member, or
trial:STUDY/N through a bound locator): the backbone loads exactly, the neck where shapes match,
the head unless the classes differ; another backbone is one clear error. No storage here (see
tests/test_finetune_trial.py for trial:STUDY/N through a real study and worker)."""

from __future__ import annotations

import contextvars
import logging

import pytest
import torch

from fersearch.errors import ModelError
from fersearch.models import create_model, preprocess_for, without_finetune_source
from fersearch.models.pretrained import parse_pretrained
from fersearch.train.checkpoint import save_model_checkpoint
from fersearch.train.finetune import read_finetune_source, trial_locator

from .conftest import CLIP_TINY, FER7

FOUR = ["neutral", "happiness", "sadness", "anger"]


def _finished(tmp_path, cfg, classes=FER7, name="src", **values):
    """A 'finished trial': a model saved as the worker saves its best epoch."""
    config = cfg(**values)
    model = create_model(config, len(classes), classes)
    for p in model.parameters():  # not the init a fresh model would draw
        p.data.add_(torch.randn_like(p) * 0.1)
    path = save_model_checkpoint(tmp_path / name, model, config.to_json_dict(), {"epoch": 3, "val_uar": 0.5})
    return model, path


def _tune(cfg, pretrained, classes, **values):
    config = cfg(pretrained=str(pretrained), **values)
    return create_model(config, len(classes), classes, init=read_finetune_source(config.pretrained))


def _same(a: torch.nn.Module, b: torch.nn.Module, prefix: str) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(sa[k], sb[k]) for k in keys)


def test_checkpoint_loads_backbone_neck_and_head_when_the_classes_match(tmp_path, cfg, caplog):
    source, path = _finished(tmp_path, cfg, attention="se", head="mlp", head_hidden=16)
    with caplog.at_level(logging.INFO, logger="fersearch.models.finetune"):
        model = _tune(cfg, path, FER7, attention="se", head="mlp", head_hidden=16)
    for part in ("backbone.", "neck.", "head."):
        assert _same(model, source, part), part
    assert "backbone loaded" in caplog.text and "head loaded" in caplog.text


def test_head_is_reinitialised_when_the_classes_differ_neck_loads_where_it_fits(tmp_path, cfg, caplog):
    source, path = _finished(tmp_path, cfg, attention="se")
    with caplog.at_level(logging.INFO, logger="fersearch.models.finetune"):
        model = _tune(cfg, path, FOUR, attention="cbam")  # another neck: nothing of it fits
    assert _same(model, source, "backbone.")
    assert model.head.fc.weight.shape[0] == 4
    line = next(r.getMessage() for r in caplog.records if "fine-tuning from" in r.getMessage())
    assert "head re-initialised: the classes differ (7 in the source, 4 here)" in line
    assert "neck 0/" in line and "\n" not in line

    # the same number of classes, other names: the head is not the source's either
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fersearch.models.finetune"):
        other = _tune(cfg, path, [*FOUR, "fear", "disgust", "contempt"])
    assert _same(other, source, "backbone.")
    assert not torch.equal(other.state_dict()["head.fc.weight"], source.state_dict()["head.fc.weight"])
    assert "the classes differ (neutral, happiness" in caplog.text


def test_a_different_backbone_is_one_clear_error(tmp_path, cfg):
    _, path = _finished(tmp_path, cfg)  # test_resnet
    with pytest.raises(ModelError) as err:
        _tune(cfg, path, FER7, backbone="test_convnext")
    msg = str(err.value)
    assert "is a test_resnet model, but this trial's backbone is test_convnext" in msg
    assert "Use backbone: test_resnet with this source" in msg and "\n" not in msg


def test_same_network_other_shapes_names_the_setting_to_match(tmp_path, cfg):
    _, path = _finished(tmp_path, cfg, backbone="test_vit", image_size=32)
    with pytest.raises(ModelError) as err:
        _tune(cfg, path, FER7, backbone="test_vit", image_size=64)  # other position embeddings
    msg = str(err.value)
    assert "backbone weights do not fit this model's" in msg and "pos_embed" in msg
    assert "trained with image_size 32 (here 64): use its settings" in msg and "\n" not in msg


def test_a_timm_tag_in_the_name_is_the_same_network(tmp_path, cfg):
    source, path = _finished(tmp_path, cfg, backbone="test_resnet")
    model = _tune(cfg, path, FER7, backbone="test_resnet.r160_in1k")
    assert _same(model, source, "backbone.")


def test_exported_ensemble_member(tmp_path, cfg):
    from fersearch.ensemble import save_ensemble

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = cfg()
        members.append((create_model(config, 7, FER7), {"id": f"m{seed}", "config": config.to_json_dict()}))
    folder = tmp_path / "ens"
    save_ensemble(folder, members, FER7, [0.5, 0.5])
    model = _tune(cfg, f"ensemble:{folder}#1", FER7)
    assert _same(model, members[1][0], "backbone.") and _same(model, members[1][0], "head.")
    assert not _same(model, members[0][0], "backbone.")

    with pytest.raises(ModelError, match=r"has 2 members; name one as ensemble:.*#I with I in 0\.\.1"):
        _tune(cfg, f"ensemble:{folder}", FER7)
    with pytest.raises(ModelError, match=r"no member 2; valid: 0\.\.1"):
        _tune(cfg, f"ensemble:{folder}#2", FER7)
    with pytest.raises(ModelError, match="is not an exported ensemble"):
        _tune(cfg, f"ensemble:{tmp_path}#0", FER7)
    (folder / "member_1.safetensors").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        _tune(cfg, f"ensemble:{folder}#1", FER7)


def test_trial_reference_goes_through_the_bound_locator(tmp_path, cfg):
    source, path = _finished(tmp_path, cfg)
    asked = []

    def locate(study, number):
        asked.append((study, number))
        return path

    with trial_locator(locate):
        model = _tune(cfg, "trial:runs/raf/3", FER7)  # a study name may hold '/'
    assert asked == [("runs/raf", 3)] and _same(model, source, "backbone.")

    # nothing bound (a fresh context: a worker elsewhere in this session may have bound one)
    with pytest.raises(ModelError) as err:
        contextvars.Context().run(read_finetune_source, "trial:runs/raf/3")
    assert "only a process that opened the study storage" in str(err.value)
    assert "trial_3/best.json" in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("trial:s1", "is not trial:STUDY/NUMBER"),
        ("trial:/3", "is not trial:STUDY/NUMBER"),
        ("trial:s1/x", "'x' is not a whole number"),
        ("trial:s1/-1", "'-1' is not a whole number"),
        ("trial: s1/1", "starts or ends with whitespace"),
        ("trial:s\n1/1", "control character"),
        ("ensemble:/e#one", "'one' is not a whole number"),
        ("ensemble:#0", "names no ensemble folder"),
    ],
)
def test_malformed_references_are_one_clear_error(text, message):
    with pytest.raises(ModelError, match=message) as err:
        parse_pretrained(text)
    assert "\n" not in str(err.value).replace(repr(text), "")


def test_building_needs_the_source_read_by_the_trainer(cfg):
    config = cfg(pretrained="trial:s1/3")
    with pytest.raises(ModelError, match="finished model to fine-tune from"):
        create_model(config, 7)
    assert preprocess_for(config) == preprocess_for(cfg())  # the backbone's default, no storage
    plain = create_model(without_finetune_source(config), 7)  # weights that follow: not read
    assert plain.preprocess == preprocess_for(config)


def test_checkpoint_that_is_not_a_model_is_refused(tmp_path, cfg):
    _, path = _finished(tmp_path, cfg)
    (tmp_path / "x.json").write_text('{"kind": "training", "tensors": "../../etc/passwd"}')
    with pytest.raises(ModelError, match="not a .safetensors file beside it"):
        _tune(cfg, tmp_path / "x.json", FER7)
    with pytest.raises(ModelError, match="does not exist"):
        _tune(cfg, tmp_path / "nope" / "best.json", FER7)


def test_prompt_head_needs_a_text_tower_from_the_source(tmp_path, cfg):
    _, linear = _finished(tmp_path, cfg, name="linear", backbone=CLIP_TINY)
    with pytest.raises(ModelError, match="frozen CLIP text tower comes from the source"):
        _tune(cfg, linear, FOUR, backbone=CLIP_TINY, head="prompt")
    source, prompt = _finished(tmp_path, cfg, name="prompt", backbone=CLIP_TINY, head="prompt")
    model = _tune(cfg, prompt, FOUR, backbone=CLIP_TINY, head="prompt")  # other classes
    assert _same(model, source, "backbone.") and _same(model, source, "head.text.")
    assert model.head.token_ids.shape[0] == 4
