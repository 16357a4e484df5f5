"""`fersearch demo`: the whole loop on a laptop in minutes, no server, built-in synthetic data.

Sized so the model visibly learns on a 2-core CPU (BENCHMARKS.md, "Demo"): 3,000 `easy`
synthetic faces at 32 px, trials of 30 epochs of the tiny timm test backbones, pruned by
Hyperband, then the top 3 retrained, ensembled and reported against chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from rich.console import Console
from rich.markup import escape

from .cpu_share import CpuShare
from .data.synthetic import generate
from .finalize import finalize
from .progress import bar
from .search.api import StudyOptions, create_or_join
from .search.storage import open_storage
from .search.study import study_names
from .search.worker import run_worker

STUDY = "demo"


def run_demo(
    out: str | Path,
    n: int = 3000,
    trials: int = 10,
    top: int = 3,
    storage: str | None = None,
    space: str = "demo",
    size: int = 32,
    difficulty: str = "easy",
    val_fraction: float = 0.2,
    console: Console | None = None,
) -> dict[str, Path]:
    console = console or Console(stderr=True)
    out = Path(out)
    data_dir = out / "data"
    # The demo keeps its study beside its data unless told otherwise, and starts it afresh.
    storage = storage or f"journal:{out / 'study.journal'}"

    params = {"n": n, "size": size, "seed": 0, "difficulty": None if difficulty == "standard" else difficulty}
    stamp = data_dir / "synthetic.json"
    if _same_synth(stamp, params):
        console.print(f"reusing synthetic data in {escape(str(data_dir))}")
    else:
        with bar("1/3 synthesising faces", console) as update:
            generate(data_dir, n=n, size=size, seed=0, preview=True, progress=update, difficulty=difficulty)
        console.print(
            f"synthetic data: {escape(str(data_dir))} (look at {escape(str(data_dir / 'preview.png'))})"
        )

    backend = open_storage(storage)
    if STUDY in study_names(backend):
        optuna.delete_study(study_name=STUDY, storage=backend)
    console.rule("2/3 search")
    # A fifth of train for validation: selection and calibration on 100 images overfit.
    options = StudyOptions(STUDY, data_dir, space, storage, trials, val_fraction=val_fraction)
    create_or_join(options, console)
    run_worker(STUDY, storage, console=console)
    console.rule("3/3 finalize")
    with CpuShare():
        paths = finalize(STUDY, top, out / "report", storage, console=console)
    _summary(paths, console)
    return paths


def _summary(paths: dict[str, Path], console: Console) -> None:
    """The three figures a user wants, each against what no learning would get."""
    report = json.loads(Path(paths["json"]).read_text())
    base, test = report["baselines"], report["test"]
    best_single = report["comparison"]["best_single"]["test"]["uar"]
    console.rule("result")
    # soft_wrap: each figure stays on one line, and the path can be copied whole
    console.print(
        f"best validation UAR of the search: [bold]{report['search']['best_val_uar']:.3f}[/] "
        f"(chance {base['chance_uar']:.3f})",
        soft_wrap=True,
    )
    console.print(
        f"test UAR of the ensemble: [bold]{test['uar']:.3f}[/] (best single member {best_single:.3f}, "
        f"chance {base['chance_uar']:.3f}); test WAR {test['war']:.3f} (always "
        f"{escape(base['majority_class'])}: {base['majority_class_war']:.3f})",
        soft_wrap=True,
    )
    console.print(f"report: {escape(str(paths['html']))}", soft_wrap=True)


def _same_synth(stamp: Path, params: dict) -> bool:
    if not stamp.is_file():
        return False
    try:
        saved = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    return all(saved.get(k) == v for k, v in params.items())
