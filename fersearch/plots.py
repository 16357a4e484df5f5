"""Figures as PNG bytes, for finalize's report and the dashboard's trial artifacts."""

from __future__ import annotations

import io

import numpy as np


def _plt():
    import matplotlib  # late: a second of start-up that only figure-writing commands need

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    return buf.getvalue()


def confusion_png(cm: list[list[int]], class_names: list[str], split: str = "test") -> bytes:
    """Two panels: counts, and rows normalised to the share of each true class."""
    plt = _plt()
    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    side = 1.6 + 0.65 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.0, side))
    for ax, data, title, fmt in (
        (axes[0], cm_arr, "counts", lambda i, j: f"{int(cm_arr[i, j])}"),
        (axes[1], norm, "normalised by true class (recall)", lambda i, j: f"{norm[i, j]:.0%}"),
    ):
        vmax = max(data.max(), 1e-9)
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{split} confusion matrix: {title}", fontsize=9)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j, i, fmt(i, j), ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] > 0.5 * vmax else "black",
                )  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _png(fig)


def search_png(search: dict, chance: float | None) -> bytes:
    """Each finished trial's validation UAR (pruned: its last epoch) and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    rows = search["trials"]
    for state, marker, color in (("complete", "o", "#1f6feb"), ("pruned", "x", "#b42318")):
        pts = [(t["trial"], t["val_uar"] if t["val_uar"] is not None else t["last_val_uar"]) for t in rows]
        pts = [(x, y) for (x, y), t in zip(pts, rows) if t["state"] == state and y is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=state, zorder=3)
    best = [(t["trial"], t["best_so_far"]) for t in rows if t["best_so_far"] is not None]
    if best:
        ax.step(*zip(*best), where="post", color="#1a7f37", label="best so far")
    if chance is not None:
        ax.axhline(chance, color="#888", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation UAR")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def per_class_png(per_class: dict, split: str = "test") -> bytes:
    plt = _plt()
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names), 3.4))
    for off, key, color in (
        (-0.27, "precision", "#4c72b0"),
        (0.0, "recall", "#dd8452"),
        (0.27, "f1", "#55a868"),
    ):
        vals = [per_class[n][key] if per_class[n][key] is not None else 0.0 for n in names]
        ax.bar(x + off, vals, width=0.27, label=key, color=color)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"{split} score")
    ax.set_title(f"per-class precision, recall and F1 ({split})", fontsize=9)
    ax.legend(ncols=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def recall_png(recall: list[float], class_names: list[str]) -> bytes:
    """One trial's per-class validation recall, with their mean (UAR) as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(class_names), 3.2))
    values = np.nan_to_num(np.asarray(recall, dtype=float))
    ax.bar(range(len(class_names)), values, color="#3b7dd8")
    ax.axhline(float(np.mean(values)), color="black", linestyle="--", linewidth=1, label="UAR")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("validation recall")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _png(fig)


def budget_png(budget: dict) -> bytes:
    """finalize under a deployment budget: every candidate (view set x greedy member prefix) by
    its estimated latency and validation UAR, the chosen one ringed, the budget as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    points = budget["candidates"]
    for view_set in dict.fromkeys(c["view_set"] for c in points):
        mine = [c for c in points if c["view_set"] == view_set]
        ax.plot([c["latency_ms"] for c in mine], [c["val_uar"] for c in mine], "o-", label=f"TTA {view_set}")
    chosen = next(c for c in points if c["chosen"])
    ax.scatter([chosen["latency_ms"]], [chosen["val_uar"]], s=180, facecolors="none", edgecolors="#b42318",
               linewidths=2, label="chosen", zorder=4)  # fmt: skip
    if budget["budget"]["max_latency_ms"] is not None:
        ax.axvline(
            budget["budget"]["max_latency_ms"], color="#888", linestyle="--", linewidth=1, label="budget"
        )
    ax.set_xlabel(f"estimated ms per image ({budget['budget']['threads']} CPU thread(s), batch 1)")
    ax.set_ylabel("validation UAR")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)
