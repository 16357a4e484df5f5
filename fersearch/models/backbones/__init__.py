"""Backbones: image -> spatial feature maps (+ class tokens where the network has them).

A backbone name is a timm model name (``convnext_tiny``, ``convnext_tiny.fb_in22k``) or an
open_clip model prefixed with ``open_clip:`` (``open_clip:ViT-B-16``). Families register a name
prefix; a name without a prefix belongs to timm.
"""

from __future__ import annotations

from ...errors import ModelError
from ...registry import Registry
from .base import Backbone, FeatureMaps
from .clip import OpenClipFamily
from .timm import TimmFamily

_FAMILIES = Registry("backbone family")
_FAMILIES.register("timm")(TimmFamily())
_FAMILIES.register("open_clip")(OpenClipFamily())

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


def list_backbones() -> list[str]:
    return list(CURATED)


def list_backbone_families() -> list[str]:
    return _FAMILIES.names()


def _split(name: str):
    prefix, sep, rest = str(name).partition(":")
    if not sep:
        return _FAMILIES.get("timm"), name
    if prefix not in _FAMILIES:
        raise ModelError(
            f"unknown backbone family {prefix!r} in {name!r}; valid prefixes: "
            f"{', '.join(p + ':' for p in _FAMILIES.names() if p != 'timm')} (or a bare timm name)"
        )
    return _FAMILIES.get(prefix), rest


def validate_backbone(name: str) -> None:
    family, rest = _split(name)
    family.validate(rest)


def check_backbone(name: str, multi_scale: bool = False, keep_text: bool = False) -> None:
    """Raise the ModelError building this backbone with these options would raise, without
    building it."""
    family, rest = _split(name)
    family.validate(rest)
    family.check(rest, multi_scale=multi_scale, keep_text=keep_text)


def backbone_width(name: str, multi_scale: bool = False) -> int:
    """The channels of the backbone's deepest map, without building it (timm: on the meta
    device, a fraction of a second; open_clip: from its config)."""
    family, rest = _split(name)
    return family.width(rest, multi_scale)


def backbone_preprocess(name: str, pretrained: bool | str = False) -> dict:
    """mean, std, image_size from the backbone's own (pretrained) config, without building it."""
    family, rest = _split(name)
    return family.preprocess(rest, pretrained)


def create_backbone(
    name: str,
    pretrained: bool | str = False,
    image_size: int | None = None,
    multi_scale: bool = False,
    keep_text: bool = False,
) -> Backbone:
    family, rest = _split(name)
    family.validate(rest)
    return family.create(
        rest, pretrained=pretrained, image_size=image_size, multi_scale=multi_scale, keep_text=keep_text
    )


__all__ = [
    "Backbone",
    "FeatureMaps",
    "backbone_preprocess",
    "backbone_width",
    "check_backbone",
    "create_backbone",
    "list_backbone_families",
    "list_backbones",
    "register_backbone_family",
    "validate_backbone",
]
