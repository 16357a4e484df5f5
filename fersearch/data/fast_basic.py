"""The ``basic`` pipeline's transforms applied without albumentations' per-call machinery.

albumentations stays the definition: a :class:`FastBasic` is built *from* the Compose that
``augment.build_pipeline("basic", ...)`` returns and reads every range, probability,
interpolation and border mode from its validated transforms, so the two cannot drift apart.
What changes is how the work is done, per batch instead of per albumentations call:

- every random draw of a batch is made at once (numpy, one Generator seeded per batch);
- HorizontalFlip is one ``cv2.flip``, Affine one ``cv2.warpAffine`` with the matrix built for the
  whole batch at once; an image none of the transforms fire on is not touched or copied;
- ColorJitter runs its four parts in the sampled order with albumentations' own uint8 formulas
  (the same lookup tables, the same OpenCV calls), but each lookup table is applied with one
  ``cv2.LUT`` call (hue: the table on the extracted H plane, not a strided channel copy), and
  contrast directly followed by brightness is one composed table;
- no Compose call, no per-call validation or dict wrapping, no matrix built twice (albumentations
  builds one for bounding boxes too).

Given the same sampled parameters the output is byte for byte albumentations' (``apply_params``
vs the transforms' own ``apply``), and the draws follow the same distributions
(tests/test_data_fast_basic.py). (Folding the flip into the affine matrix was tried and dropped:
it saves one ``cv2.flip``, about 1 % of the time, but OpenCV's fixed-point coordinates then
round differently and up to 1 % of the pixels move by a few grey levels.) All V views of a
packed (H, W, 3V) sample share one draw, as with albumentations' ``additional_targets``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .views import split_views

_GRAY = cv2.COLOR_RGB2GRAY


@dataclass
class Draws:
    """A batch's sampled parameters (one entry per sample)."""

    flip: np.ndarray  # bool
    affine: np.ndarray  # bool: the Affine transform fires and its matrix is not the identity
    matrix: np.ndarray  # (B, 3, 3) float64 affine matrix (albumentations' convention), flip not folded
    jitter: np.ndarray  # bool: ColorJitter fires
    factors: np.ndarray  # (B, 4) brightness, contrast, saturation, hue
    order: np.ndarray  # (B, 4) the order the four parts run in


