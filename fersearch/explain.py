"""Grad-CAM overlays per ensemble member (Selvaraju et al. 2017; seed 004).

For each member: the backbone's last feature map A (C, h, w) and the gradient of the target
class logit with respect to it; channel weights are the spatially averaged gradients, the map
is ReLU(sum_c w_c A_c), upsampled to the input and normalised to [0, 1]. The target defaults to
the ensemble's (calibrated) prediction, so every member explains the same class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .ensemble import Ensemble, resize_rgb
from .errors import InvalidArgument, one_of
from .models import FERModel
from .runtime import to_input


def gradcam(model: FERModel, image: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """image (S, S, 3) uint8 at the model's size -> (cam (S, S) in [0, 1], member probs (K,)).

    The feature map is the one the head sees: the backbone's last map after the neck
    (attention blocks / feature pyramid), exactly as ``FERModel.encode`` builds it.
    """
    model.eval()
    x = to_input(torch.from_numpy(np.array(image[None])), model.preprocess["mean"], model.preprocess["std"])
    with torch.enable_grad():
        feats = model.backbone(x)
        fmap = model.neck(feats.maps)  # (1, C, h, w)
        fmap.retain_grad()
        tokens = fmap.flatten(2).transpose(1, 2)
        num_prefix = 0
        if feats.prefix is not None and model.keeps_prefix:
            tokens, num_prefix = torch.cat([feats.prefix, tokens], dim=1), feats.prefix.shape[1]
        _, logits = model.head(tokens, num_prefix)  # (1, K)
        model.zero_grad(set_to_none=True)
        logits[0, target].backward()
    grads, acts = fmap.grad[0], fmap.detach()[0]  # (C, h, w)
    cam = torch.relu((grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0))
    cam = F.interpolate(cam[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam.numpy(), torch.softmax(logits.detach()[0], -1).numpy()


def overlay(image: np.ndarray, cam: np.ndarray, size: int = 224, alpha: float = 0.45) -> Image.Image:
    import matplotlib

    heat = (matplotlib.colormaps["jet"](cam)[:, :, :3] * 255).astype(np.uint8)
    base = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    heat_im = Image.fromarray(heat).resize((size, size), Image.BILINEAR)
    return Image.blend(base, heat_im, alpha)


def explain(ens: Ensemble, image: Image.Image, out_dir: Path, stem: str, target: str | None = None) -> dict:
    """Write one overlay per member and a side-by-side panel; return paths and predictions."""
    names = ens.class_names
    probs = ens.predict_pil([image])[0]
    if target is None:
        t = int(probs.argmax())
    elif target in names:
        t = names.index(target)
    else:
        raise InvalidArgument(f"--target: {one_of(target, names)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles, members = [overlay(resize_rgb(image, 224), np.zeros((224, 224)), alpha=0.0)], []
    for i, model in enumerate(ens.models):
        arr = resize_rgb(image, model.preprocess["image_size"])
        cam, p = gradcam(model, arr, t)
        tile = overlay(arr, cam)
        path = out_dir / f"{stem}_member{i}.png"
        tile.save(path)
        tiles.append(tile)
        members.append(
            {"member": i, "path": str(path), "target_prob": float(p[t]), "cam_max_at": _argmax2d(cam)}
        )
    panel = Image.new("RGB", (224 * len(tiles), 224 + 22), "white")
    draw = ImageDraw.Draw(panel)
    for j, tile in enumerate(tiles):
        panel.paste(tile, (224 * j, 22))
        label = (
            f"input: {names[t]} {probs[t]:.2f}"
            if j == 0
            else f"member {j - 1}: {members[j - 1]['target_prob']:.2f}"
        )
        draw.text((224 * j + 4, 5), label, fill="black")
    panel_path = out_dir / f"{stem}_gradcam.png"
    panel.save(panel_path)
    return {
        "target": names[t],
        "ensemble_prob": float(probs[t]),
        "panel": str(panel_path),
        "members": members,
    }


def _argmax2d(cam: np.ndarray) -> list[int]:
    return [int(v) for v in np.unravel_index(int(cam.argmax()), cam.shape)]
