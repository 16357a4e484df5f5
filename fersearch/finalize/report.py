"""The final report: report.json (every number), report.md and a self-contained report.html
(figures embedded as PNG data URIs, so the one file can be mailed or attached to a ticket)."""

from __future__ import annotations

import base64
import html
import json
import time
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from ..ensemble.probs import apply_bias, combine
from ..metrics import summarize
from ..plots import budget_png, confusion_png, per_class_png, search_png
from ..version import code_version
from .bootstrap import bootstrap
from .budget import describe_limits
from .retrain import TrainedMember
from .select import search_history
from .stages import Choices, TestResults

# Seed 001's named confusion pairs, by the usual spellings of the class names.
SEED001_PAIRS = [
    ("anger", "disgust"),
    ("anger", "neutral"),
    ("anger", "sadness"),
    ("fear", "surprise"),
    ("neutral", "sadness"),
]
_ALIASES = {
    "angry": "anger",
    "sad": "sadness",
    "happy": "happiness",
    "surprised": "surprise",
    "fearful": "fear",
}


def _onnx_latency_rows(d: dict) -> list[list[str]]:
    if not d.get("onnxruntime"):
        return []
    ms = d["onnxruntime"]["latency_ms_per_image_median"]
    ok = ms <= d["budgets"]["latency_ms_per_image"]
    return [
        [
            "latency per image, ONNX Runtime backend (median, batch 1, cpu)",
            f"<span class='{'ok' if ok else 'bad'}'>{ms:.1f} ms</span>",
            f"{d['budgets']['latency_ms_per_image']} ms",
        ]
    ]


def _canon(name: str) -> str:
    n = name.strip().lower()
    return _ALIASES.get(n, n)


def most_confused(cm, class_names: list[str], top: int = 5) -> list[dict]:
    """Directed pairs (true -> predicted) with the largest share of the true class's images."""
    cm = np.asarray(cm, dtype=np.int64)
    rows = cm.sum(axis=1)
    seed_pairs = {frozenset(p) for p in SEED001_PAIRS}
    pairs = []
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if i != j and cm[i, j] > 0:
                pairs.append(
                    {
                        "true": class_names[i],
                        "predicted": class_names[j],
                        "count": int(cm[i, j]),
                        "share_of_true": float(cm[i, j] / rows[i]),
                        "seed001_pair": frozenset((_canon(class_names[i]), _canon(class_names[j])))
                        in seed_pairs,
                    }
                )
    pairs.sort(key=lambda p: (-p["share_of_true"], -p["count"], p["true"], p["predicted"]))
    return pairs[:top]


