"""create_model(config, num_classes): backbone -> neck -> [fusion] -> [temporal] -> head [+ AU] [+ VA].

    out = model(x)                      # x: (B, 3, H, W) face crops, normalised with
                                        #    model.preprocess (mean, std, image_size)
    out = model(x, context=c)           # c: (B, 3, H, W) context/body images, for fusion models
    out = model(clip_x)                 # clip_x: (B, T, 3, H, W) frames, pooled over time
    out = model(packed)                 # packed: (B, 3V, H, W), every view of a sample side by
                                        #    side in channels (data.views): T frames, then T
                                        #    context views when the model fuses context
    out["logits"]     (B, K)            # always
    out["features"]   (B, D)            # what the classifier read
    out["au_logits"]  (B, A)            # only when config.au_classes > 0
    out["va"]         (B, 2)            # only when config.va_head: valence, arousal in [-1, 1]

The model owns its preprocessing: mean, std and default input size come from the backbone's
pretrained config (timm's data config, open_clip's preprocess config), never typed in by hand.

``pretrained`` naming a finished fersearch model (``trial:STUDY/N``, ``ensemble:DIR#I``, a
``best.json``) is fine-tuning: the model is built from random init with the backbone's default
preprocessing, and ``create_model(..., init=source)`` loads the source into it
(fersearch/models/finetune.py); whoever trains reads the source (fersearch/train/finetune.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrialConfig
from ..errors import ModelError
from .backbones import backbone_preprocess, backbone_width, check_backbone, create_backbone, validate_backbone
from .finetune import FinetuneSource, load_finetune
from .fusion import check_heads, create_fusion
from .heads import AUHead, HeadSpec, VAHead, create_head
from .necks import Neck
from .optim import apply_freezing
from .pretrained import backbone_pretrained, finetune_kind
from .temporal import create_temporal


def preprocess_for(config: TrialConfig) -> dict:
    """Mean, std and input size from the backbone's pretrained config; image_size overrides
    the size (small sizes make CPU runs fast). Cheap: builds no model."""
    validate_backbone(config.backbone)
    pre = backbone_preprocess(config.backbone, backbone_pretrained(config.pretrained))
    if config.image_size:
        pre["image_size"] = config.image_size
    return pre


def check_config(config: TrialConfig) -> None:
    """Raise the ModelError that building this config's model would raise because its parts do
    not fit together (a prompt head on a timm backbone, a feature pyramid on a CLIP tower,
    fusion heads that do not divide the width), without building it: a search space checks
    every combination it can sample when it is loaded, not when a trial builds the model."""
    check_backbone(config.backbone, multi_scale=config.fpn, keep_text=config.head == "prompt")
    if config.fusion == "xattn":  # (the width costs a meta-device build: only when it matters)
        width = config.fpn_dim if config.fpn else backbone_width(config.backbone, config.fpn)
        check_heads(width, config.fusion_heads)


class FERModel(nn.Module):
    def __init__(self, config: TrialConfig, num_classes: int, class_names: list[str] | None = None):
        super().__init__()
        self.num_classes, self.class_names = num_classes, list(class_names or [])
        self.backbone = create_backbone(
            config.backbone,
            pretrained=backbone_pretrained(config.pretrained),  # a fine-tune source loads later
            image_size=config.image_size,
            multi_scale=config.fpn,
            keep_text=config.head == "prompt",
        )
        self.neck = Neck(self.backbone.channels, config.attention, config.fpn, config.fpn_dim)
        dim = self.neck.out_channels
        # class tokens pass through the neck untouched, so they survive only if the width does
        self.keeps_prefix = dim == self.backbone.channels[-1]
        self.fusion = (
            None
            if config.fusion == "none"
            else create_fusion(config.fusion, dim, heads=config.fusion_heads, layers=config.fusion_layers)
        )
        self.temporal = create_temporal(config.temporal, dim)
        pool = config.pool or ("cls" if self._has_prefix() else "avg")
        spec = HeadSpec(
            dim, num_classes, config, pool=pool, backbone=self.backbone, class_names=list(class_names or [])
        )
        self.head = create_head(config.head, spec)
        self.au_head = AUHead(self.head.out_features, config.au_classes) if config.au_classes else None
        self.va_head = VAHead(self.head.out_features) if config.va_head else None
        self.preprocess = self.backbone.preprocess
        apply_freezing(self, config)

    def _has_prefix(self) -> bool:
        return self.backbone.num_prefix > 0 and self.keeps_prefix

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, 3, H, W) -> tokens (B, P + h*w, C) and P, the number of leading class tokens."""
        feats = self.backbone(x)
        fmap = self.neck(feats.maps)  # (B, C, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)
        if feats.prefix is not None and self.keeps_prefix:
            return torch.cat([feats.prefix, tokens], dim=1), feats.prefix.shape[1]
        return tokens, 0

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A packed (B, 3V, H, W) input -> faces (B, [T,] 3, H, W) and context (or None)."""
        views = x.shape[1] // 3
        if x.shape[1] % 3 or (self.fusion is not None and views % 2):
            raise ModelError(
                f"expected 3 channels per view (and as many context views as frames for a fusion "
                f"model), got an input with {x.shape[1]} channels"
            )
        x = x.unflatten(1, (views, 3))  # (B, V, 3, H, W)
        context = None
        if self.fusion is not None:
            x, context = x[:, : views // 2], x[:, views // 2 :]
        if x.shape[1] == 1:
            return x[:, 0], (context[:, 0] if context is not None else None)
        return x, context

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if x.ndim == 4 and x.shape[1] != 3 and context is None:
            x, context = self.unpack(x)
        frames = x.shape[1] if x.ndim == 5 else None
        if frames:  # (B, T, 3, H, W): every frame through the image path
            x = x.flatten(0, 1)
            context = context.flatten(0, 1) if context is not None else None
        tokens, num_prefix = self.encode(x)
        if self.fusion is not None:
            if context is None:
                raise ModelError("this model fuses face and context images: call model(face, context=ctx)")
            ctx_tokens, _ = self.encode(context)
            tokens = self.fusion(tokens, ctx_tokens)
        if frames:
            tokens = self.temporal(tokens.unflatten(0, (-1, frames)))  # (B, T, N, C) -> (B, N, C)
        features, logits = self.head(tokens, num_prefix)
        out = {"logits": logits, "features": features}
        if self.au_head is not None:
            out["au_logits"] = self.au_head(features)
        if self.va_head is not None:
            out["va"] = self.va_head(features)
        return out


def create_model(
    config: TrialConfig,
    num_classes: int,
    class_names: list[str] | None = None,
    init: FinetuneSource | None = None,
) -> FERModel:
    """Build the model a trial describes. ``class_names`` feed the prompt head's text prompts
    (other heads ignore them). ``init``: the finished model ``config.pretrained`` names, read by
    the caller (fersearch/train/finetune.py), loaded into the new model; a model whose own
    weights are loaded next is built from ``without_finetune_source(config)`` instead."""
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes; got {num_classes}")
    kind = finetune_kind(config.pretrained)
    if kind and init is None:
        raise ModelError(
            f"pretrained {config.pretrained!r} is a finished model to fine-tune from, which only "
            f"training reads (fersearch.train.finetune.read_finetune_source); build with "
            f"without_finetune_source(config) when the model's own weights are loaded next"
        )
    if init is not None and not kind:
        raise ModelError(f"init {init.ref!r} given, but config.pretrained is {config.pretrained!r}")
    model = FERModel(config, num_classes, class_names)
    if init is not None:
        load_finetune(model, init, config, class_names)
    return model


def without_finetune_source(config: TrialConfig) -> TrialConfig:
    """``config`` with a fine-tune source replaced by ``pretrained: false``: for building a model
    whose own weights are loaded next (a checkpoint, an ensemble member), so the source is
    neither needed nor read. Preprocessing is the same either way."""
    return config.model_copy(update={"pretrained": False}) if finetune_kind(config.pretrained) else config
