"""models.check_config finds, without building, exactly the part combinations create_model
cannot build: the two agree on every combination of the parts that constrain each other."""

from __future__ import annotations

import itertools

import pytest

from fersearch.errors import ModelError
from fersearch.models import check_config, create_model

from .conftest import CLIP_TINY

GRID = list(
    itertools.product(
        ["test_resnet", "test_vit", CLIP_TINY],  # a CNN, a timm ViT, a CLIP tower
        ["linear", "prompt"],
        [False, True],  # fpn
        [("none", 8), ("xattn", 3), ("xattn", 4), ("xattn", 32)],  # fusion, fusion_heads
    )
)


@pytest.mark.parametrize("backbone, head, fpn, fusion", GRID, ids=lambda v: str(v))
def test_check_config_agrees_with_building_the_model(cfg, backbone, head, fpn, fusion):
    config = cfg(backbone=backbone, head=head, fpn=fpn, fpn_dim=48, fusion=fusion[0], fusion_heads=fusion[1])
    try:
        create_model(config, 7, [f"c{i}" for i in range(7)])
        built = None
    except ModelError as exc:
        built = str(exc)
    try:
        check_config(config)
        checked = None
    except ModelError as exc:
        checked = str(exc)
    assert checked == built  # the same verdict, and the same words


def test_the_grid_holds_both_verdicts(cfg):
    verdicts = set()
    for backbone, head, fpn, fusion in GRID:
        config = cfg(
            backbone=backbone, head=head, fpn=fpn, fpn_dim=48, fusion=fusion[0], fusion_heads=fusion[1]
        )
        try:
            check_config(config)
            verdicts.add("builds")
        except ModelError:
            verdicts.add("fails")
    assert verdicts == {"builds", "fails"}
