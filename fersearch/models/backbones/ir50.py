"""``ir50``: the 50-layer face-recognition ResNet (IR-50) trained on MS-Celeb-1M, the face
backbone POSTER V2 and APViT start from.

The modules and their names follow face.evoLVe's ``IR_50`` (``backbone/model_irse.py`` in
github.com/ZhaoJ9014/face.evoLVe), so its published state dict ``backbone_ir50_ms1m_epoch120.pth``
loads key for key::

    input_layer   Conv3x3(3->64) BN PReLU                      (B, 64, 112, 112)
    body.0-2      3 units,  64 ch, the first with stride 2     (B, 64, 56, 56)
    body.3-6      4 units, 128 ch                              (B, 128, 28, 28)
    body.7-20     14 units, 256 ch                             (B, 256, 14, 14)
    body.21-23    3 units, 512 ch                              (B, 512, 7, 7)
    output_layer  BN Dropout Flatten Linear(512*7*7 -> 512) BN1d: the face-identity embedding

FER reads the body's spatial maps, so ``output_layer`` is not built: its keys in a file are
skipped, every other key must fit. Inputs are 112 px aligned faces scaled to [-1, 1]
(face.evoLVe's ``(x - 128) / 128``: mean = std = 0.5).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...errors import ModelError
from ..pretrained import parse_pretrained, read_state_dict
from .base import Backbone, FeatureMaps, needs_text_tower

IR50_FILE = "backbone_ir50_ms1m_epoch120.pth"
IR50_SOURCE = "face.evoLVe's IR-50 on MS-Celeb-1M, from the model zoo of github.com/ZhaoJ9014/face.evoLVe"
STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # (channels, units)
SKIPPED_PREFIX = "output_layer."


def default_weights_path() -> Path:
    """Where ``pretrained: true`` looks: torch hub's checkpoint folder, beside timm's URL weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IR50_FILE


class IRUnit(nn.Module):
    """face.evoLVe's ``bottleneck_IR``: BN-Conv3x3-PReLU-Conv3x3(stride)-BN plus a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        if cin == cout:  # a 1x1 max-pool is a parameter-free strided identity
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class FaceFamily:
    """Backbones pretrained on faces, reached by their bare names (``ir50``)."""

    names = ("ir50",)

    def validate(self, name: str) -> None:
        if name not in self.names:
            raise ModelError(f"unknown face backbone {name!r}; valid: {', '.join(self.names)}")

    def weights(self, name: str, pretrained: bool | str) -> str | None:
        """The local weights file to load, or None for random init. Nothing is downloaded: the
        release is on cloud drives, not at a URL a worker could fetch."""
        request = parse_pretrained(pretrained)
        if request.kind == "none":
            return None
        if request.kind == "file":
            return request.value
        if request.kind in ("tag", "cache_dir"):
            given = "tag" if request.kind == "tag" else "Hugging Face cache"
            raise ModelError(
                f"{name} has no pretrained tags and no Hugging Face release (got the {given} "
                f"{request.value!r}); valid: true (reads {default_weights_path()}), a path to "
                f"{IR50_FILE}, or false"
            )
        path = default_weights_path()
        if not path.is_file():
            raise ModelError(
                f"pretrained weights for {name} ({IR50_SOURCE}) are not at {path}, and are never "
                f"downloaded: put {IR50_FILE} there, give pretrained: /path/to/{IR50_FILE}, "
                f"or use pretrained: false"
            )
        return str(path)

    def preprocess(self, name: str, pretrained: bool | str) -> dict:
        if parse_pretrained(pretrained).kind in ("tag", "cache_dir"):
            self.weights(name, pretrained)  # the same error building would give
        return {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "image_size": 112}

    def check(self, name: str, multi_scale: bool, keep_text: bool) -> None:
        if keep_text:
            raise ModelError(needs_text_tower(name))

    def width(self, name: str, multi_scale: bool = False) -> int:
        return STAGES[-1][0]

    def create(self, name, pretrained, image_size, multi_scale, keep_text) -> IR50Backbone:
        self.check(name, multi_scale, keep_text)
        return IR50Backbone(name, pretrained, image_size, multi_scale)


class IR50Backbone(Backbone):
    """x (B, 3, H, W) -> the last stage's map, or the last three stages' maps for the pyramid
    (like timm backbones: 128, 256, 512 channels at H/4, H/8, H/16)."""

    def __init__(self, name: str, pretrained: bool | str, image_size: int | None, multi_scale: bool):
        super().__init__()
        family = FaceFamily()
        weights_file = family.weights(name, pretrained)
        self.name = name
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        units, cin, self.stage_ends = [], 64, []
        for cout, n in STAGES:
            units += [IRUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(n)]
            cin = cout
            self.stage_ends.append(len(units))
        self.body = nn.Sequential(*units)
        if weights_file is not None:
            self._load(weights_file)
        self.preprocess = family.preprocess(name, pretrained)
        if image_size:
            self.preprocess["image_size"] = image_size
        self.multi_scale = multi_scale
        self.channels = [c for c, _ in STAGES[-3:]] if multi_scale else [STAGES[-1][0]]

    def _load(self, path: str) -> None:
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(SKIPPED_PREFIX)}
        own = self.state_dict()
        # BatchNorm counters are absent from files saved before PyTorch 0.4.1 and do not change
        # the forward pass
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        wrong = [
            f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ]
        problems = [
            f"{what} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        if problems:
            raise ModelError(
                f"cannot create backbone {self.name}: the weights in {path} do not fit it "
                f"({'; '.join(problems)}); give face.evoLVe's IR-50 state dict ({IR50_FILE}: "
                f"input_layer.*, body.<unit>.*, output_layer.*) or weights saved from fersearch's "
                f"{self.name}"
            )
        self.load_state_dict(state, strict=False)  # strict but for the counters checked above

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        x = self.input_layer(x)
        maps = []
        for i, unit in enumerate(self.body, start=1):
            x = unit(x)
            if i in self.stage_ends:
                maps.append(x)
        return FeatureMaps(maps[-3:] if self.multi_scale else maps[-1:])

    def block_groups(self) -> list[list[nn.Parameter]]:
        # the stem, then one group per residual unit, in depth order
        return [list(self.input_layer.parameters()), *(list(u.parameters()) for u in self.body)]
