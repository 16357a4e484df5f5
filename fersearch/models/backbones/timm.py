"""Any timm model as a backbone, giving its spatial feature map(s).

Single scale uses ``forward_features`` (the map the classifier would pool: after EfficientNet's
conv_head, Swin's and ViT's final norm). Multi-scale (for the feature pyramid) uses timm's
``forward_intermediates``: the last three stages, the deepest replaced by the final map.
"""

from __future__ import annotations

import difflib
import logging
import math
from functools import lru_cache
from pathlib import Path

import timm
import torch
from timm.layers import LayerNorm2d
from timm.models import get_pretrained_cfg, group_parameters, split_model_name_tag

from ...errors import ModelError
from ..pretrained import Remote, WeightsRequest, parse_pretrained
from .base import Backbone, FeatureMaps, needs_text_tower


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    return frozenset(timm.list_models())


@lru_cache(maxsize=64)
def _num_features(arch: str) -> int:
    try:
        with torch.device("meta"):
            return int(timm.create_model(arch, pretrained=False, num_classes=0).num_features)
    except Exception as exc:  # timm raises many types for models it cannot build
        raise ModelError(f"cannot create backbone {arch!r}: {exc}") from None


class _MissingKeys(logging.Handler):
    """Catches timm's 'Missing keys' report: with num_classes=0 timm loads pretrained weights
    non-strictly (to drop the classifier) and only logs what it could not fill."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.message = ""
        self.logger = logging.getLogger("timm.models._builder")

    def emit(self, record):
        if record.getMessage().startswith("Missing keys"):
            self.message = record.getMessage()

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


class TimmFamily:
    def validate(self, name: str) -> None:
        arch, _ = split_model_name_tag(name)
        if arch in _timm_names():
            return
        close = difflib.get_close_matches(arch, sorted(_timm_names()), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown backbone {name!r}{hint} Any timm model name works "
            f"(`python -c \"import timm; print(timm.list_models('convnext*'))\"` lists them), "
            f"or open_clip:<model> for a CLIP image tower"
        )

    def _pretrained_cfg(self, name: str, tag: str | None) -> dict:
        arch, own_tag = split_model_name_tag(name)
        tag = tag or own_tag
        full = f"{arch}.{tag}" if tag else arch
        try:
            cfg = get_pretrained_cfg(full)
        except RuntimeError:
            valid = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
            raise ModelError(
                f"unknown pretrained tag {tag!r} for {arch}; valid: {', '.join(valid) or '(none)'}"
            ) from None
        return cfg.to_dict() if cfg is not None else {}

    def preprocess(self, name: str, pretrained: bool | str) -> dict:
        request = parse_pretrained(pretrained)
        cfg = self._pretrained_cfg(name, request.value if request.kind == "tag" else None)
        data = timm.data.resolve_data_config({}, pretrained_cfg=cfg)
        return {
            "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]],
            "image_size": int(data["input_size"][-1]),
        }

    def weights(self, name: str, pretrained: bool | str) -> tuple[str, str | None]:
        """(timm name with the tag to build, local weights file or None for random init)."""
        request = parse_pretrained(pretrained)
        if request.kind == "none":
            return name, None
        if request.kind == "file":
            return name, request.value
        tagged, remote = self.remote(name, request)
        return tagged, remote.fetch()

    def remote(self, name: str, request: WeightsRequest) -> tuple[str, Remote]:
        """(timm name with the tag, the published file a tag or default ``request`` reads);
        nothing is read or fetched."""
        arch, _ = split_model_name_tag(name)
        cfg = self._pretrained_cfg(name, request.value if request.kind == "tag" else None)
        if not cfg or not (cfg.get("hf_hub_id") or cfg.get("url")):
            raise ModelError(f"timm publishes no pretrained weights for {name!r}; use pretrained: false")
        tagged = f"{arch}.{cfg['tag']}" if cfg.get("tag") else arch
        cache_dir = request.value if request.kind == "cache_dir" else None
        what = f"{tagged!r}"
        if cfg.get("hf_hub_id"):
            files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else []
            files = files or ["model.safetensors", "pytorch_model.bin"]
            return tagged, Remote(what, cfg.get("tag"), cfg["hf_hub_id"], tuple(files), cache_dir)
        folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
        return tagged, Remote(what, cfg.get("tag"), url=cfg["url"], folder=folder)

    def check(self, name: str, multi_scale: bool, keep_text: bool) -> None:
        """The ModelError building a model with these options would raise (cheap: no weights)."""
        if keep_text:
            raise ModelError(needs_text_tower(name))

    def width(self, name: str, multi_scale: bool = False) -> int:
        """The channels of the deepest map, from the network built on the meta device (no
        memory, no weights: about 0.3 s for ConvNeXt-Large)."""
        return _num_features(split_model_name_tag(name)[0])

    def create(self, name, pretrained, image_size, multi_scale, keep_text) -> TimmBackbone:
        self.check(name, multi_scale, keep_text)
        return TimmBackbone(name, pretrained, image_size, multi_scale)


class TimmBackbone(Backbone):
    def __init__(self, name: str, pretrained: bool | str, image_size: int | None, multi_scale: bool):
        super().__init__()
        family = TimmFamily()
        tagged, weights_file = family.weights(name, pretrained)
        self.preprocess = family.preprocess(name, pretrained)
        kwargs = {}
        cfg = family._pretrained_cfg(name, None)
        if image_size and cfg.get("fixed_input_size"):  # ViT / Swin are built for one size
            kwargs["img_size"] = image_size
        if weights_file is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": weights_file}
        try:
            with _MissingKeys() as report:
                self.model = timm.create_model(
                    tagged, pretrained=weights_file is not None, num_classes=0, **kwargs
                )
        except Exception as exc:  # timm raises many types (shape mismatches, bad files...)
            raise ModelError(f"cannot create backbone {name!r} (pretrained={pretrained!r}): {exc}") from None
        if report.message:  # timm loads non-strictly when the classifier is dropped; we do not
            raise ModelError(
                f"cannot create backbone {name!r}: the weights in {weights_file} do not fit it "
                f"({report.message[:300]}...); give weights saved from {name}"
            )
        if image_size:
            self.preprocess["image_size"] = image_size
        self.multi_scale = multi_scale
        nf = self.model.num_features
        info = self.model.feature_info
        self.n_levels = min(3, len(info))
        self.channels = [f["num_chs"] for f in info[-self.n_levels : -1]] + [nf] if multi_scale else [nf]
        self.num_prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self.nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"  # Swin
        # ConvNeXt-style heads normalise after pooling (LayerNorm2d); applied to the map instead so
        # the pretrained norm is used and the map has the statistics the classifier was trained on
        norm = getattr(getattr(self.model, "head", None), "norm", None)
        self.head_norm = norm if isinstance(norm, LayerNorm2d) else None

    def _to_map(self, final: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if final.ndim == 3:  # ViT tokens (B, P + N, C) -> prefix (B, P, C) and grid (B, C, h, w)
            prefix, patches = final[:, : self.num_prefix], final[:, self.num_prefix :]
            h = w = math.isqrt(patches.shape[1])
            grid = patches.transpose(1, 2).reshape(final.shape[0], -1, h, w)
            return grid, prefix if self.num_prefix else None
        grid = final.permute(0, 3, 1, 2) if self.nhwc else final
        return (self.head_norm(grid) if self.head_norm is not None else grid), None

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        if not self.multi_scale:
            grid, prefix = self._to_map(self.model.forward_features(x))
            return FeatureMaps([grid], prefix)
        final, inter = self.model.forward_intermediates(x, indices=self.n_levels, output_fmt="NCHW")
        grid, prefix = self._to_map(final)
        return FeatureMaps([*inter[:-1], grid], prefix)

    def block_groups(self) -> list[list[torch.nn.Parameter]]:
        # timm's own depth grouping (the one its layer-wise lr decay uses), one group per block
        named = dict(self.model.named_parameters())
        groups = group_parameters(self.model, self.model.group_matcher(coarse=False))
        ordered = [[named[n] for n in groups[k]] for k in sorted(groups)]
        if len(ordered) > 1 and all(p.ndim <= 1 for p in ordered[-1]):
            ordered[-2:] = [ordered[-2] + ordered[-1]]  # a trailing norm belongs to the last block
        return ordered

    def no_weight_decay_names(self) -> set[str]:
        names = getattr(self.model, "no_weight_decay", lambda: set())()
        return {f"model.{n}" for n in names}
