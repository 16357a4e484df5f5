"""Freezing, partial unfreezing and per-part learning rates.

``freeze_backbone: true`` locks the image tower; ``unfreeze_last: N`` unlocks its last N blocks
again (blocks as timm's layer-decay grouping or open_clip's ``lock()`` define them).

``param_groups(model, config)`` gives the optimizer one group per (part, decay) pair:

    part      lr                              parameters
    backbone  lr_backbone (None: lr)          the image tower
    prompt    lr_prompt   (None: lr)          the prompt head's learned context vectors
    head      lr                              neck, fusion, temporal, head, AU head

Seed 000 trains CLIP with lr_prompt 1e-3 and lr_backbone about 1e-6. Biases, norms, scalars and
what the backbone declares (position embeddings, class tokens) get no weight decay; frozen
parameters are left out.
"""

from __future__ import annotations

from torch import nn

from ..config import TrialConfig
from ..errors import ModelError


def apply_freezing(model: nn.Module, config: TrialConfig) -> None:
    if not config.freeze_backbone:
        if config.unfreeze_last:
            raise ModelError("unfreeze_last only applies with freeze_backbone: true")
        return
    backbone = model.backbone
    backbone.requires_grad_(False)
    groups = backbone.block_groups()
    if config.unfreeze_last > len(groups):
        raise ModelError(
            f"unfreeze_last {config.unfreeze_last} exceeds the {len(groups)} blocks of {config.backbone!r}"
        )
    for group in groups[len(groups) - config.unfreeze_last :] if config.unfreeze_last else []:
        for p in group:
            p.requires_grad_(True)


def part_of(name: str) -> str:
    if name.startswith("backbone."):
        return "backbone"
    if name == "head.ctx":
        return "prompt"
    return "head"


def param_groups(model: nn.Module, config: TrialConfig) -> list[dict]:
    """Optimizer parameter groups: [{'name', 'params', 'lr', 'weight_decay'}, ...]."""
    lrs = {
        "backbone": config.lr_backbone or config.lr,
        "prompt": config.lr_prompt or config.lr,
        "head": config.lr,
    }
    # Any nn.Module trains (tests use tiny stand-ins); FERModel adds its backbone's no-decay list.
    backbone = getattr(model, "backbone", None)
    no_decay_names = (
        {f"backbone.{n}" for n in backbone.no_weight_decay_names()}
        if hasattr(backbone, "no_weight_decay_names")
        else set()
    )
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1 and name not in no_decay_names
        buckets.setdefault((part_of(name), decay), []).append(p)
    groups = []
    for (part, decay), params in sorted(buckets.items()):
        groups.append(
            {
                "name": f"{part}/{'decay' if decay else 'no_decay'}",
                "params": params,
                "lr": lrs[part],
                "weight_decay": config.weight_decay if decay else 0.0,
            }
        )
    if not groups:
        raise ModelError("every parameter is frozen; unfreeze something (freeze_backbone, unfreeze_last)")
    return groups
