"""CLIP prompt head, CoOp-style (Zhou et al. 2022; seed 000).

Each class prompt is ``[SOS] ctx_1 .. ctx_M <class name> . [EOS]`` where the M context vectors
are learned (shared by all classes, or one set per class) and the rest are CLIP's frozen token
embeddings. The frozen text tower turns the K prompts into K class embeddings; logits are the
cosine similarities with the image embedding times CLIP's logit scale.

The prompts are tokenized once with open_clip's real tokenizer (the BPE vocabulary ships inside
the open_clip package, so this works offline). The token ids are a persistent buffer: a saved
model reloads with the class names it was trained with.
"""

from __future__ import annotations

import logging

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from ..backbones.base import needs_text_tower
from ..pooling import create_pool
from .base import HeadSpec, register_head
from .classifier import head_dropout

PLACEHOLDER = "X"  # CoOp's stand-in token, replaced by the learned context vectors


@register_head("prompt")
class PromptHead(nn.Module):
    def __init__(self, spec: HeadSpec):
        super().__init__()
        cfg = spec.config
        take = getattr(spec.backbone, "take_text_encoder", None)
        if take is None:
            raise ModelError(needs_text_tower(cfg.backbone))
        self.text = take()
        self.text.requires_grad_(False)  # CoOp: only the context vectors learn
        names = spec.class_names or [f"class {i}" for i in range(spec.num_classes)]
        if not spec.class_names:
            logging.getLogger(__name__).warning(
                "prompt head built without class names; prompts use 'class <i>'"
            )
        if len(names) != spec.num_classes:
            raise ModelError(f"prompt head: {len(names)} class names for {spec.num_classes} classes")

        n_ctx = cfg.prompt_ctx
        tokenizer = open_clip.get_tokenizer(spec.backbone.tokenizer_name)
        texts = [" ".join([PLACEHOLDER] * n_ctx) + f" {n.replace('_', ' ')}." for n in names]
        needed = tokenizer(texts, context_length=512).argmax(-1) + 1  # EOT has the largest id
        if needed.max() > self.text.context_length:
            longest = texts[int(needed.argmax())]
            raise ModelError(
                f"prompt head: {longest!r} needs {int(needed.max())} tokens, CLIP's text tower takes "
                f"{self.text.context_length}; use fewer context vectors (prompt_ctx) or shorter class names"
            )
        ids = tokenizer(texts, context_length=self.text.context_length)  # (K, L), SOS at 0
        self.register_buffer("token_ids", ids)
        self.n_ctx = n_ctx
        n_sets = spec.num_classes if cfg.prompt_class_specific else 1
        self.ctx = nn.Parameter(torch.randn(n_sets, n_ctx, self.text.width) * 0.02)

        embed_dim = (
            self.text.text_projection.shape[-1]
            if not isinstance(self.text.text_projection, nn.Linear)
            else self.text.text_projection.out_features
        )
        self.pool = create_pool(spec.pool, spec.in_dim)
        self.dropout = nn.Dropout(head_dropout(cfg))
        # identity for CLIP's own tokens; a learned map when the neck changed the width
        self.proj = nn.Identity() if spec.in_dim == embed_dim else nn.Linear(spec.in_dim, embed_dim)
        self.out_features = spec.in_dim

    def class_embeddings(self) -> torch.Tensor:
        """(K, embed_dim) text features of the learned prompts."""
        with torch.no_grad():
            frozen = self.text.token_embedding(self.token_ids)  # (K, L, width)
        k = frozen.shape[0]
        ctx = self.ctx.expand(k, -1, -1).to(frozen.dtype)
        prompts = torch.cat([frozen[:, :1], ctx, frozen[:, 1 + self.n_ctx :]], dim=1)
        return self.text(prompts, self.token_ids)

    def forward(self, tokens, num_prefix: int = 0):
        features = self.pool(tokens, num_prefix)
        image = F.normalize(self.proj(self.dropout(features)), dim=-1)
        text = F.normalize(self.class_embeddings(), dim=-1)
        return features, self.text.logit_scale.exp() * image @ text.t()
