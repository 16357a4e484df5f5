"""Backbones: image -> spatial feature maps (+ class tokens where the network has them).

A backbone name is a timm model name (``convnext_tiny``, ``convnext_tiny.fb_in22k``), an
open_clip model prefixed with ``open_clip:`` (``open_clip:ViT-B-16``), or a name a family owns
outright (``ir50``, the face-recognition IR-50). Families register a name prefix or exact bare
names; any other bare name belongs to timm.
"""

from __future__ import annotations

import difflib

from ...errors import ModelError
from ...registry import Registry
from ..pretrained import backbone_pretrained, finetune_kind
from .base import Backbone, FeatureMaps
from .clip import OpenClipFamily
from .ir50 import FaceFamily
from .timm import TimmFamily

_FAMILIES = Registry("backbone family")  # reached by a prefix: open_clip:ViT-B-16
_FAMILIES.register("timm")(TimmFamily())
_FAMILIES.register("open_clip")(OpenClipFamily())
# Exact bare names a family owns, looked up before timm (which owns every other bare name).
_OWNED = Registry("backbone")

# What the built-in search spaces choose from (any timm / open_clip name works too).
CURATED = (
    "convnext_atto",
    "convnext_femto",
    "convnext_pico",
    "convnext_nano",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "swin_tiny_patch4_window7_224",
    "swin_base_patch4_window7_224",
    "resnet18",
    "resnet50",
    "vit_base_patch16_224",
    "open_clip:ViT-B-32",
    "open_clip:ViT-B-16",
    "ir50",
    # tiny random-init models so every code path runs on a CPU in seconds
    "test_resnet",
    "test_efficientnet",
    "test_convnext",
    "test_vit",
    "open_clip:test-clip-ViT",
)


def register_backbone_family(prefix: str, family) -> None:
    """Add a family (an object with validate/check/width/preprocess/create) reached as
    ``prefix:<name>``."""
    _FAMILIES.register(prefix)(family)


def register_backbone_names(family, names) -> None:
    """Add a family (the same verbs) that owns these exact bare names, ahead of timm: ``ir50``."""
    for name in names:
        _OWNED.register(name)(family)


register_backbone_names(FaceFamily(), FaceFamily.names)


def list_backbones() -> list[str]:
    return list(CURATED)


def list_backbone_families() -> list[str]:
    return _FAMILIES.names()


def _split(name: str):
    prefix, sep, rest = str(name).partition(":")
    if not sep:
        return (_OWNED.get(name) if name in _OWNED else _FAMILIES.get("timm")), name
    if prefix not in _FAMILIES:
        raise ModelError(
            f"unknown backbone family {prefix!r} in {name!r}; valid prefixes: "
            f"{', '.join(p + ':' for p in _FAMILIES.names() if p != 'timm')} (or a bare timm name)"
        )
    return _FAMILIES.get(prefix), rest


def _validated(name: str):
    family, rest = _split(name)
    try:
        family.validate(rest)
    except ModelError as exc:
        close = difflib.get_close_matches(str(name).lower(), _OWNED.names(), n=1, cutoff=0.75)
        if close:  # IR50, ir_50: timm's suggestions would not mention the face backbones
            raise ModelError(f"{exc}; or did you mean {close[0]}?") from None
        raise
    return family, rest


def validate_backbone(name: str) -> None:
    _validated(name)


def backbone_family(name: str):
    """(the family that builds ``name``, the name within it), validated."""
    return _validated(name)


def check_backbone(name: str, multi_scale: bool = False, keep_text: bool = False) -> None:
    """Raise the ModelError building this backbone with these options would raise, without
    building it."""
    family, rest = _validated(name)
    family.check(rest, multi_scale=multi_scale, keep_text=keep_text)


def backbone_width(name: str, multi_scale: bool = False) -> int:
    """The channels of the backbone's deepest map, without building it (timm: on the meta
    device, a fraction of a second; open_clip: from its config)."""
    family, rest = _split(name)
    return family.width(rest, multi_scale)


def backbone_preprocess(name: str, pretrained: bool | str = False) -> dict:
    """mean, std, image_size from the backbone's own (pretrained) config, without building it."""
    family, rest = _split(name)
    return family.preprocess(rest, backbone_pretrained(pretrained))  # a fine-tune source: the default


def create_backbone(
    name: str,
    pretrained: bool | str = False,
    image_size: int | None = None,
    multi_scale: bool = False,
    keep_text: bool = False,
) -> Backbone:
    if finetune_kind(pretrained):
        raise ModelError(
            f"pretrained {pretrained!r} is a whole finished model, not backbone weights: build it "
            f"with create_model(config, ..., init=source), which loads its backbone, neck and head"
        )
    family, rest = _validated(name)
    return family.create(
        rest, pretrained=pretrained, image_size=image_size, multi_scale=multi_scale, keep_text=keep_text
    )


__all__ = [
    "Backbone",
    "FeatureMaps",
    "backbone_family",
    "backbone_preprocess",
    "backbone_width",
    "check_backbone",
    "create_backbone",
    "list_backbone_families",
    "list_backbones",
    "register_backbone_family",
    "register_backbone_names",
    "validate_backbone",
]
