"""The head registry and the one spec every head is built from."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ...registry import Registry

_HEADS = Registry("head")
register_head = _HEADS.register


@dataclass
class HeadSpec:
    in_dim: int
    num_classes: int
    config: object  # TrialConfig
    pool: str = "avg"
    backbone: nn.Module | None = None  # the prompt head takes the text tower from it
    class_names: list[str] = field(default_factory=list)


def list_heads() -> list[str]:
    return _HEADS.names()


def create_head(name: str, spec: HeadSpec) -> nn.Module:
    return _HEADS.create(name, spec)
