"""fersearch predict and explain on the exported ensemble of the shared finalize run."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fersearch.cli import main
from fersearch.ensemble import load_ensemble


def _test_images(data, n):
    return sorted((data / "Image" / "aligned").glob("test_*_aligned.jpg"))[:n]


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_on_a_folder_writes_the_csv(finalized, tmp_path, capsys):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    images = _test_images(finalized.data, 5)
    for p in images:
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    out_csv = tmp_path / "pred.csv"
    ens_dir = finalized.out / "ensemble"
    assert main(["predict", "--model", str(ens_dir), str(tmp_path / "photos"), "--csv", str(out_csv)]) == 0
    rows = _read_csv(out_csv)
    names = load_ensemble(ens_dir).class_names
    assert [r["source"] for r in rows] == sorted(
        str(p) for p in (*[folder / p.name for p in images], folder / "broken.jpg")
    )
    broken = [r for r in rows if r["source"].endswith("broken.jpg")]
    assert len(broken) == 1 and "unreadable" in broken[0]["error"] and broken[0]["top1"] == ""
    good = [r for r in rows if not r["error"]]
    assert len(good) == 5
    # the CSV carries exactly what the ensemble predicts for those files
    ens = load_ensemble(ens_dir)
    expect = ens.predict_pil([Image.open(folder / p.name).convert("RGB") for p in images])
    for r, e in zip(sorted(good, key=lambda r: r["source"]), expect):
        probs = np.array([float(r[f"p_{c}"]) for c in names])
        np.testing.assert_allclose(probs, e, atol=1e-5)
        assert r["top1"] == names[int(e.argmax())] and float(r["top1_prob"]) == pytest.approx(
            e.max(), abs=1e-5
        )
        assert float(r["top1_prob"]) >= float(r["top2_prob"]) >= float(r["top3_prob"])
    assert "predicted 5 row(s)" in capsys.readouterr().err


def test_predict_video_per_frame_and_smoothed(finalized, tmp_path):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 48))
    assert writer.isOpened()
    for p in _test_images(finalized.data, 6):
        writer.write(np.asarray(Image.open(p).convert("RGB").resize((48, 48)))[:, :, ::-1].copy())
    writer.release()
    out_csv = tmp_path / "video.csv"
    rc = main(
        [
            "predict",
            "--model",
            str(finalized.out / "ensemble"),
            str(video),
            "--csv",
            str(out_csv),
            "--smooth",
            "0.5",
        ]
    )
    assert rc == 0
    rows = _read_csv(out_csv)
    assert [int(r["frame"]) for r in rows] == list(range(6))
    assert [float(r["time_s"]) for r in rows] == pytest.approx([i / 10 for i in range(6)], abs=1e-3)
    names = load_ensemble(finalized.out / "ensemble").class_names
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    ema = probs[0].copy()
    for i in range(1, 6):
        ema = 0.5 * probs[i] + 0.5 * ema
    assert rows[-1]["smoothed_top1"] == names[int(ema.argmax())]
    assert float(rows[-1]["smoothed_top1_prob"]) == pytest.approx(ema.max(), abs=1e-5)
    assert rows[0]["smoothed_top1"] == rows[0]["top1"]  # the first frame has no history


def test_predict_bad_inputs_are_clear_errors(finalized, tmp_path, capsys):
    ens = str(finalized.out / "ensemble")
    cases = [
        (["predict", "--model", ens, str(tmp_path / "nope.jpg")], "does not exist"),
        (
            ["predict", "--model", str(tmp_path), str(_test_images(finalized.data, 1)[0])],
            "manifest.json is missing",
        ),
        (["predict", "--model", ens], "or --webcam"),
        (["predict", "--model", ens, str(tmp_path)], "no images or videos found"),
    ]
    (tmp_path / "readme.md").write_text("x")
    cases.append((["predict", "--model", ens, str(tmp_path / "readme.md")], "neither an image nor a video"))
    for args, msg in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err


def test_webcam_without_a_camera_is_a_clear_error(finalized, capsys):

    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera device; the no-camera message cannot be checked")
    assert main(["predict", "--model", str(finalized.out / "ensemble"), "--webcam", "--max-frames", "1"]) == 2
    err = capsys.readouterr().err
    assert "--webcam: no camera found" in err and "video file" in err


BIG_FACE = (380, 120, 160)  # x, y, side of the pasted 160 px face
SMALL_FACE = (60, 40, 96)


def _photo_with_two_faces():
    """A 640x400 "photo": a smooth backdrop with two synthetic faces pasted in, a 160 px and a
    96 px one, drawn at seeds on which OpenCV's frontal-face cascade fires; and the bare backdrop."""
    from fersearch.data.synthetic import render_face

    backdrop = np.empty((400, 640, 3), np.uint8)
    backdrop[:] = np.linspace(150, 230, 640).astype(np.uint8)[None, :, None]
    photo = backdrop.copy()
    for (x, y, side), (label, seed) in zip((BIG_FACE, SMALL_FACE), ((6, 1), (2, 1))):
        face, *_ = render_face(label, side, np.random.default_rng(seed))
        photo[y : y + side, x : x + side] = face
    return photo, backdrop