def supports(compose) -> bool:
    """Whether ``compose`` is a pipeline :class:`FastBasic` reproduces: HorizontalFlip, Affine,
    ColorJitter (each optional, in that order) with the options ``basic`` uses."""
    import albumentations as A

    kinds = [type(t) for t in compose.transforms]
    allowed = [A.HorizontalFlip, A.Affine, A.ColorJitter]
    if [k for k in allowed if k in kinds] != kinds or len(set(kinds)) != len(kinds):
        return False
    if getattr(compose, "p", 1.0) != 1.0:
        return False
    for t in compose.transforms:
        if isinstance(t, A.Affine) and (
            t.fit_output
            or t.keep_ratio
            or t.balanced_scale
            or t.translate_px is not None
            or t.translate_percent is None
            or t.interpolation not in (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
        ):
            return False
    return True


class FastBasic:
    """``FastBasic(compose)(batch, seed)`` augments a (B, H, W, 3V) uint8 batch in place."""

    def __init__(self, compose):
        import albumentations as A

        if not supports(compose):
            raise ValueError("FastBasic reproduces HorizontalFlip / Affine / ColorJitter pipelines only")
        by_kind = {type(t): t for t in compose.transforms}
        flip, affine, jitter = (by_kind.get(k) for k in (A.HorizontalFlip, A.Affine, A.ColorJitter))
        self.p_flip = float(flip.p) if flip is not None else 0.0
        self.p_affine = float(affine.p) if affine is not None else 0.0
        self.p_jitter = float(jitter.p) if jitter is not None else 0.0
        if affine is not None:
            self.translate = (affine.translate_percent["x"], affine.translate_percent["y"])
            self.scale = (affine.scale["x"], affine.scale["y"])
            self.rotate = affine.rotate
            self.shear = (affine.shear["x"], affine.shear["y"])
            self.interpolation = affine.interpolation
            self.border_mode = affine.border_mode
            self.fill = affine.fill
        if jitter is not None:
            self.ranges = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)

    # -- sampling -------------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, n: int, height: int, width: int) -> Draws:
        """Every parameter of ``n`` samples of ``height`` x ``width``, as albumentations draws them:
        Bernoulli(p) per transform, uniform ranges, translation truncated to whole pixels
        (``int(fraction * side)``), x and y scale drawn apart, a uniform order of the jitter parts."""
        u = rng.random((n, 3))
        flip = u[:, 0] < self.p_flip
        affine = u[:, 1] < self.p_affine
        jitter = u[:, 2] < self.p_jitter
        matrix = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        if self.p_affine > 0:
            a = rng.random((n, 7))
            lerp = lambda col, lo_hi: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * a[:, col]  # noqa: E731
            tx = np.trunc(lerp(0, self.translate[0]) * width)  # albumentations: int(t * width)
            ty = np.trunc(lerp(1, self.translate[1]) * height)
            sx, sy = lerp(2, self.scale[0]), lerp(3, self.scale[1])
            rot = lerp(4, self.rotate)
            shx, shy = -lerp(5, self.shear[0]), -lerp(6, self.shear[1])
            matrix = affine_matrices(tx, ty, sx, sy, rot, shx, shy, height, width)
            # albumentations skips the warp when np.allclose(matrix, identity)
            affine &= ~np.isclose(matrix, np.eye(3)).all(axis=(1, 2))
        factors = np.ones((n, 4))
        order = np.broadcast_to(np.arange(4), (n, 4)).copy()
        if self.p_jitter > 0:
            lo = np.array([r[0] for r in self.ranges])
            hi = np.array([r[1] for r in self.ranges])
            factors = lo + (hi - lo) * rng.random((n, 4))
            order = np.argsort(rng.random((n, 4)), axis=1)  # a uniform permutation per sample
        return Draws(flip, affine, matrix, jitter, factors, order)

    # -- applying -------------------------------------------------------------------------------

    def __call__(self, batch: np.ndarray, seed: int) -> np.ndarray:
        """Augment ``batch`` (B, H, W, 3V) uint8 in place with the draws of ``seed``."""
        n, h, w = batch.shape[:3]
        draws = self.draw(np.random.default_rng(seed), n, h, w)
        for i in range(n):
            self.apply_params(batch[i], draws, i, out=batch[i])
        return batch

    def apply_params(self, sample: np.ndarray, d: Draws, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i``'s transforms from ``d`` on one (H, W, 3V) sample (into ``out`` if given)."""
        geometric = d.flip[i] or d.affine[i]
        jitter = d.jitter[i]
        if not (geometric or jitter):
            if out is not None and out is not sample:
                out[...] = sample
            return sample if out is None else out
        views = [sample] if sample.shape[-1] == 3 else split_views(sample)
        results = []
        for view in views:
            img = np.ascontiguousarray(view)
            if geometric:
                img = self._geometric(img, d, i)
            if jitter:
                img = self._jitter(img, d.factors[i], d.order[i])
            results.append(img)
        if out is None:
            return results[0] if len(results) == 1 else np.concatenate(results, axis=-1)
        if len(results) == 1:
            out[...] = results[0]
        else:
            for k, r in enumerate(results):
                out[..., 3 * k : 3 * k + 3] = r
        return out

    def _geometric(self, img: np.ndarray, d: Draws, i: int) -> np.ndarray:
        if d.flip[i]:
            img = cv2.flip(img, 1)
        if not d.affine[i]:
            return img
        h, w = img.shape[:2]
        fill = self.fill if isinstance(self.fill, (tuple, list)) else (self.fill,) * 3
        flags, border = self.interpolation, self.border_mode
        return cv2.warpAffine(img, d.matrix[i][:2], (w, h), flags=flags, borderMode=border, borderValue=fill)

    def _jitter(self, img: np.ndarray, factors: np.ndarray, order: np.ndarray) -> np.ndarray:
        parts = order.tolist()
        k = 0
        while k < len(parts):
            part, f = parts[k], float(factors[parts[k]])
            if part == 1 and k + 1 < len(parts) and parts[k + 1] == 0:
                # contrast then brightness: both lookup tables, composed into one pass (exact)
                img = cv2.LUT(img, brightness_lut(float(factors[0]))[contrast_lut(img, f)])
                k += 2
                continue
            if part == 0:
                img = brightness(img, f)
            elif part == 1:
                img = contrast(img, f)
            elif part == 2:
                img = saturation(img, f)
            else:
                img = hue(img, f)
            k += 1
        return img


def affine_matrices(tx, ty, sx, sy, rot, shx, shy, height: int, width: int) -> np.ndarray:
    """(B, 3, 3) matrices exactly as albumentations' ``create_affine_transformation_matrix``
    composes them (shift to the pixel centre, scale, rotate, shear, translate, shift back)."""
    n = len(tx)
    cx, cy = width / 2 - 0.5, height / 2 - 0.5

    def stack(rows):
        m = np.zeros((n, 3, 3))
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                m[:, r, c] = v
        return m

    rad = np.deg2rad(np.asarray(rot) % 360)
    cos, sin = np.cos(rad), np.sin(rad)
    one, zero = np.ones(n), np.zeros(n)
    shift_topleft = stack([[one, zero, -cx * one], [zero, one, -cy * one], [zero, zero, one]])
    scale = stack([[sx, zero, zero], [zero, sy, zero], [zero, zero, one]])
    rotate = stack([[cos, sin, zero], [-sin, cos, zero], [zero, zero, one]])
    shear = stack(
        [[one, np.tan(np.deg2rad(shx)), zero], [np.tan(np.deg2rad(shy)), one, zero], [zero, zero, one]]
    )
    translate = stack([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shift_center = stack([[one, zero, cx * one], [zero, one, cy * one], [zero, zero, one]])
    m = shift_center @ translate @ shear @ rotate @ scale @ shift_topleft
    m[:, 2] = (0.0, 0.0, 1.0)
    return m


# ColorJitter's four parts on uint8, as albumentations (fpixel.adjust_*_torchvision) computes them.


def brightness_lut(factor: float) -> np.ndarray:
    """albucore's uint8 multiply table: trunc(clip(v * factor)), in float32."""
    return np.clip(np.arange(256, dtype=np.float32) * np.float32(factor), 0, 255).astype(np.uint8)


def contrast_lut(img: np.ndarray, factor: float) -> np.ndarray:
    """The contrast table of ``img``: v * factor + mean_gray * (1 - factor), as albucore's
    multiply_add builds it (factor 0 and 1 included)."""
    if factor == 1:
        return np.arange(256, dtype=np.uint8)
    gray = cv2.cvtColor(img, _GRAY)
    mean = cv2.sumElems(gray)[0] / gray.size  # == gray.mean(): an exact integer sum, one division
    if factor == 0:
        return np.full(256, int(mean + 0.5), dtype=np.uint8)
    offset = float(mean * (1 - factor))  # a Python float, as albucore's multiply_add gets it
    return np.clip(np.arange(256, dtype=np.float32) * factor + offset, 0, 255).astype(np.uint8)


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return img
    if factor == 0:
        return np.zeros_like(img)
    return cv2.LUT(img, brightness_lut(factor))


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return img
    return cv2.LUT(img, contrast_lut(img, factor))


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return img
    gray = cv2.cvtColor(cv2.cvtColor(img, _GRAY), cv2.COLOR_GRAY2RGB)
    return gray if factor == 0 else cv2.addWeighted(img, factor, gray, 1 - factor, 0)


def hue(img: np.ndarray, factor: float) -> np.ndarray:
    if factor == 0:
        return img
    lut = np.mod(np.arange(256, dtype=np.int16) + 180 * factor, 180).astype(np.uint8)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    h = cv2.extractChannel(hsv, 0)  # the table on H alone: half the time of a 3-channel table
    cv2.insertChannel(cv2.LUT(h, lut, dst=h), hsv, 0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
