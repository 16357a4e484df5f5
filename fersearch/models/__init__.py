"""Models built from a TrialConfig: backbone -> neck -> [fusion] -> [temporal] -> head [+ AU].

Every pluggable family has a registry with timm's verbs (``register_*``, ``list_*``,
``create_*``); an unknown name is a ModelError listing the valid ones.
"""

from .backbones import (
    backbone_preprocess,
    create_backbone,
    list_backbone_families,
    list_backbones,
    register_backbone_family,
    validate_backbone,
)
from .factory import FERModel, check_config, create_model, preprocess_for, without_finetune_source
from .finetune import FinetuneSource, load_finetune
from .fusion import create_fusion, list_fusions, register_fusion
from .heads import AUHead, HeadSpec, au_loss, create_head, list_heads, register_head
from .necks import Neck, create_neck, list_necks, register_neck
from .optim import apply_freezing, param_groups
from .pooling import create_pool, list_pools, register_pool
from .temporal import create_temporal, list_temporal, register_temporal

__all__ = [
    "AUHead",
    "FERModel",
    "FinetuneSource",
    "HeadSpec",
    "Neck",
    "apply_freezing",
    "au_loss",
    "check_config",
    "backbone_preprocess",
    "create_backbone",
    "create_fusion",
    "create_head",
    "create_model",
    "create_neck",
    "create_pool",
    "create_temporal",
    "list_backbone_families",
    "list_backbones",
    "list_fusions",
    "list_heads",
    "list_necks",
    "list_pools",
    "list_temporal",
    "load_finetune",
    "param_groups",
    "preprocess_for",
    "register_backbone_family",
    "register_fusion",
    "register_head",
    "register_neck",
    "register_pool",
    "register_temporal",
    "validate_backbone",
    "without_finetune_source",
]
