"""The final report: report.json (every number), report.md (for people), confusion_matrix.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..metrics import summarize


def metrics_block(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    m = summarize(labels, probs.argmax(1), len(class_names))
    m["per_class"] = {
        name: {k: _num(m["per_class"][k][i]) for k in ("precision", "recall", "f1", "support")}
        for i, name in enumerate(class_names)
    }
    m["n"] = int(len(labels))
    return m


def _num(x):
    x = float(x)
    return None if np.isnan(x) else x


def write_report(out: Path, report: dict) -> dict[str, Path]:
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "confusion_matrix.png"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["md"].write_text(render_markdown(report))
    plot_confusion(report["test"]["confusion_matrix"], report["class_names"], paths["png"])
    return paths


def render_markdown(r: dict) -> str:
    t, v = r["test"], r["validation"]
    lines = [
        f"# fersearch report: study `{r['study']}`",
        "",
        f"Ensemble of {len(r['members'])} member(s), mean of softmax probabilities. "
        f"Selected and trained on train/validation only; the test split "
        f"({t['n']} images) was read once, for this report.",
        "",
        "| split | UAR | WAR | macro F1 |",
        "|---|---|---|---|",
        f"| validation | {v['uar']:.4f} | {v['war']:.4f} | {v['macro_f1']:.4f} |",
        f"| **test** | **{t['uar']:.4f}** | **{t['war']:.4f}** | **{t['macro_f1']:.4f}** |",
        "",
        "## Per class (test)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, pc in t["per_class"].items():
        cells = [f"{pc[k]:.3f}" if pc[k] is not None else "n/a" for k in ("precision", "recall", "f1")]
        lines.append(f"| {name} | {' | '.join(cells)} | {int(pc['support'])} |")
    lines += [
        "",
        "## Confusion matrix (test; rows = true class, columns = predicted)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "| true \\ pred | " + " | ".join(r["class_names"]) + " |",
        "|---|" + "---|" * len(r["class_names"]),
    ]
    for name, row in zip(r["class_names"], t["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in row) + " |")
    lines += [
        "",
        "## Members",
        "",
        "| member | trial | search val UAR | retrained val UAR | test UAR | backbone | epochs |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, m in enumerate(r["members"]):
        lines.append(
            f"| {i} | {m['trial']} | {m['search_val_uar']:.4f} | {m['val_uar']:.4f} | "
            f"{m['test_uar']:.4f} | {m['config']['backbone']} | {m['config']['epochs']} |"
        )
    lines += ["", f"Code version {r['code_version']}; ensemble exported to `{r['ensemble_dir']}`.", ""]
    return "\n".join(lines)


def plot_confusion(
    cm: list[list[int]], class_names: list[str], path: Path, title: str = "test confusion matrix"
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(class_names), 0.8 + 0.7 * len(class_names)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(
                j,
                i,
                f"{int(cm_arr[i, j])}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall share of true class")
    ax.set_title(f"{title} (counts and row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
