"""open_clip image towers as backbones, exposing every patch token.

``open_clip:ViT-B-16`` builds the CLIP model with open_clip's own factory (its model configs,
pretrained tags and preprocessing config), keeps the image tower and, for the prompt head, the
text tower. The tower's tokens go through ``ln_post`` and ``proj`` like CLIP's pooled output
does, so the class token *is* CLIP's image embedding and the patch tokens live in the same
joint space (B, 1 + h*w, embed_dim).

A tiny random-init config, ``test-clip-ViT`` (fersearch/models/clip_configs), is registered with
open_clip so the whole CLIP path runs on a CPU in tests, with the real tokenizer.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import open_clip
import torch
from open_clip.transform import PreprocessCfg
from torch import nn

from ...errors import ModelError
from ..pretrained import Remote, parse_pretrained
from .base import Backbone, FeatureMaps

open_clip.add_model_config(Path(__file__).resolve().parents[1] / "clip_configs")


def _default_tag(name: str) -> str | None:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        return None
    return "openai" if "openai" in tags else tags[0]


NO_PLAIN_VIT = (
    "open_clip:{name} has no plain ViT image tower; valid: ViT CLIP models such as "
    "open_clip:ViT-B-16, open_clip:ViT-B-32"
)
NO_PROMPTABLE_TEXT = "this open_clip model's text tower cannot take learned prompts; use a CLIP ViT"


class OpenClipFamily:
    def validate(self, name: str) -> None:
        models = open_clip.list_models()
        if name in models:
            return
        close = difflib.get_close_matches(name, models, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join('open_clip:' + c for c in close)}?" if close else ""
        raise ModelError(
            f'unknown open_clip model {name!r}{hint} (`python -c "import open_clip; '
            f'print(open_clip.list_models())"` lists them)'
        )

    def _tag_cfg(self, name: str, pretrained) -> tuple[str | None, dict]:
        request = parse_pretrained(pretrained)
        if request.kind not in ("default", "tag", "cache_dir"):
            return None, {}
        tag = request.value if request.kind == "tag" else _default_tag(name)
        cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
        if not cfg:
            valid = open_clip.list_pretrained_tags_by_model(name)
            raise ModelError(
                f"unknown pretrained tag {tag!r} for open_clip:{name}; valid: {', '.join(valid) or '(none)'}"
            )
        return tag, cfg

    def preprocess(self, name: str, pretrained) -> dict:
        _, cfg = self._tag_cfg(name, pretrained)
        defaults = PreprocessCfg()
        vision = open_clip.get_model_config(name)["vision_cfg"]
        size = vision.get("image_size", defaults.size)
        return {
            "mean": [float(v) for v in cfg.get("mean", defaults.mean)],
            "std": [float(v) for v in cfg.get("std", defaults.std)],
            "image_size": int(size if isinstance(size, int) else size[-1]),
        }

    def weights(self, name: str, pretrained) -> tuple[str | None, dict]:
        request = parse_pretrained(pretrained)
        if request.kind == "none":
            return None, {}
        if request.kind == "file":
            return request.value, {}
        remote, cfg = self.remote(name, pretrained)
        return remote.fetch(), cfg

    def remote(self, name: str, pretrained) -> tuple[Remote, dict]:
        """(the published file a tag or default ``pretrained`` reads, its open_clip pretrained
        cfg); nothing is read or fetched."""
        request = parse_pretrained(pretrained)
        tag, cfg = self._tag_cfg(name, pretrained)
        what = f"open_clip:{name} {tag!r}"
        cache_dir = request.value if request.kind == "cache_dir" else None
        if cfg.get("hf_hub"):
            # "org/repo/" names the repository (default files); "org/repo/file" one file in it
            repo, filename = cfg["hf_hub"].rstrip("/"), None
            if not cfg["hf_hub"].endswith("/"):
                repo, filename = cfg["hf_hub"].rsplit("/", 1)
            files = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            return Remote(what, tag, repo, tuple(files), cache_dir), cfg
        folder = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "clip"
        return Remote(what, tag, url=cfg["url"], folder=folder), cfg

    def check(self, name: str, multi_scale: bool, keep_text: bool) -> None:
        """The ModelError ``create`` would raise for these options, found from the model's
        config alone (cheap: a search space checks every combination it can sample)."""
        if multi_scale:
            raise ModelError(
                f"open_clip:{name} has a single-scale token map; the feature pyramid (fpn: true) "
                f"needs a multi-scale timm backbone"
            )
        cfg = open_clip.get_model_config(name) or {}
        vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if (
            vision.get("timm_model_name")
            or isinstance(vision.get("layers"), (list, tuple))
            or vision.get("attentional_pool")
        ):
            raise ModelError(NO_PLAIN_VIT.format(name=name))
        if keep_text and (text.get("hf_model_name") or text.get("embed_cls")):
            raise ModelError(NO_PROMPTABLE_TEXT)

    def width(self, name: str, multi_scale: bool = False) -> int:
        """The channels of the deepest map: CLIP's embedding width (tokens are projected)."""
        return int(open_clip.get_model_config(name)["embed_dim"])

    def create(self, name, pretrained, image_size, multi_scale, keep_text) -> OpenClipBackbone:
        self.check(name, multi_scale, keep_text)
        return OpenClipBackbone(name, pretrained, image_size, keep_text)


