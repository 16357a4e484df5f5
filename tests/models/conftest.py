"""Helpers for the model tests: tiny configs that build in well under a second on a CPU."""

from __future__ import annotations

import pytest
import torch

from fersearch.config import build_config

CLIP_TINY = "open_clip:test-clip-ViT"  # registered with open_clip from fersearch/models/clip_configs
FER7 = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]


@pytest.fixture
def cfg():
    def make(**values):
        values.setdefault("backbone", "test_resnet")
        if not values["backbone"].startswith("open_clip:"):
            values.setdefault("image_size", 32)
        return build_config({"data": {"root": "."}, **values})

    return make


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: proves a code path stays offline."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("FERSEARCH_ALLOW_DOWNLOAD", raising=False)
