"""The ``basic`` pipeline's batch path (data/fast_basic.py) against albumentations, its definition:
the same output for the same sampled parameters, the same parameter distributions, one draw for
every view of a packed sample, repeatable under a seed, whatever the loader's workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersearch.data.augment import augment_packed, batch_augmenter, build_pipeline
from fersearch.data.fast_basic import (
    FastBasic,
    affine_matrices,
    brightness,
    contrast,
    hue,
    saturation,
    supports,
)
from fersearch.data.loader import TrainLoader
from fersearch.data.views import split_views


def faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth images with edges and saturated areas (a face-like mix, not only noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = rng.uniform(0, 255, 3) * (0.5 + 0.5 * np.sin(6 * xx[..., None] + rng.uniform(0, 6, 3)))
        img = (
            base
            + 60 * (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.1)[..., None]
            + rng.normal(0, 12, (size, size, 3))
        )
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    out[-1] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # and plain noise
    return np.stack(out)


def test_colour_parts_equal_albumentations():
    import albumentations.augmentations.pixel.functional as fpixel

    rng = np.random.default_rng(0)
    for size in (17, 32, 112):
        for img in faces(4, size, seed=size):
            for f in [0.0, 1.0, *rng.uniform(0.5, 1.5, 6)]:
                assert np.array_equal(brightness(img, f), fpixel.adjust_brightness_torchvision(img, f))
                assert np.array_equal(contrast(img, f), fpixel.adjust_contrast_torchvision(img, f))
                assert np.array_equal(saturation(img, f), fpixel.adjust_saturation_torchvision(img, f))
            for f in [0.0, 0.5, -0.5, *rng.uniform(-0.2, 0.2, 6)]:
                assert np.array_equal(hue(img, f), fpixel.adjust_hue_torchvision(img.copy(), f))


@pytest.mark.parametrize("strength", [0.0, 0.4, 1.0, 3.0])
@pytest.mark.parametrize("views", [1, 3])
def test_same_params_give_albumentations_output(strength, views):
    """Sample by sample, the batch path equals albumentations' transforms applied one after the
    other with the parameters it drew, byte for byte; every view gets the same transform."""
    import albumentations.augmentations.geometric.functional as fgeometric

    size = 40
    pipe = build_pipeline("basic", size, strength, views=views)
    assert supports(pipe)
    fast = FastBasic(pipe)
    by_name = {type(t).__name__: t for t in pipe.transforms}
    images = faces(48, size)
    packed = np.concatenate([images, images[::-1], np.roll(images, 1, axis=0)][:views], axis=-1)
    d = fast.draw(np.random.default_rng(7), len(packed), size, size)
    fired = {"flip": d.flip.sum(), "affine": d.affine.sum(), "jitter": d.jitter.sum()}
    if strength == 0:
        assert fired["affine"] == fired["jitter"] == 0 and 0 < fired["flip"] < len(packed)
    else:
        assert all(0 < v for v in fired.values())
    for i, sample in enumerate(packed):
        got = split_views(fast.apply_params(sample, d, i))
        for view, out in zip(split_views(sample), got):
            ref = view.copy()
            if d.flip[i]:
                ref = by_name["HorizontalFlip"].apply(ref)
            if d.affine[i]:
                ref = by_name["Affine"].apply(ref, matrix=d.matrix[i], output_shape=(size, size))
            if d.jitter[i]:
                b, c, s, h = d.factors[i]
                ref = by_name["ColorJitter"].apply(ref, b, c, s, h, order=list(d.order[i]))
            assert np.array_equal(out, ref), f"sample {i}"
    # the matrices are albumentations' own composition of the drawn translate/scale/rotate/shear
    rng = np.random.default_rng(int(10 * strength))
    for tx, ty, sx, sy, rot, shx, shy in zip(
        rng.integers(-4, 5, 6),
        rng.integers(-4, 5, 6),
        *rng.uniform(0.9, 1.1, (2, 6)),
        *rng.uniform(-30, 30, (3, 6)),
    ):
        params = (np.array([float(v)]) for v in (tx, ty, sx, sy, rot, shx, shy))
        ours = affine_matrices(*params, size, size)[0]
        theirs = fgeometric.create_affine_transformation_matrix(
            {"x": int(tx), "y": int(ty)},
            {"x": shx, "y": shy},
            {"x": sx, "y": sy},
            rot,
            fgeometric.center((size, size)),
        )
        assert np.allclose(ours, theirs, rtol=0, atol=1e-12)


def ks_distance(a, b) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    return float(
        np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()
    )


@pytest.mark.parametrize("strength", [1.0, 2.5])
def test_draws_follow_albumentations_distributions(strength):
    """Probabilities, ranges, whole-pixel translation and the order of the jitter parts: the
    batch path's draws against albumentations' own (its save_applied_params record)."""
    import albumentations as A

    size, n = 64, 3000
    pipe = build_pipeline("basic", size, strength)
    record = A.Compose(pipe.transforms, seed=1, save_applied_params=True)
    img = np.zeros((size, size, 3), np.uint8)
    theirs: dict[str, list] = {k: [] for k in ("flip", "affine", "jitter", "tx", "ty", "sx", "sy", "rot")}
    theirs.update({k: [] for k in ("b", "c", "s", "h", "order")})
    cx = cy = size / 2 - 0.5
    for _ in range(n):
        applied = dict(record(image=img)["applied_transforms"])
        theirs["flip"].append("HorizontalFlip" in applied)
        theirs["affine"].append("Affine" in applied)
        theirs["jitter"].append("ColorJitter" in applied)
        if "Affine" in applied:
            p = applied["Affine"]
            m = p["matrix"]
            theirs["tx"].append(m[0, 2] - cx + m[0, 0] * cx + m[0, 1] * cy)
            theirs["ty"].append(m[1, 2] - cy + m[1, 0] * cx + m[1, 1] * cy)
            theirs["sx"].append(p["scale"]["x"])
            theirs["sy"].append(p["scale"]["y"])
            theirs["rot"].append(p["rotate"])
        if "ColorJitter" in applied:
            p = applied["ColorJitter"]
            for k, name in zip("bcsh", ("brightness", "contrast", "saturation", "hue")):
                theirs[k].append(p[name])
            theirs["order"].append("".join(map(str, p["order"])))
    d = FastBasic(pipe).draw(np.random.default_rng(1), n, size, size)
    a = d.affine
    m = d.matrix[a]
    ours = {
        "flip": d.flip, "affine": a, "jitter": d.jitter,
        "tx": m[:, 0, 2] - cx + m[:, 0, 0] * cx + m[:, 0, 1] * cy,
        "ty": m[:, 1, 2] - cy + m[:, 1, 0] * cx + m[:, 1, 1] * cy,
        "sx": np.hypot(m[:, 0, 0], m[:, 1, 0]), "sy": np.hypot(m[:, 0, 1], m[:, 1, 1]),
        "rot": np.rad2deg(np.arctan2(m[:, 0, 1], m[:, 1, 1])),  # column 1 is sy * (sin, cos)
        "b": d.factors[d.jitter, 0], "c": d.factors[d.jitter, 1],
        "s": d.factors[d.jitter, 2], "h": d.factors[d.jitter, 3],
        "order": ["".join(map(str, o)) for o in d.order[d.jitter]],
    }  # fmt: skip
    theirs["rot"] = [r if r <= 180 else r - 360 for r in theirs["rot"]]
    for k in ("flip", "affine", "jitter"):  # Bernoulli rates within 4.5 standard errors
        p = np.mean(theirs[k])
        assert abs(np.mean(ours[k]) - p) <= 4.5 * np.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-9, k
    for k in ("tx", "ty"):  # whole pixels, int() truncation towards zero as albumentations does
        assert np.allclose(ours[k], np.round(ours[k]), atol=1e-9), k
        assert set(np.round(ours[k]).astype(int)) == set(np.round(theirs[k]).astype(int)), k
    bound = 1.95 * np.sqrt(2 / (0.7 * n))  # two-sample KS at alpha 0.001, >= 0.7 n draws each
    for k in ("tx", "ty", "sx", "sy", "rot", "b", "c", "s", "h"):
        assert ks_distance(ours[k], theirs[k]) < bound, k
    aff, jit = pipe.transforms[1], pipe.transforms[2]
    ranges = {"sx": aff.scale["x"], "sy": aff.scale["y"], "rot": aff.rotate, "b": jit.brightness}
    ranges.update({"c": jit.contrast, "s": jit.saturation, "h": jit.hue})
    for k, (lo, hi) in ranges.items():  # the validated ranges, covered end to end
        tol = 1e-9 + 1e-9 * abs(hi)
        assert lo - tol <= min(ours[k]) <= lo + 0.01 * (hi - lo), k
        assert hi - 0.01 * (hi - lo) <= max(ours[k]) <= hi + tol, k
    perms = sorted(set(theirs["order"]))
    assert sorted(set(ours["order"])) == perms and len(perms) == 24
    share = np.array([[o.count(p) / len(o) for p in perms] for o in (ours["order"], theirs["order"])])
    assert np.abs(share - 1 / 24).max() < 0.02


def test_batch_augmenter_is_repeatable_and_keeps_views_together():
    images = faces(16, 24)
    aug = batch_augmenter("basic", 24, 1.0)
    assert isinstance(aug, FastBasic)
    a, b, c = aug(images.copy(), 5), aug(images.copy(), 5), aug(images.copy(), 6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (np.abs(a.astype(int) - images).reshape(16, -1).mean(1) > 0.5).sum() >= 10  # really changes
    packed = np.concatenate([images, images, images], axis=-1)
    out = batch_augmenter("basic", 24, 1.0, views=3)(packed.copy(), 5)
    assert (
        np.array_equal(out[..., 0:3], a)
        and np.array_equal(out[..., 3:6], a)
        and np.array_equal(out[..., 6:9], a)
    )
    still = batch_augmenter("basic", 24, 0.0)(images.copy(), 1)  # strength 0: flips only
    assert all(np.array_equal(s, i) or np.array_equal(s, i[:, ::-1]) for s, i in zip(still, images))


def test_strong_keeps_the_albumentations_compose():
    images = faces(4, 24)
    aug = batch_augmenter("strong", 24, 1.0, views=1)
    assert not isinstance(aug, FastBasic)
    pipe = build_pipeline("strong", 24, 1.0)
    pipe.set_random_seed(9)
    ref = np.stack([augment_packed(pipe, img) for img in images])
    assert np.array_equal(aug(images.copy(), 9), ref)


def collect(loader: TrainLoader, epoch: int):
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader.epoch(epoch)]


def test_loader_basic_batches_do_not_depend_on_the_workers():
    """The batch path is seeded per batch: the same batches in-process and in worker processes,
    an epoch abandoned half way does not change the next one."""
    images = faces(200, 24)
    labels = np.arange(200) % 7
    plain = TrainLoader(images, labels, 16, pipeline="basic", num_workers=0, seed=3)
    workers = TrainLoader(images, labels, 16, pipeline="basic", num_workers=2, seed=3)
    try:
        half = iter(workers.epoch(0))
        for _ in range(3):
            next(half)  # abandoned
        for epoch in (0, 1):
            a, b = collect(plain, epoch), collect(workers, epoch)
            assert len(a) == len(b) == 12
            for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
                assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
        x, _, idx = a[0]
        assert not torch.equal(x, torch.from_numpy(images[idx.numpy()]))  # augmented
    finally:
        workers.close()


@pytest.mark.parametrize("pipeline", ["basic", "strong"])
def test_loader_resumed_mid_epoch_repeats_the_rest_of_the_epoch(pipeline):
    images = faces(96, 16)
    loader = TrainLoader(images, np.zeros(96, np.int64), 16, pipeline=pipeline, seed=1)
    order = np.random.default_rng(2).permutation(96)
    full = [x for x, _, _ in loader.epoch(3, order)]
    rest = [x for x, _, _ in loader.epoch(3, order[2 * 16 :], first_step=2)]
    assert len(rest) == 4 and all(torch.equal(full[2 + k], x) for k, x in enumerate(rest))
    unaligned = next(iter(loader.epoch(3, order[2 * 16 :])))[0]  # seeds of steps 0, 1, ...: not the same
    assert not torch.equal(full[2], unaligned)
