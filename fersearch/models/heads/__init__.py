"""Heads: tokens (B, P + N, C) -> (features (B, D), logits (B, K)).

Every head is built from one ``HeadSpec`` so the factory and the conformance tests build them
the same way. ``features`` is what the multi-task AU head reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..registry import Registry

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


from . import bilstm, classifier, prompt  # noqa: E402,F401  (registration side effects)
from .au import AUHead, au_loss  # noqa: E402

__all__ = ["AUHead", "HeadSpec", "au_loss", "create_head", "list_heads", "register_head"]
