"""`fersearch explain`: Grad-CAM overlays of every ensemble member on one image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import app, check_output_dir, err, lit


@app.command()
def explain(
    model: Annotated[Path, typer.Option("--model", help="The ensemble directory finalize exported.")],
    image: Annotated[Path, typer.Argument(help="An image file.")],
    out: Annotated[Path, typer.Option(help="Directory for the overlays.")] = Path("gradcam"),
    target: Annotated[
        str | None, typer.Option(help="Class to explain (default: the ensemble's prediction).")
    ] = None,
    detect_faces: Annotated[
        bool, typer.Option("--detect-faces", help="Crop the largest face first.")
    ] = False,
) -> None:
    """Where each member looks: Grad-CAM for the predicted (or given) class, one PNG per member."""
    from ..data.imageio import Unreadable, open_image
    from ..ensemble import load_ensemble
    from ..errors import DataError
    from ..explain import explain as run_explain
    from ..predict import MAX_SIDE, FaceCropper

    check_output_dir(out, "--out")
    ens = load_ensemble(model)
    try:
        pil = open_image(image, max_side=MAX_SIDE)
    except Unreadable as exc:
        raise DataError(f"cannot read image {str(image)!r}: {exc}") from None
    if detect_faces:
        pil, box = FaceCropper().crop(pil)
        err.print(f"face: {box}" if box else "no face found: explaining the whole image")
    result = run_explain(ens, pil, out, image.stem, target)
    err.print(f"{lit(result['target'])} ({result['ensemble_prob']:.2f}); overlays: {lit(result['panel'])}")
