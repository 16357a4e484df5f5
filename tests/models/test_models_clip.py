"""The CLIP path: a tiny random-init open_clip config, open_clip's real tokenizer (offline)."""

from __future__ import annotations

import open_clip
import torch
from safetensors.torch import save_file

from fersearch.models import create_model, param_groups

from .conftest import CLIP_TINY, FER7


def _clip_and_file(tmp_path):
    clip = open_clip.create_model("test-clip-ViT")
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    return clip.eval(), path


def test_real_tokenizer_works_offline(no_network):
    tok = open_clip.get_tokenizer("test-clip-ViT")
    ids = tok(["X X happiness."], context_length=32)[0]
    assert ids[0] == tok.sot_token_id and tok.eot_token_id in ids
    assert tok.decode(ids[1 : ids.argmax()].tolist()).strip() == "x x happiness ."


def test_class_token_is_clips_image_embedding(tmp_path, cfg):
    clip, path = _clip_and_file(tmp_path)
    model = create_model(cfg(backbone=CLIP_TINY, pretrained=str(path), pool="cls"), 7).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, num_prefix = model.encode(x)
        expected = clip.encode_image(x)
    assert num_prefix == 1 and tokens.shape == (2, 1 + 16, 32)  # 32 px / patch 8 = 4x4 grid
    torch.testing.assert_close(tokens[:, 0], expected, rtol=1e-4, atol=1e-5)


def test_prompt_head_splices_context_into_clips_text_encoder(tmp_path, cfg):
    """With the context vectors set to the embeddings of 'a photo of a', the head's class
    embeddings must equal CLIP's own encoding of 'a photo of a <class>.'."""
    clip, path = _clip_and_file(tmp_path)
    model = create_model(cfg(backbone=CLIP_TINY, pretrained=str(path), head="prompt", prompt_ctx=4), 7, FER7)
    tok = open_clip.get_tokenizer("test-clip-ViT")
    init_ids = tok(["a photo of a"], context_length=32)[0, 1:5]
    head = model.head
    with torch.no_grad():
        head.ctx.copy_(clip.token_embedding(init_ids)[None])
        got = head.class_embeddings()
        expected = clip.encode_text(tok([f"a photo of a {n}." for n in FER7], context_length=32))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the logits are CLIP's: scaled cosine similarity of image and class embeddings
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model.eval()(x)["logits"]
        img = torch.nn.functional.normalize(clip.encode_image(x), dim=-1)
        ref = clip.logit_scale.exp() * img @ torch.nn.functional.normalize(expected, dim=-1).t()
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)


def test_only_the_context_and_image_tower_learn(cfg):
    config = cfg(backbone=CLIP_TINY, head="prompt", lr=1e-4, lr_prompt=1e-3, lr_backbone=1e-6)
    model = create_model(config, 7, FER7)
    model(torch.randn(2, 3, 32, 32))["logits"].sum().backward()
    assert model.head.ctx.grad is not None and model.head.ctx.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.head.text.parameters())
    groups = {g["name"]: g for g in param_groups(model, config)}
    assert groups["prompt/decay"]["lr"] == 1e-3 and groups["prompt/decay"]["params"] == [model.head.ctx]
    assert groups["backbone/decay"]["lr"] == 1e-6
    text_params = {id(p) for p in model.head.text.parameters()}
    assert not any(id(p) in text_params for g in groups.values() for p in g["params"])
    # seed 000's split really trains at two speeds
    opt = torch.optim.AdamW(param_groups(model, config), lr=config.lr)
    before = model.head.ctx.detach().clone(), model.backbone.visual.proj.detach().clone()
    opt.step()
    step_ctx = (model.head.ctx - before[0]).abs().max().item()
    step_img = (model.backbone.visual.proj - before[1]).abs().max().item()
    assert step_ctx > 100 * step_img > 0


def test_prompt_class_names_survive_a_reload(tmp_path, cfg):
    config = cfg(backbone=CLIP_TINY, head="prompt", prompt_class_specific=True)
    model = create_model(config, 7, FER7)
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    from safetensors.torch import load_file

    reloaded = create_model(config, 7)  # no class names given: they come back with the weights
    reloaded.load_state_dict(load_file(str(path)))
    assert torch.equal(reloaded.head.token_ids, model.head.token_ids)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(reloaded.eval()(x)["logits"], model.eval()(x)["logits"])


def test_partial_unfreezing_of_the_image_tower(cfg):
    model = create_model(cfg(backbone=CLIP_TINY, freeze_backbone=True, unfreeze_last=1), 7)
    visual = model.backbone.visual
    trainable = {n for n, p in visual.named_parameters() if p.requires_grad}
    assert trainable == {
        n
        for n, _ in visual.named_parameters()
        if n.startswith(("transformer.resblocks.1.", "ln_post", "proj"))
    }
    assert all(p.requires_grad for p in model.head.parameters())