class OpenClipBackbone(Backbone):
    def __init__(self, name: str, pretrained, image_size: int | None, keep_text: bool):
        super().__init__()
        family = OpenClipFamily()
        weights_file, tag_cfg = family.weights(name, pretrained)
        logging.getLogger().disabled, was = True, logging.getLogger().disabled  # open_clip logs chatter
        try:
            clip = open_clip.create_model(
                name,
                pretrained=weights_file,
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                force_image_size=image_size,
                force_patch_dropout=0.0,  # dropped patches would break the token grid
            )
        except Exception as exc:  # state-dict mismatches, unreadable files...
            raise ModelError(
                f"cannot create backbone open_clip:{name} (pretrained={pretrained!r}): {exc}"
            ) from None
        finally:
            logging.getLogger().disabled = was
        visual = clip.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer) or visual.attn_pool is not None:
            raise ModelError(NO_PLAIN_VIT.format(name=name))
        self.visual = visual
        self.name = name
        self.channels = [visual.output_dim]
        self.num_prefix = 1
        self.preprocess = family.preprocess(name, pretrained)
        if image_size:
            self.preprocess["image_size"] = image_size
        self._text = [TextEncoder(clip)] if keep_text else []  # a list: not a submodule of the backbone
        self.tokenizer_name = name

    def take_text_encoder(self) -> TextEncoder:
        """The text tower, handed over once to the head that owns it (the prompt head)."""
        if not self._text:
            raise ModelError(f"open_clip:{self.name} was built without its text tower")
        return self._text.pop()

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        v = self.visual
        t = v.transformer(v._embeds(x))  # (B, 1 + h*w, width)
        t = v.ln_post(t) @ v.proj  # (B, 1 + h*w, embed_dim): the class token is CLIP's embedding
        h, w = v.grid_size
        grid = t[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return FeatureMaps([grid], t[:, :1])

    def block_groups(self) -> list[list[nn.Parameter]]:
        # the grouping of open_clip's VisionTransformer.lock(): stem, blocks, last block + head
        v = self.visual
        stem = [v.conv1.weight, v.class_embedding, v.positional_embedding, *v.ln_pre.parameters()]
        blocks = [list(b.parameters()) for b in v.transformer.resblocks]
        blocks[-1] += [*v.ln_post.parameters(), v.proj]
        return [stem, *blocks]

    def no_weight_decay_names(self) -> set[str]:
        return {f"visual.{n}" for n in self.visual.no_weight_decay()}


class TextEncoder(nn.Module):
    """CLIP's text tower, taking token embeddings directly so learned context can be spliced in."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        text = clip if hasattr(clip, "token_embedding") else getattr(clip, "text", None)
        if text is None or not hasattr(text, "token_embedding") or getattr(text, "cls_emb", None) is not None:
            raise ModelError(NO_PROMPTABLE_TEXT)
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.transformer = text.transformer
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)
        self.pool_type = getattr(text, "text_pool_type", "argmax")
        self.register_buffer("logit_scale", clip.logit_scale.detach().clone())  # log scale, frozen
        self.width = self.token_embedding.embedding_dim
        self.context_length = self.positional_embedding.shape[0]

    def forward(self, embeddings: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """(K, L, width) prompt embeddings, (K, L) ids -> (K, embed_dim) text features."""
        x = embeddings + self.positional_embedding.to(embeddings.dtype)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        x = open_clip.transformer.text_global_pool(x, token_ids, self.pool_type)  # at the EOT token
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection if self.text_projection is not None else x
