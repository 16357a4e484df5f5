"""fersearch predict and explain on the exported ensemble of the shared finalize run."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from fersearch.cli import main
from fersearch.finalize.export import load_ensemble


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
    from pathlib import Path

    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera device; the no-camera message cannot be checked")
    assert main(["predict", "--model", str(finalized.out / "ensemble"), "--webcam", "--max-frames", "1"]) == 2
    err = capsys.readouterr().err
    assert "--webcam: no camera found" in err and "video file" in err


def test_detect_faces_crops_the_face_or_says_what_is_missing(finalized, tmp_path, capsys):
    import cv2

    from fersearch.data.synthetic import render_face
    from fersearch.predict import FaceCropper

    canvas = np.full((400, 500, 3), 200, np.uint8)
    face, *_ = render_face(6, 160, np.random.default_rng(1))
    canvas[100:260, 200:360] = face
    photo = tmp_path / "photo.png"
    Image.fromarray(canvas).save(photo)
    args = [
        "predict",
        "--model",
        str(finalized.out / "ensemble"),
        str(photo),
        "--detect-faces",
        "--csv",
        str(tmp_path / "f.csv"),
    ]
    if not hasattr(cv2, "CascadeClassifier"):
        # OpenCV 5 dropped the Haar cascades from the main package: the error says what to install.
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Haar cascade" in err and "opencv-python-headless<5" in err
        with pytest.raises(Exception, match="Haar"):
            FaceCropper()
        return
    assert main(args) == 0
    row = _read_csv(tmp_path / "f.csv")[0]
    x, y, w, h = (int(row[k]) for k in ("face_x", "face_y", "face_w", "face_h"))
    # the detection lies on the pasted face, not the flat background
    assert 180 <= x and x + w <= 380 and 80 <= y and y + h <= 280, (x, y, w, h)


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
    from fersearch.train.augment import to_input

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
    from fersearch.train.augment import to_input

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
