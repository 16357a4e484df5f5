"""evaluate's report: report.json, report.md and a self-contained report.html with the figures
finalize gives its test split (UAR, WAR, macro F1 with bootstrap intervals, per-class table,
confusion matrix, most-confused pairs), built from finalize's report pieces (report.py), plus
what only a cross-dataset run needs: the class table (model, canonical and data names) and the
classes reported apart. Every figure's caveat is a sentence in ``notes``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from markupsafe import Markup

from ..data.manifest import Manifest
from ..data.vocabulary import components
from ..ensemble import Ensemble
from ..plots import confusion_png, per_class_png
from ..version import code_version
from .class_map import ClassMap
from .report import _e, _f, _img, _table, _template, _test_tables


def build_evaluation_report(
    ens: Ensemble,
    model_dir: Path,
    manifest: Manifest,
    split: str,
    cmap: ClassMap,
    scores: dict,
    options: dict,
    skipped: list[str],
) -> dict:
    members = ens.manifest["members"]
    study_data = members[0]["config"].get("data", {})
    same_data = _same_path(study_data.get("root"), manifest.root)
    return {
        "kind": "evaluation",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "code_version": code_version(),
        "model": {
            "dir": str(model_dir),
            "class_names": ens.class_names,
            "canonical_names": ens.canonical_names,
            "trained_on": ens.manifest.get("trained_on"),
            "study_data": study_data.get("root"),
            "tta": ens.view_set,
            "backend": ens.backend,
            "members": [
                {"id": m.get("id", m["file"]), "weight": m["weight"], "backbone": m["config"].get("backbone")}
                for m in members
            ],
        },
        "dataset": {
            "root": str(manifest.root),
            "format": manifest.format,
            "class_names": list(manifest.class_names),
            "canonical_names": list(manifest.canonical_names),
            "counts": {s: manifest.counts(s) for s in ("train", "val", "test") if s in manifest.splits},
            "same_as_training": same_data,
        },
        "split": split,
        "held_out": split == "test",
        "options": options,
        "class_names": cmap.model_names,  # rows and columns of the confusion matrix
        "class_map": cmap.rows(),
        split: scores,
        "baselines": {"chance_uar": 1.0 / len(cmap.scored)},  # any constant answer, over the scored classes
        "skipped": {"n": len(skipped), "first": skipped[:10]},
        "notes": notes(split, cmap, scores, options, same_data, len(skipped)),
    }


def _same_path(a, b) -> bool:
    try:
        return a is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def notes(split: str, cmap: ClassMap, s: dict, options: dict, same_data: bool, skipped: int) -> list[str]:
    out = []
    if split != "test":
        out.append(
            f"Not a held-out figure: this is the {split} split. Finalize trains members on train and "
            f"chooses their epochs, TTA, weights and calibration on validation; only a test split is "
            f"held out." + (" This is the dataset the ensemble was trained on." if same_data else "")
        )
    elif same_data:
        out.append("The test split of the dataset the ensemble was trained on: finalize's test figures.")
    for name, u in s["unknown_classes"].items():
        out.append(
            f"{name} ({u['n']} images) is not a class of the model: reported apart and left out of UAR, "
            f"WAR, macro F1 and the confusion matrix."
            + (_compound_hint(name, cmap) if not options["compound_to_basic"] else "")
        )
    for name, n in s["model_classes_not_in_data"].items():
        if options["restrict_to_data"]:
            out.append(
                f"{name} is a class of the model that the data lacks; with --restrict-to-data the model "
                f"chose among the data's classes only, so it predicted no image as {name}."
            )
        else:
            out.append(
                f"{name} is a class of the model that the data lacks: left out of the per-class table; "
                f"{n} image(s) predicted as {name} count as errors (--restrict-to-data makes the model "
                f"choose among the data's classes only)."
            )
    if options["restrict_to_data"] and not s["model_classes_not_in_data"]:
        out.append("--restrict-to-data changed nothing: the data has every class of the model.")
    if cmap.compound:
        names = ", ".join(s["compound"])
        out.append(
            f"Compound classes ({names}) were scored by their two basic components (--compound-to-basic): "
            f"a prediction of either counts as correct. They count in UAR and WAR, not in macro F1 or "
            f"the confusion matrix."
        )
    elif options["compound_to_basic"]:
        out.append(
            "--compound-to-basic changed nothing: no compound class of the data could be scored by "
            "its components."
        )
    if skipped:
        out.append(
            f"{skipped} image(s) could not be read and were skipped (`fersearch data inspect` lists them)."
        )
    return out


def _compound_hint(name: str, cmap: ClassMap) -> str:
    parts = components(name)
    if parts and all(p in cmap.model_canonical for p in parts):
        return f" As a blend of {parts[0]} and {parts[1]} it can be scored by them: pass --compound-to-basic."
    return ""


def write_evaluation_report(out: Path, report: dict) -> dict[str, Path]:
    split = report["split"]
    s = report[split]
    paths = {
        "json": out / "report.json",
        "md": out / "report.md",
        "html": out / "report.html",
        "per_class_png": out / "per_class.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2))
    figures = {}
    if s["per_class"]:  # compound classes alone fill no confusion matrix of the model's classes
        paths["png"] = out / "confusion_matrix.png"
        paths["png"].write_bytes(confusion_png(s["confusion_matrix"], report["class_names"], split=split))
        figures["confusion"] = paths["png"].read_bytes()
    # compound classes scored by their components have a recall only; the figure shows it too
    compound = {
        n: {"precision": None, "recall": c["recall"], "f1": None} for n, c in s.get("compound", {}).items()
    }
    paths["per_class_png"].write_bytes(per_class_png({**s["per_class"], **compound}, split=split))
    figures["per_class"] = paths["per_class_png"].read_bytes()
    paths["md"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report, figures))
    return paths


# ----------------------------------------------------------------------------- markdown


def _ci(s: dict, metric: str) -> str:
    iv = s["bootstrap"]["intervals"].get(metric)
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else ""


def _title(r: dict) -> str:
    d = r["dataset"]
    return f"fersearch evaluation: {r['model']['dir']} on {d['format']} data {d['root']} ({r['split']} split)"


def _class_rows(r: dict) -> list[list[str]]:
    return [
        [c["canonical"], c["model"] or "(not a model class)", c["data"] or "(not in the data)"]
        for c in r["class_map"]
    ]


def _counts(predicted: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in predicted.items()) or "-"


def _compound_rows(s: dict) -> list[list[str]]:
    return [
        [name, " or ".join(c["scored_as"]), _f(c["recall"], 3), str(c["support"]), _counts(c["predicted_as"])]
        for name, c in s.get("compound", {}).items()
    ]


def _unknown_rows(s: dict) -> list[list[str]]:
    return [[name, str(u["n"]), _counts(u["predicted_as"])] for name, u in s["unknown_classes"].items()]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _headline_md(r: dict, split: str, s: dict) -> list[str]:
    chance = r["baselines"]["chance_uar"]
    rows = [
        [
            f"**{split}** ({s['n']} images)",
            *(f"**{_f(s[k])}** {_ci(s, k)}" for k in ("uar", "war", "macro_f1")),
        ],
        [f"no learning: chance UAR 1/{round(1 / chance)}", f"{chance:.4f}", "", ""],
    ]
    return [
        *_md_table(["split", "UAR", "WAR", "macro F1"], rows),
        "",
        f"95% intervals: percentile bootstrap over {split} images ({s['bootstrap']['n_boot']} resamples).",
        "",
    ]


def _model_classes_md(r: dict, split: str, s: dict) -> list[str]:
    """Per-class table and confusion matrix of the data classes that are model classes."""
    if not s["per_class"]:
        return []
    names = r["class_names"]
    per_class = [
        [n, *(_f(pc[k], 3) for k in ("precision", "recall", "f1")), str(int(pc["support"]))]
        for n, pc in s["per_class"].items()
    ]
    matrix = [[n, *map(str, row)] for n, row in zip(names, s["confusion_matrix"])]
    confused = "; ".join(
        f"{p['true']} -> {p['predicted']} {p['count']} ({p['share_of_true']:.0%})" for p in s["most_confused"]
    )
    return [
        f"## Per class ({split})",
        "",
        *_md_table(["class", "precision", "recall", "F1", "support"], per_class),
        "",
        f"## Confusion matrix ({split}; rows = true class, columns = predicted)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        *_md_table(["true \\ pred", *names], matrix),
        "",
        f"Most confused ({split}): {confused or 'none'}",
        "",
    ]


def _apart_md(s: dict) -> list[str]:
    lines = []
    if s.get("compound"):
        lines += ["## Compound classes, scored by their components", ""]
        header = ["class", "correct when predicted", "recall", "support", "predicted as"]
        lines += [*_md_table(header, _compound_rows(s)), ""]
    if s["unknown_classes"]:
        lines += ["## Classes the model does not know (left out of every figure)", ""]
        lines += [*_md_table(["class", "images", "predicted as"], _unknown_rows(s)), ""]
    return lines


def render_markdown(r: dict) -> str:
    split, s, m = r["split"], r[r["split"]], r["model"]
    members = [[str(x["id"]), str(x["backbone"]), f"{x['weight']:.3f}"] for x in m["members"]]
    return "\n".join(
        [
            f"# {_title(r)}",
            "",
            *(f"- {n}" for n in r["notes"]),
            "",
            *_headline_md(r, split, s),
            "## Classes, matched by canonical name",
            "",
            *_md_table(["canonical", "model", "data"], _class_rows(r)),
            "",
            *_model_classes_md(r, split, s),
            *_apart_md(s),
            "## The ensemble",
            "",
            f"`{m['dir']}`: TTA {m['tta']}, {m['backend']} backend, trained on {m['trained_on']} of "
            f"`{m['study_data']}`.",
            "",
            *_md_table(["member", "backbone", "weight"], members),
            "",
            f"Code version {r['code_version']}; see report.html.",
            "",
        ]
    )


# ----------------------------------------------------------------------------- html


def _escaped_table(header: list[str], rows: list[list[str]]) -> Markup:
    return _table(header, [[_e(c) for c in row] for row in rows]) if rows else Markup("")


def render_html(r: dict, figures: dict[str, bytes]) -> str:
    split, s = r["split"], r[r["split"]]
    b = r["baselines"]["chance_uar"]
    cards = [
        {"key": k, "label": label, "value": _f(s[k]), "ci": _ci(s, k), "baseline": base}
        for k, label, base in (
            ("uar", "UAR", f"chance {b:.4f} (1/{round(1 / b)} classes)"),
            ("war", "WAR", ""),
            ("macro_f1", "macro F1", ""),
        )
    ]
    per_class, confused = _test_tables(s)
    members = [[str(x["id"]), str(x["backbone"]), f"{x['weight']:.3f}"] for x in r["model"]["members"]]
    tables = {
        "classes": _escaped_table(["canonical", "model", "data"], _class_rows(r)),
        "per_class": per_class,
        "confused": confused,
        "compound": _escaped_table(
            ["class", "correct when predicted", "recall", "support", "predicted as"], _compound_rows(s)
        ),
        "unknown": _escaped_table(["class", "images", "predicted as"], _unknown_rows(s)),
        "members": _escaped_table(["member", "backbone", "weight"], members),
    }
    images = {
        "per_class": _img(figures["per_class"], f"per-class precision, recall and F1 ({split})"),
        "confusion": _img(figures["confusion"], f"{split} confusion matrix, counts and normalised")
        if "confusion" in figures
        else None,
    }
    return _template("evaluate.html").render(
        r=r, s=s, split=split, title=_title(r), cards=cards, tables=tables, images=images
    )
