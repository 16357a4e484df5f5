"""`fersearch predict`: an exported ensemble on images, folders, video files or a webcam."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ._common import ThreadsOpt, app, check_output_file, err, lit

ModelOpt = Annotated[Path, typer.Option("--model", help="The ensemble directory finalize exported.")]


@app.command()
def predict(
    model: ModelOpt,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Images, folders (recursive) or video files.")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the CSV here (default: stdout).")] = None,
    top: Annotated[int, typer.Option(help="Top emotions per row.")] = 3,
    detect_faces: Annotated[
        bool, typer.Option("--detect-faces", help="Crop the largest face first (OpenCV Haar cascade).")
    ] = False,
    webcam: Annotated[bool, typer.Option("--webcam", help="Predict live from a camera.")] = False,
    camera: Annotated[int, typer.Option(help="Camera index for --webcam.")] = 0,
    stride: Annotated[int, typer.Option(help="Video: predict every N-th frame.")] = 1,
    smooth: Annotated[
        float, typer.Option(help="Video/webcam: EMA weight of the newest frame (1 = no smoothing).")
    ] = 0.3,
    max_frames: Annotated[int | None, typer.Option(help="Video/webcam: stop after this many frames.")] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="torch; onnxruntime (about twice as fast on CPU; needs the onnx extra and the "
            "ensemble's ONNX files, see `fersearch export-onnx`); onnxruntime-int8 (the int8 members "
            "of `export-onnx --quantize int8`); auto: onnxruntime when it can."
        ),
    ] = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Top emotions with probabilities, one CSV row per image or video frame."""
    from ..cpu_share import CpuShare
    from ..ensemble import load_ensemble
    from ..errors import InvalidArgument
    from ..predict import collect_inputs

    if top < 1:
        raise InvalidArgument(f"--top must be at least 1 (got {top})")
    if csv is not None:
        check_output_file(csv, "--csv")
    if stride < 1:
        raise InvalidArgument(f"--stride must be at least 1 (got {stride})")
    if not 0 < smooth <= 1:  # also refuses NaN
        raise InvalidArgument(f"--smooth must be in (0, 1] (got {smooth}); 1 means no smoothing")
    if max_frames is not None and max_frames < 1:
        raise InvalidArgument(f"--max-frames must be at least 1 (got {max_frames})")
    if camera < 0:
        raise InvalidArgument(f"--camera must be a camera index, 0 or more (got {camera})")
    if not paths and not webcam:
        raise InvalidArgument("give image files, folders or video files, or --webcam")
    images, videos = collect_inputs(paths) if paths else ([], [])
    with CpuShare(threads) as cpu:
        # ONNX Runtime's session keeps the count it starts with; torch follows the share.
        ens = load_ensemble(model, backend=backend, threads=cpu.threads)
        _predict_all(ens, images, videos, csv, top, detect_faces, webcam, camera, stride, smooth, max_frames)


def _predict_all(ens, images, videos, csv, top, detect_faces, webcam, camera, stride, smooth, max_frames):
    from ..predict import FaceCropper, predict_images, predict_video, predict_webcam, top_k, write_csv

    cropper = FaceCropper() if detect_faces else None
    names = ens.class_names
    rows = predict_images(ens, images, cropper) if images else []
    for v in videos:
        rows += predict_video(ens, v, cropper, stride=stride, smooth=smooth, max_frames=max_frames)
    if webcam:

        def live(row):
            label, p = top_k(row.smoothed, names, 1)[0]
            err.print(f"frame {row.frame}: {lit(label)} {p:.2f}")

        rows += predict_webcam(ens, camera, cropper, smooth=smooth, max_frames=max_frames, on_row=live)
    write_csv(rows, names, top, csv if csv is not None else sys.stdout)
    failed = [r for r in rows if r.error]
    done = len(rows) - len(failed)
    where = f" -> {lit(csv)}" if csv is not None else ""
    err.print(
        f"predicted {done} row(s){where} ({ens.backend} backend)"
        + (f"; {len(failed)} unreadable, listed in the CSV" if failed else "")
    )
    if cropper is not None:
        faceless = [r for r in rows if not r.error and r.face is None]
        if faceless:
            shown = ", ".join(r.source if r.frame is None else f"{r.source}#{r.frame}" for r in faceless[:3])
            more = f" and {len(faceless) - 3} more" if len(faceless) > 3 else ""
            err.print(
                f"--detect-faces: no face found in {len(faceless)} of {done} row(s) ({lit(shown)}{more}): "
                f"those were predicted on the whole image and have empty face_x..face_h in the CSV"
            )
