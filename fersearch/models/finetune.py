"""Fine-tuning from a finished fersearch model: ``pretrained: trial:STUDY/N | ensemble:DIR#I |
/path/best.json`` (fersearch/models/pretrained.py parses them).

The source is a whole FERModel's state dict with the config it was trained with. Reading it is
the job of the layers that know where it lives (fersearch/train/finetune.py reads checkpoints
and ensemble members; fersearch/search/finetune.py finds a trial's checkpoint through the study
storage); this module only puts its tensors into a freshly built model:

    backbone   all of it, or a ModelError: the same architecture with the same shapes
               (image size for ViTs, ...), since fine-tuning is the point
    the rest   (neck, fusion, temporal, AU and VA heads) tensor by tensor where name and
               shape match; what does not fit keeps its fresh init
    head       loaded when the classes are the same and every tensor fits; otherwise it is
               re-initialised (said in a log line), except a prompt head's frozen CLIP text
               tower, which must come from the source
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from timm.models import split_model_name_tag
from torch import nn

from ..errors import ModelError
from .backbones import backbone_family
from .backbones.timm import TimmFamily

log = logging.getLogger(__name__)

TEXT_TOWER = "head.text."  # a prompt head's frozen CLIP text tower: no class in it
# Settings of the source that change the backbone's tensor shapes, named when they do not fit.
SHAPE_KEYS = ("image_size", "fpn", "head")


@dataclass(frozen=True)
class FinetuneSource:
    """A finished model to start from: ``state`` is its FERModel state dict."""

    ref: str  # as ``pretrained`` names it: trial:s1/3
    where: str  # the file its tensors came from, for messages
    state: dict[str, torch.Tensor]
    config: dict  # the TrialConfig (JSON) it was trained with
    class_names: list[str] | None = None  # None: not recorded (checkpoints of older versions)
    num_classes: int | None = None
    preprocess: dict | None = None

    @property
    def backbone(self) -> str:
        return str(self.config.get("backbone", "?"))

    @property
    def shown(self) -> str:
        return f"pretrained {self.ref!r}" + (f" ({self.where})" if self.where not in self.ref else "")


@dataclass
class FinetuneReport:
    backbone: int = 0  # tensors loaded
    partial: dict[str, tuple[int, int]] = field(default_factory=dict)  # module -> (loaded, of)
    head: str = "loaded"  # or why it was re-initialised
    notes: list[str] = field(default_factory=list)

    @property
    def head_loaded(self) -> bool:
        return self.head == "loaded"


def architecture(backbone: str) -> str:
    """The network a backbone name builds, without its pretrained tag: timm's
    ``convnext_tiny.fb_in22k`` and ``convnext_tiny`` are one architecture."""
    family, name = backbone_family(backbone)
    if isinstance(family, TimmFamily):
        return split_model_name_tag(name)[0]
    return backbone


def check_same_backbone(source_ref: str, source_backbone: str, backbone: str) -> None:
    """The ModelError for a source whose backbone is another network than ``backbone``: cheap
    (names only), so a search space is checked when it is created, not when a trial runs."""
    try:
        same = architecture(source_backbone) == architecture(backbone)
    except ModelError:
        same = False
    if not same:
        raise ModelError(
            f"pretrained {source_ref!r} is a {source_backbone} model, but this trial's backbone is "
            f"{backbone}: fine-tuning starts from the source's backbone weights, so both must be the "
            f"same network. Use backbone: {source_backbone} with this source, or a source trained "
            f"with {backbone}"
        )


def load_finetune(
    model: nn.Module, source: FinetuneSource, config, class_names: list[str] | None = None
) -> FinetuneReport:
    """Put ``source``'s weights into ``model`` (built from ``config`` with random init) as the
    module docstring says; returns what was loaded. ``class_names``: the classes ``model``
    predicts (when known, a source with other names re-initialises the head)."""
    check_same_backbone(source.ref, source.backbone, config.backbone)
    target = model.state_dict()
    report = FinetuneReport()
    chosen = _backbone(source, target, config, report)
    chosen.update(_partial(source, target, report))
    chosen.update(_head(source, target, _num_classes(model), class_names, report))
    _check_preprocess(source, getattr(model, "preprocess", None), report)
    merged = {**target, **chosen}
    model.load_state_dict(merged)
    _log(source, report)
    return report


def _num_classes(model: nn.Module) -> int | None:
    return getattr(model, "num_classes", None)


def _backbone(source: FinetuneSource, target: dict, config, report: FinetuneReport) -> dict:
    keys = [k for k in target if k.startswith("backbone.")]
    missing = [k for k in keys if k not in source.state]
    wrong = [k for k in keys if k in source.state and source.state[k].shape != target[k].shape]
    if missing or wrong:
        examples = [
            f"{k}: source {tuple(source.state[k].shape)}, here {tuple(target[k].shape)}" for k in wrong[:2]
        ]
        examples += [f"{k}: not in the source" for k in missing[:2]]
        theirs = {k: source.config.get(k) for k in SHAPE_KEYS}
        ours = {k: getattr(config, k) for k in SHAPE_KEYS}
        differ = [f"{k} {theirs[k]!r} (here {ours[k]!r})" for k in SHAPE_KEYS if theirs[k] != ours[k]]
        hint = (
            f"the source was trained with {', '.join(differ)}: use its settings for these"
            if differ
            else "give a source saved from this backbone"
        )
        raise ModelError(
            f"{source.shown}: its {source.backbone} backbone weights do not fit this model's "
            f"({len(missing) + len(wrong)} of {len(keys)} tensors: {'; '.join(examples)}); {hint}"
        )
    report.backbone = len(keys)
    return {k: source.state[k] for k in keys}


def _fits(source: FinetuneSource, target: dict, key: str) -> bool:
    return key in source.state and source.state[key].shape == target[key].shape


def _partial(source: FinetuneSource, target: dict, report: FinetuneReport) -> dict:
    """Every module but the backbone and the head, tensor by tensor where name and shape match."""
    chosen, modules = {}, {}
    for k in target:
        module = k.split(".", 1)[0]
        if module not in ("backbone", "head"):
            modules.setdefault(module, []).append(k)
    for module, keys in modules.items():
        fit = [k for k in keys if _fits(source, target, k)]
        chosen.update({k: source.state[k] for k in fit})
        report.partial[module] = (len(fit), len(keys))
    return chosen


def _head(
    source: FinetuneSource, target: dict, num_classes: int | None, class_names: list[str] | None, report
) -> dict:
    keys = [k for k in target if k.startswith("head.")]
    theirs, ours = source.num_classes, num_classes
    if theirs is not None and ours is not None and theirs != ours:
        report.head = f"the classes differ ({theirs} in the source, {ours} here)"
    elif source.class_names and class_names and list(source.class_names) != list(class_names):
        theirs, ours = ", ".join(source.class_names), ", ".join(class_names)
        report.head = f"the classes differ ({theirs} in the source; {ours} here)"
    elif not all(_fits(source, target, k) for k in keys):
        head = source.config.get("head")
        report.head = f"the head differs (the source's is {head!r}, with other shapes)"
    if report.head_loaded:
        return {k: source.state[k] for k in keys}
    text = [k for k in keys if k.startswith(TEXT_TOWER)]
    if text and not all(_fits(source, target, k) for k in text):
        raise ModelError(
            f"{source.shown}: the prompt head's frozen CLIP text tower comes from the source, which "
            f"has none that fits (its head is {source.config.get('head')!r}); fine-tune a prompt head "
            f"from a prompt-head source of the same CLIP model, or use another head"
        )
    return {k: source.state[k] for k in text}


def _check_preprocess(source: FinetuneSource, pre: dict | None, report: FinetuneReport) -> None:
    if not source.preprocess or not pre:
        return
    for key in ("mean", "std"):
        theirs, ours = source.preprocess.get(key), pre.get(key)
        if (
            theirs is not None
            and ours is not None
            and [round(float(v), 6) for v in theirs] != [round(float(v), 6) for v in ours]
        ):
            report.notes.append(f"inputs are normalised with {key} {ours}, the source's was {theirs}")


def _log(source: FinetuneSource, report: FinetuneReport) -> None:
    parts = [f"backbone loaded ({report.backbone} tensors)"]
    parts += [f"{name} {n}/{of} tensors loaded" for name, (n, of) in report.partial.items()]
    parts.append("head loaded" if report.head_loaded else f"head re-initialised: {report.head}")
    parts += report.notes
    partial = any(n < of for n, of in report.partial.values())
    level = logging.INFO if report.head_loaded and not partial and not report.notes else logging.WARNING
    log.log(level, "fine-tuning from %s: %s", source.shown, "; ".join(parts))


__all__ = ["FinetuneReport", "FinetuneSource", "architecture", "check_same_backbone", "load_finetune"]
