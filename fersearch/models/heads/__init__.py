"""Heads: tokens (B, P + N, C) -> (features (B, D), logits (B, K)).

Every head is built from one ``HeadSpec`` so the factory and the conformance tests build them
the same way. ``features`` is what the multi-task AU and VA heads read.
"""

from __future__ import annotations

from . import bilstm, classifier, prompt  # noqa: F401  (registration side effects)
from .au import AUHead, au_loss
from .base import HeadSpec, create_head, list_heads, register_head
from .va import VAHead

__all__ = ["AUHead", "HeadSpec", "VAHead", "au_loss", "create_head", "list_heads", "register_head"]