def _overlap(a, b):
    """Fraction of square b = (x, y, side) covered by box a = (x, y, w, h)."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[2]) - max(a[1], b[1]))
    return w * h / b[2] ** 2


def test_detect_faces_crops_the_largest_face_and_says_when_there_is_none(finalized, tmp_path, capsys):
    import cv2

    from fersearch.predict import FaceCropper

    photo, backdrop = _photo_with_two_faces()
    Image.fromarray(photo).save(tmp_path / "two_faces.png")
    Image.fromarray(backdrop).save(tmp_path / "no_face.png")
    ens_dir = finalized.out / "ensemble"
    out_csv = tmp_path / "f.csv"
    args = ["predict", "--model", str(ens_dir), str(tmp_path), "--detect-faces", "--csv", str(out_csv)]
    assert main(args) == 0
    err = capsys.readouterr().err
    rows = {Path(r["source"]).name: r for r in _read_csv(out_csv)}
    ens = load_ensemble(ens_dir)
    names = ens.class_names

    def probs(row):
        return np.array([float(row[f"p_{c}"]) for c in names])

    # The detection is the larger face, not the smaller one or the backdrop.
    two = rows["two_faces.png"]
    box = tuple(int(two[k]) for k in ("face_x", "face_y", "face_w", "face_h"))
    x, y, side = BIG_FACE
    assert x <= box[0] and box[0] + box[2] <= x + side and y <= box[1] and box[1] + box[3] <= y + side, box
    assert box[2] >= side // 2, box
    # The ensemble was given the crop around that face: find the crop's place in the photo
    # (it is an exact sub-image) and check what it covers.
    crop, crop_box = FaceCropper().crop(Image.fromarray(photo))
    assert crop_box == box
    crop_arr = np.asarray(crop)
    hit = cv2.matchTemplate(photo, crop_arr, cv2.TM_SQDIFF)
    best, _, (cx, cy), _ = cv2.minMaxLoc(hit)
    assert best == 0
    where = (cx, cy, crop_arr.shape[1], crop_arr.shape[0])
    assert _overlap(where, BIG_FACE) > 0.9 and _overlap(where, SMALL_FACE) == 0, where
    np.testing.assert_allclose(probs(two), ens.predict_pil([crop])[0], atol=1e-5)
    whole = ens.predict_pil([Image.fromarray(photo)])[0]
    assert np.abs(probs(two) - whole).max() > 1e-4, "the crop made no difference: was it used?"

    # No face: the whole image is predicted, the face columns stay empty, and stderr says so.
    none = rows["no_face.png"]
    assert [none[k] for k in ("face_x", "face_y", "face_w", "face_h")] == ["", "", "", ""]
    assert none["error"] == "" and none["top1"] in names
    np.testing.assert_allclose(probs(none), ens.predict_pil([Image.fromarray(backdrop)])[0], atol=1e-5)
    assert "--detect-faces: no face found in 1 of 2 row(s)" in err and "no_face.png" in err, err
    assert "two_faces.png" not in err.split("no face found")[1]
    assert FaceCropper().crop(Image.fromarray(backdrop))[1] is None


def test_explain_writes_gradcam_overlays_per_member(finalized, tmp_path):
    import torch

    from fersearch.explain import gradcam

    ens = load_ensemble(finalized.out / "ensemble")
    image = _test_images(finalized.data, 1)[0]
    out = tmp_path / "cam"
    assert main(["explain", "--model", str(finalized.out / "ensemble"), str(image), "--out", str(out)]) == 0
    members = sorted(out.glob("*_member*.png"))
    assert len(members) == len(ens.models)
    panel = Image.open(out / f"{image.stem}_gradcam.png")
    assert panel.size == (224 * (len(ens.models) + 1), 246)
    # Grad-CAM's forward path is the model's own: same logits as model(x)
    model = ens.models[0]
    arr = np.asarray(Image.open(image).convert("RGB").resize((32, 32), Image.BILINEAR))
    cam, probs = gradcam(model, arr, target=0)
    assert cam.shape == (32, 32) and 0 <= cam.min() and cam.max() <= 1
    from fersearch.runtime import to_input

    with torch.no_grad():
        x = to_input(torch.from_numpy(arr[None].copy()), model.preprocess["mean"], model.preprocess["std"])
        ref = torch.softmax(model(x)["logits"][0], -1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_gradcam_matches_a_hook_based_reference():
    """The CAM equals Grad-CAM computed independently: a forward hook on the last stage of the
    model's own forward pass, autograd for the gradient, the published formula."""
    import torch
    import torch.nn.functional as F

    from fersearch.config import build_config
    from fersearch.explain import gradcam
    from fersearch.models import create_model
    from fersearch.runtime import to_input

    torch.manual_seed(0)
    config = build_config({"data": {"root": "."}, "backbone": "test_resnet", "image_size": 96})
    model = create_model(config, 3).eval()
    img = np.random.default_rng(0).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    x = to_input(torch.from_numpy(img[None].copy()), model.preprocess["mean"], model.preprocess["std"])
    positive = 0
    for target in range(3):
        cam, _ = gradcam(model, img, target=target)
        saved = {}
        handle = model.backbone.model.layer4.register_forward_hook(lambda m, i, o: saved.setdefault("a", o))
        logit = model(x)["logits"][0, target]
        handle.remove()
        acts = saved["a"]  # (1, C, 3, 3): the map the model pools
        (grad,) = torch.autograd.grad(logit, acts)
        ref = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))
        ref = F.interpolate(ref, size=(96, 96), mode="bilinear", align_corners=False)[0, 0].detach()
        assert acts.shape[-1] == 3
        if ref.max() > 0:
            positive += 1
            np.testing.assert_allclose(cam, (ref / ref.max()).numpy(), atol=1e-5)
        else:
            assert not cam.any()
    assert positive > 0, "no target had a positive map: the comparison above checked nothing"