def metrics_block(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    m = summarize(labels, probs.argmax(1), len(class_names))
    m["per_class"] = {
        name: {k: _num(m["per_class"][k][i]) for k in ("precision", "recall", "f1", "support")}
        for i, name in enumerate(class_names)
    }
    m["most_confused"] = most_confused(m["confusion_matrix"], class_names)
    m["n"] = int(len(labels))
    return m


def baselines(train_counts: list[int], test_labels: np.ndarray, class_names: list[str]) -> dict:
    """What no learning gets, to read every figure against: any constant prediction has UAR
    1/K, and always predicting train's most frequent class has that class's share of test as WAR."""
    majority = int(np.argmax(train_counts))
    labels = np.asarray(test_labels)
    return {
        "chance_uar": 1.0 / len(class_names),
        "majority_class": class_names[majority],
        "majority_class_war": float(np.mean(labels == majority)) if len(labels) else 0.0,
    }


def _num(x):
    x = float(x)
    return None if np.isnan(x) else x


def member_info(m: TrainedMember, members: list[TrainedMember], weights) -> dict:
    """What the report and the manifest say about a member (weights from its train-only run)."""
    i = next(j for j, c in enumerate(members) if c.id == m.id)
    return {
        "id": m.id,
        "trial": m.record["trial"],
        "seed": m.record["seed"],
        "stage": m.record["stage"],
        "search_val_uar": m.record["search_val_uar"],
        "val_uar": members[i].record["val_uar"],
        "best_epoch": m.record["best_epoch"],
        "weight": float(weights[i]),
        "config": m.record["config"],
    }


def comparison_rows(member_val, member_test, weights, bias, best, deployed_raw, retrain_on) -> dict:
    def both(fn):
        return fn(member_val), fn(member_test)

    rows = {}
    for name, label, fn in (
        ("best_single", "best single member (by validation UAR)", lambda p: p[best]),
        ("plain_mean", "plain mean of all members", lambda p: p.mean(0)),
        ("ensemble", "chosen ensemble weights", lambda p: combine(p, weights)),
        (
            "ensemble_calibrated",
            "chosen ensemble weights + calibration",
            lambda p: apply_bias(combine(p, weights), bias),
        ),
    ):
        v, t = both(fn)
        rows[name] = {"label": label, "val": v, "test": t}
    if retrain_on == "train+val":
        rows["deployed"] = {
            "label": "deployed: selected members refit on train+val + calibration",
            "val": None,  # val was training data for these models: no honest number exists
            "test": apply_bias(deployed_raw, bias),
        }
    return rows


def _headline(labels, probs, n_cls) -> dict:
    m = summarize(labels, probs.argmax(1), n_cls)
    return {k: m[k] for k in ("uar", "war", "macro_f1")}


def build_report(
    study_name: str,
    study,
    cfg,
    manifest,
    recipe: dict,  # the finalize options: top, seeds, retrain_on, tta_mode
    members: list[TrainedMember],
    c: Choices,
    test: TestResults,
    hygiene: str,
    cv_result: dict | None,
    deploy: dict,
    ensemble_dir: Path,
) -> dict:
    """report.json's content: what was chosen on validation and how, the test figures with
    paired bootstrap intervals against the alternatives, the members, the deployment."""
    class_names, n_cls = list(manifest.class_names), manifest.num_classes
    val_labels, retrain_on = c.val_labels, recipe["retrain_on"]
    best = int(np.argmax([m.record["val_uar"] for m in members]))  # best single model: by validation
    rows = comparison_rows(
        c.member_val, test.member_test, c.weights, c.bias, best, test.deployed_raw, retrain_on
    )
    pairs = [
        ("ensemble", "best_single"),
        ("ensemble_calibrated", "ensemble"),
        ("ensemble_calibrated", "best_single"),
        ("ensemble", "plain_mean"),
        ("deployed", "best_single"),
    ]
    cis = {}
    for split, labels in (("val", val_labels), ("test", test.labels)):
        preds = {name: r[split].argmax(1) for name, r in rows.items() if r[split] is not None}
        cis[split] = bootstrap(labels, preds, n_cls, pairs=[p for p in pairs if set(p) <= set(preds)])
    sel = c.selection
    return {
        "study": study_name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "class_names": class_names,
        "data": cfg.data.model_dump(mode="json"),
        "dataset": {
            "root": str(manifest.root),
            "format": manifest.format,
            "counts": {s: manifest.counts(s) for s in ("train", "val", "test")},
        },
        "recipe": {
            **recipe,
            "tta": c.tta,
            "selection": {
                "method": "greedy forward selection with replacement, sorted initialisation "
                "(Caruana et al. 2004), metric validation UAR (ties: NLL); kept only if weights "
                "chosen on one stratified half of validation beat the plain mean on the other",
                "used": c.decision["used"],
                "reason": c.decision["reason"],
                "crossfit_on_validation": c.decision["crossfit"],
                "weights": c.weights.tolist(),
                "counts": sel.counts,
                "init_size": sel.init_size,
                "val_uar": sel.val_uar,
                "plain_mean_val_uar": sel.plain_mean_val_uar,
                "steps": sel.steps,
            },
            "calibration": {
                "applied": c.calibration_applied,
                "bias": c.bias.tolist(),
                "fitted_bias": c.fitted_bias.tolist(),
                "crossfit_on_validation": c.crossfit,
                "rule": "offsets fitted on all of validation; applied only if offsets fitted on one "
                "stratified half raise UAR on the other (pooled over both halves)",
            },
            "best_single_member": members[best].id,
            "hygiene": hygiene,
        },
        "validation": metrics_block(val_labels, apply_bias(c.val_raw, c.bias), class_names),
        "test": metrics_block(test.labels, test.final, class_names),
        "baselines": baselines(manifest.counts("train"), test.labels, class_names),
        "search": search_history(study),
        "comparison": {
            name: {
                "label": r["label"],
                "val": _headline(val_labels, r["val"], n_cls) if r["val"] is not None else None,
                "test": _headline(test.labels, r["test"], n_cls),
            }
            for name, r in rows.items()
        },
        "bootstrap": cis,
        "va": test.va,  # valence/arousal on test (finalize/va.py); None without a VA head or labels
        "members": [
            {
                **member_info(m, members, c.weights),
                "selected": bool(c.weights[i] > 0),
                "test_uar": summarize(test.labels, test.member_test[i].argmax(1), n_cls)["uar"],
            }
            for i, m in enumerate(members)
        ],
        "weights": c.weights.tolist(),
        "cv": cv_result,
        "deployment": deploy,
        "ensemble_dir": str(ensemble_dir),
        "code_version": code_version(),
    }


def write_report(out: Path, report: dict) -> dict[str, Path]:
    out = Path(out)
    paths = {
        "json": out / "report.json",
        "md": out / "report.md",
        "html": out / "report.html",
        "png": out / "confusion_matrix.png",
        "per_class_png": out / "per_class.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["png"].write_bytes(confusion_png(report["test"]["confusion_matrix"], report["class_names"]))
    paths["per_class_png"].write_bytes(per_class_png(report["test"]["per_class"]))
    figures = {"confusion": paths["png"].read_bytes(), "per_class": paths["per_class_png"].read_bytes()}
    if report["deployment"].get("budget"):
        paths["budget_png"] = out / "budget.png"
        paths["budget_png"].write_bytes(budget_png(report["deployment"]["budget"]))
        figures["budget"] = paths["budget_png"].read_bytes()
    if report.get("search", {}).get("trials"):
        paths["search_png"] = out / "search.png"
        chance = report.get("baselines", {}).get("chance_uar")
        paths["search_png"].write_bytes(search_png(report["search"], chance))
        figures["search"] = paths["search_png"].read_bytes()
    paths["md"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report, figures))
    return paths


# ----------------------------------------------------------------------------- markdown


def _f(x, nd: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _ci(r: dict, split: str, name: str, metric: str) -> str:
    lo, hi = r["bootstrap"][split]["intervals"][name][metric]
    return f"[{lo:.4f}, {hi:.4f}]"


def _baseline_md(r: dict) -> list[str]:
    b = r.get("baselines")
    if not b:
        return []
    return [
        f"| no learning (test): chance UAR 1/{len(r['class_names'])}; WAR always predicting "
        f"{b['majority_class']} | {b['chance_uar']:.4f} | {b['majority_class_war']:.4f} | |",
    ]


def _search_md(r: dict) -> list[str]:
    s = r.get("search")
    if not s or not s["trials"]:
        return []
    lines = [
        "## The search",
        "",
        f"{len(s['trials'])} finished trials ({s['complete']} complete, {s['pruned']} pruned); best "
        f"validation UAR {_f(s['best_val_uar'])}.",
        "",
        "| trial | state | epochs | val UAR | best so far |",
        "|---|---|---|---|---|",
    ]
    for t in s["trials"]:
        shown = t["val_uar"] if t["val_uar"] is not None else t["last_val_uar"]
        lines.append(
            f"| {t['trial']} | {t['state']} | {t['epochs']} | {_f(shown)} | {_f(t['best_so_far'])} |"
        )
    return [*lines, "", "![best validation UAR so far](search.png)", ""]


def render_markdown(r: dict) -> str:
    t, v = r["test"], r["validation"]
    final = "deployed" if "deployed" in r["comparison"] else "ensemble_calibrated"
    lines = [
        f"# fersearch report: study `{r['study']}`",
        "",
        r["recipe"]["hygiene"],
        "",
        "| split | UAR | WAR | macro F1 |",
        "|---|---|---|---|",
        f"| validation (after selection: optimistic) | {v['uar']:.4f} | {v['war']:.4f} "
        f"| {v['macro_f1']:.4f} |",
        f"| **test** | **{t['uar']:.4f}** {_ci(r, 'test', final, 'uar')} | **{t['war']:.4f}** "
        f"{_ci(r, 'test', final, 'war')} | **{t['macro_f1']:.4f}** {_ci(r, 'test', final, 'macro_f1')} |",
        *_baseline_md(r),
        "",
        "95% intervals: percentile bootstrap over test images "
        f"({r['bootstrap']['test']['n_boot']} resamples).",
        "",
        *_search_md(r),
        "## Where the gain comes from",
        "",
        "| predictor | val UAR | test UAR | test WAR | test macro F1 |",
        "|---|---|---|---|---|",
    ]
    for c in r["comparison"].values():
        val = _f(c["val"]["uar"]) if c["val"] else "n/a"
        lines.append(
            f"| {c['label']} | {val} | {c['test']['uar']:.4f} | {c['test']['war']:.4f} | "
            f"{c['test']['macro_f1']:.4f} |"
        )
    sel = r["recipe"]["selection"]
    if sel.get("used"):
        lines += ["", f"Ensemble weights: {sel['used'].replace('_', ' ')} ({sel['reason']})."]
    lines += ["", "| test difference | UAR (95% CI) |", "|---|---|"]
    for name, d in r["bootstrap"]["test"]["deltas"].items():
        lines.append(
            f"| {name} | {d['uar']['value']:+.4f} [{d['uar']['low']:+.4f}, {d['uar']['high']:+.4f}] |"
        )
    lines += [
        "",
        "## Per class (test)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, pc in t["per_class"].items():
        cells = [_f(pc[k], 3) for k in ("precision", "recall", "f1")]
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
    lines += ["", "Most confused (test): " + "; ".join(
        f"{p['true']} -> {p['predicted']} {p['count']} ({p['share_of_true']:.0%})" for p in t["most_confused"]
    ), ""]  # fmt: skip
    lines += _va_md(r.get("va"))
    lines += [
        "## Members",
        "",
        "| member | trial | seed | search val UAR | retrained val UAR | best epoch | weight | test UAR "
        "| backbone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["members"]:
        lines.append(
            f"| {m['id']} | {m['trial']} | {m['seed']} | {m['search_val_uar']:.4f} | {_f(m['val_uar'])} | "
            f"{m['best_epoch']} | {m['weight']:.3f} | {m['test_uar']:.4f} | {m['config']['backbone']} |"
        )
    d = r["deployment"]
    lines += [
        "",
        f"Deployment: {d['members']} member(s) x {d['views_per_member']} TTA view(s), "
        f"{d['latency_ms_per_image_median']:.1f} ms per image (median, batch 1, {d['latency_device']}), "
        f"{d['size_bytes'] / 2**20:.1f} MiB on disk."
        + (
            f" With ONNX Runtime (`predict --backend onnxruntime`): "
            f"{d['onnxruntime']['latency_ms_per_image_median']:.1f} ms per image."
            if d.get("onnxruntime")
            else ""
        ),
        *_budget_md(d.get("budget")),
        *(["", int8_sentence(d["int8"])] if d.get("int8") else []),
        "",
        f"Code version {r['code_version']}; ensemble exported to `{r['ensemble_dir']}`; see report.html.",
        "",
    ]
    return "\n".join(lines)


def budget_sentence(b: dict) -> str:
    """The budget, the point chosen for it on validation, and the exported ensemble measured."""
    limits = b["budget"]
    asked = describe_limits(limits)
    c = next(c for c in b["candidates"] if c["chosen"])
    verdict = "within the budget" if b["within"] else "OVER the budget"
    return (
        f"Deployment budget {asked} ({limits['threads']} CPU thread(s), batch 1): chosen on validation "
        f"from {len(b['candidates'])} candidates, TTA {c['view_set']} with members {c['members']} "
        f"(estimated {c['latency_ms']:.1f} ms, {c['size_mib']:.1f} MiB, val UAR {c['val_uar']:.4f}); the "
        f"exported ensemble measured {b['measured_latency_ms_per_image_median']:.1f} ms per image and "
        f"{b['measured_members_mib']:.1f} MiB of member files: {verdict}."
    )


def int8_sentence(q: dict) -> str:
    """finalize --quantize int8: which members went int8, and what it cost and saved."""
    kept = sum(r["quantized"] for r in q["members"])
    e = q["ensemble"]
    return (
        f"Int8 members (`--backend onnxruntime-int8`): {kept} of {len(q['members'])} quantised (a member "
        f"is kept in float when it loses more than {q['tolerance']:g} validation UAR). Validation UAR "
        f"{e['val_uar_fp32']:.4f} float, {e['val_uar_int8']:.4f} int8; test UAR {q['test_uar_float']:.4f} "
        f"float, {q['test_uar_int8']:.4f} int8; {q['latency_ms_per_image_int8']:.1f} ms per image against "
        f"{q['latency_ms_per_image_float_onnx']:.1f} ms for the float ONNX members ({q['threads']} thread)."
    )


def _budget_md(b: dict | None) -> list[str]:
    return ["", budget_sentence(b), "", "![candidates under the budget](budget.png)"] if b else []


VA_NOTE = (
    "Valence and arousal in [-1, 1] on the test images that have them: CCC (Lin's concordance "
    "correlation, 1 = perfect) per dimension and the RMSE over both; the ensemble's is the "
    "VA members' outputs averaged with their ensemble weights, on the plain images (no TTA)."
)


def _va_rows(va: dict) -> list[list[str]]:
    rows = [("ensemble", va["ensemble"])] + [(m["id"], m) for m in va["members"]]
    return [[name, _f(s["va_ccc_valence"]), _f(s["va_ccc_arousal"]), _f(s["va_rmse"])] for name, s in rows]


def _va_md(va: dict | None) -> list[str]:
    if not va:
        return []
    lines = [
        "## Valence and arousal (test)",
        "",
        f"{VA_NOTE} {va['labelled']} of {va['n']} test images labelled.",
        "",
        "| predictor | CCC valence | CCC arousal | RMSE |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _va_rows(va)]
    return [*lines, ""]


# ----------------------------------------------------------------------------- html
# The page is fersearch/finalize/templates/report.html (Jinja2, autoescaped); the tables are
# built here, their cells escaped by _e where they carry markup.


def _e(x) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> Markup:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return Markup(f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _img(png: bytes, alt: str) -> Markup:
    return Markup(f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _cards(r: dict, final: str) -> list[dict]:
    b = r.get("baselines") or {}
    no_learning = {
        "uar": f"chance {b['chance_uar']:.4f} (1/{len(r['class_names'])} classes)" if b else "",
        "war": f"always {b['majority_class']}: {b['majority_class_war']:.4f}" if b else "",
        "macro_f1": "",
    }
    return [
        {
            "key": key,
            "label": label,
            "value": f"{r['test'][key]:.4f}",
            "ci": _ci(r, "test", final, key),
            "baseline": no_learning[key],
        }
        for key, label in (("uar", "UAR"), ("war", "WAR"), ("macro_f1", "macro F1"))
    ]


def _comparison_tables(r: dict) -> tuple[Markup, Markup]:
    bt = r["bootstrap"]["test"]
    comp_rows = []
    for name, c in r["comparison"].items():
        iv = bt["intervals"][name]["uar"]
        comp_rows.append(
            [
                _e(c["label"]),
                _f(c["val"]["uar"]) if c["val"] else "n/a",
                f"{c['test']['uar']:.4f} <span class='muted'>[{iv[0]:.4f}, {iv[1]:.4f}]</span>",
                f"{c['test']['war']:.4f}",
                f"{c['test']['macro_f1']:.4f}",
            ]
        )
    delta_rows = []
    for name, d in bt["deltas"].items():
        u = d["uar"]
        cls = "ok" if u["low"] > 0 else ("bad" if u["high"] < 0 else "")
        delta_rows.append(
            [
                _e(name.replace("_", " ")),
                f"<span class='{cls}'>{u['value']:+.4f}</span>",
                f"[{u['low']:+.4f}, {u['high']:+.4f}]",
                f"{d['war']['value']:+.4f}",
                f"{d['macro_f1']['value']:+.4f}",
            ]
        )
    return (
        _table(["predictor", "val UAR", "test UAR [95% CI]", "test WAR", "test macro F1"], comp_rows),
        _table(["test difference", "UAR", "UAR 95% CI", "WAR", "macro F1"], delta_rows),
    )


def _test_tables(t: dict) -> tuple[Markup, Markup]:
    pc_rows = [
        [_e(n), _f(pc["precision"], 3), _f(pc["recall"], 3), _f(pc["f1"], 3), str(int(pc["support"]))]
        for n, pc in t["per_class"].items()
    ]
    conf_rows = [
        [_e(p["true"]), _e(p["predicted"]), str(p["count"]), f"{p['share_of_true']:.1%}"]
        + ["yes" if p["seed001_pair"] else ""]
        for p in t["most_confused"]
    ]
    return (
        _table(["class", "precision", "recall", "F1", "support"], pc_rows),
        _table(["true", "predicted as", "count", "share of true class", "seed 001 pair"], conf_rows),
    )


def _choice_tables(r: dict) -> tuple[Markup, Markup]:
    rec, cal = r["recipe"], r["recipe"]["calibration"]
    tta_rows = [
        [
            _e(name) + (" <b>(chosen)</b>" if name == rec["tta"]["chosen"] else ""),
            str(c["views"]),
            f"{c['uar']:.4f}",
            f"{c['nll']:.4f}",
        ]
        for name, c in rec["tta"]["candidates"].items()
    ]
    cal_rows = [
        [_e(n), f"{b:+.2f}", f"{a:+.2f}"]
        for n, b, a in zip(r["class_names"], cal["fitted_bias"], cal["bias"])
    ]
    return (
        _table(["view set", "views", "val UAR (plain mean)", "val NLL"], tta_rows),
        _table(["class", "fitted offset", "applied offset"], cal_rows),
    )


def _members_table(r: dict) -> Markup:
    rows = []
    for m in r["members"]:
        c = m["config"]
        rows.append(
            [
                _e(m["id"]) + ("" if m["selected"] else " <span class='muted'>(weight 0)</span>"),
                _e(c["backbone"]),
                f"{m['search_val_uar']:.4f}",
                _f(m["val_uar"]),
                str(m["best_epoch"]),
                f"{m['weight']:.3f}",
                f"{m['test_uar']:.4f}",
                f"<details><summary>config</summary><pre>{_e(json.dumps(c, indent=1))}</pre></details>",
            ]
        )
    header = [
        "member",
        "backbone",
        "search val UAR",
        "retrained val UAR",
        "best epoch",
        "weight",
        "test UAR",
        "",
    ]
    return _table(header, rows)


def _va_table(va: dict | None) -> Markup | None:
    if not va:
        return None
    note = Markup(f"<p class='muted'>{_e(VA_NOTE)} {va['labelled']} of {va['n']} test images labelled.</p>")
    rows = [[_e(c) for c in row] for row in _va_rows(va)]
    return note + _table(["predictor", "CCC valence", "CCC arousal", "RMSE"], rows)


def _deployment_table(d: dict) -> Markup:
    lat_ok = d["latency_ms_per_image_median"] <= d["budgets"]["latency_ms_per_image"]
    size_ok = d["size_bytes"] <= d["budgets"]["size_bytes"]
    latency = f"latency per image (median, batch 1, {_e(d['latency_device'])}, {d['torch_threads']} threads)"
    rows = [
        [
            latency,
            f"<span class='{'ok' if lat_ok else 'bad'}'>{d['latency_ms_per_image_median']:.1f} ms</span>",
            f"{d['budgets']['latency_ms_per_image']} ms",
        ],
        *_onnx_latency_rows(d),
        [
            "size on disk",
            f"<span class='{'ok' if size_ok else 'bad'}'>{d['size_bytes'] / 2**20:.1f} MiB</span>",
            f"{d['budgets']['size_bytes'] / 2**20:.0f} MiB",
        ],
    ]
    return _table(["", "measured", "budget (seed 004)"], rows)


def _cv_tables(cvr: dict | None) -> dict | None:
    if not cvr:
        return None
    s = cvr["summary"]
    summary = [
        [name]
        + [f"{s[name][k]['mean']:.4f} &plusmn; {s[name][k]['std']:.4f}" for k in ("uar", "war", "macro_f1")]
        for name in ("uncalibrated", "calibrated")
    ]
    per_fold = [
        [str(f["fold"]), str(f["n"])] + [f"{f['calibrated'][k]:.4f}" for k in ("uar", "war", "macro_f1")]
        for f in cvr["per_fold"]
    ]
    return {
        "folds": cvr["folds"],
        "summary": _table(["", "UAR", "WAR", "macro F1"], summary),
        "per_fold": _table(["fold", "n", "UAR", "WAR", "macro F1"], per_fold),
    }


def _search_section(r: dict, figures: dict[str, bytes]) -> dict | None:
    s = r.get("search")
    if not s or not s["trials"] or "search" not in figures:
        return None
    return {
        "n": len(s["trials"]),
        "complete": s["complete"],
        "pruned": s["pruned"],
        "best": _f(s["best_val_uar"]),
        "img": _img(figures["search"], "validation UAR per trial and best so far"),
    }


@lru_cache(maxsize=2)
def _template(name: str = "report.html"):
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fersearch.finalize", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a key the report lacks is an error, not a blank
        keep_trailing_newline=True,
    )
    return env.get_template(name)  # report.html, or evaluate's evaluate.html


def render_html(r: dict, figures: dict[str, bytes]) -> str:
    final = "deployed" if "deployed" in r["comparison"] else "ensemble_calibrated"
    comparison, deltas = _comparison_tables(r)
    per_class, confused = _test_tables(r["test"])
    tta, calibration = _choice_tables(r)
    sel, cal = r["recipe"]["selection"], r["recipe"]["calibration"]
    return _template().render(
        r=r,
        counts={split: sum(n) for split, n in r["dataset"]["counts"].items()},
        cards=_cards(r, final),
        search=_search_section(r, figures),
        tables={
            "comparison": comparison,
            "deltas": deltas,
            "per_class": per_class,
            "confused": confused,
            "tta": tta,
            "calibration": calibration,
            "members": _members_table(r),
            "deployment": _deployment_table(r["deployment"]),
            "va": _va_table(r.get("va")),
        },
        images={
            "per_class": _img(figures["per_class"], "per-class precision, recall and F1"),
            "confusion": _img(figures["confusion"], "test confusion matrix, counts and normalised"),
            "budget": _img(figures["budget"], "candidates under the deployment budget")
            if "budget" in figures
            else None,
        },
        budget=budget_sentence(r["deployment"]["budget"]) if r["deployment"].get("budget") else None,
        int8=int8_sentence(r["deployment"]["int8"]) if r["deployment"].get("int8") else None,
        sel={
            "method": sel["method"],
            "used": sel.get("used", "greedy").replace("_", " "),
            "reason": sel.get("reason", ""),
            "val_uar": sel["val_uar"],
            "plain_mean_val_uar": sel["plain_mean_val_uar"],
        },
        cal={"applied": cal["applied"], "crossfit": cal["crossfit_on_validation"]},
        cv=_cv_tables(r.get("cv")),
        d=r["deployment"],
    )
