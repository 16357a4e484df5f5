"""`fersearch evaluate`: an exported ensemble on any dataset in any supported layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import FormatOpt, ThreadsOpt, app, check_output_dir, err, lit


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="The ensemble directory finalize exported.")],
    data: Annotated[Path, typer.Option(help="Dataset directory in any supported layout.")],
    out: Annotated[Path, typer.Option(help="Directory for report.json, report.md and report.html.")],
    format: FormatOpt = "auto",
    split: Annotated[
        str, typer.Option(help="test (held out); train or val are reported as not held out.")
    ] = "test",
    restrict_to_data: Annotated[
        bool,
        typer.Option(
            "--restrict-to-data",
            help="The model chooses among the data's classes only: an 8-class model (with Contempt) "
            "scored as a 7-class one. Default: a prediction of a class the data lacks is an error.",
        ),
    ] = False,
    compound_to_basic: Annotated[
        bool,
        typer.Option(
            "--compound-to-basic",
            help="Score compound classes (Happily Surprised) against a basic-emotion model: a "
            "prediction of either component counts as correct. Default: reported apart.",
        ),
    ] = False,
    backend: Annotated[
        str, typer.Option(help="torch, onnxruntime, onnxruntime-int8 or auto (as predict).")
    ] = "torch",
    threads: ThreadsOpt = None,
) -> None:
    """Score an exported ensemble on a dataset's split, classes matched by canonical name; writes
    the report finalize writes for its test split. Classes the model does not know are reported
    apart and left out of UAR."""
    from ..cpu_share import CpuShare
    from ..errors import InvalidArgument
    from ..finalize.evaluate import evaluate as run_evaluate

    check_output_dir(out, "--out")
    previous = out / "report.json"
    if previous.is_file() and _kind(previous) != "evaluation":  # finalize's report lives there
        raise InvalidArgument(
            f"--out {str(out)!r} holds another command's report.json (finalize's?); "
            f"give evaluate a folder of its own"
        )
    with CpuShare(threads) as cpu:
        paths = run_evaluate(
            model,
            data,
            out,
            format=format,
            split=split,
            restrict_to_data=restrict_to_data,
            compound_to_basic=compound_to_basic,
            backend=backend,
            threads=cpu.threads,
            console=err,
        )
    r = json.loads(paths["json"].read_text())
    s = r[split]
    f1 = "n/a" if s["macro_f1"] is None else f"{s['macro_f1']:.4f}"
    held = "" if r["held_out"] else " (not held out)"
    err.print(f"{split}{held}: UAR {s['uar']:.4f}, WAR {s['war']:.4f}, macro F1 {f1} over {s['n']} images")
    for name, u in s["unknown_classes"].items():
        err.print(f"{lit(name)}: {u['n']} images of a class the model does not know, reported apart")
    err.print(f"report: {lit(paths['html'])}")


def _kind(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