def test_hostile_images_cost_only_their_own_row(finalized, tmp_path):
    """A decompression bomb gets an error row and the batch around it is still predicted; a
    16-bit PNG is read as the 8-bit image it encodes, not as all white."""
    import zlib

    folder = tmp_path / "photos"
    folder.mkdir()
    src = _test_images(finalized.data, 1)[0]
    shutil.copy(src, folder / "a_good.jpg")
    rgb = np.asarray(Image.open(src).convert("L"))
    Image.fromarray(rgb.astype(np.uint16) * 257).save(folder / "b_sixteen_bit.png")  # mode I;16
    Image.fromarray(rgb).convert("RGB").save(folder / "c_eight_bit.png")
    # 40000 x 40000 declared in a few dozen bytes: PIL refuses it as a decompression bomb
    ihdr = b"IHDR" + (40000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    chunk = len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    (folder / "d_bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    out_csv = tmp_path / "pred.csv"
    ens_dir = finalized.out / "ensemble"
    assert main(["predict", "--model", str(ens_dir), str(folder), "--csv", str(out_csv)]) == 0
    rows = {Path(r["source"]).name: r for r in _read_csv(out_csv)}
    assert set(rows) == {"a_good.jpg", "b_sixteen_bit.png", "c_eight_bit.png", "d_bomb.png"}
    assert rows["d_bomb.png"]["error"] and "unreadable" in rows["d_bomb.png"]["error"]
    assert not rows["a_good.jpg"]["error"] and not rows["b_sixteen_bit.png"]["error"]
    names = load_ensemble(ens_dir).class_names
    sixteen = [float(rows["b_sixteen_bit.png"][f"p_{n}"]) for n in names]
    eight = [float(rows["c_eight_bit.png"][f"p_{n}"]) for n in names]
    assert sixteen == pytest.approx(eight, abs=1e-4)
