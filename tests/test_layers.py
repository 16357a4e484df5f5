"""The package's layers only point down (DESIGN.md, "Layout and layers"), checked on the source:
no import cycle among modules, no import from a lower layer up to a higher one, and late
(function-level) imports only where start-up time is the reason."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "fersearch"

# Top to bottom. A module may import from its own layer's package or any layer below it.
LAYERS = [
    {"cli", "commands"},
    {"demo", "predict", "explain"},
    {"finalize", "search"},
    {"train"},
    {"ensemble"},
    {"models", "data"},
    {"config", "runtime", "plots", "cpu_share", "registry"},
    {"errors", "progress", "metrics", "version", "__init__"},
]
# Late imports kept for start-up time: timm/open_clip load in seconds, and a space is parsed by
# commands (status, create) that never build a model.
LATE_OK = {("search.space", "models"), ("search.combinations", "models")}


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name or "__init__"] = f
    return out


def _imports(mods: dict[str, Path]):
    """(module, imported module, at top level?) for every import of a fersearch module."""
    for name, f in mods.items():
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        if name == "__init__":
            package = []

        def walk(node, top: bool):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield from walk(child, False)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = package[: len(package) - (child.level - 1)]
                        target = ".".join([*base, *([child.module] if child.module else [])])
                    elif (child.module or "").startswith("fersearch"):
                        target = child.module.removeprefix("fersearch").lstrip(".")
                    else:
                        continue
                    subs = [f"{target}.{a.name}".lstrip(".") for a in child.names]
                    subs = [s for s in subs if s in mods]
                    # `from . import x` runs the package's __init__ too: an edge to the package
                    for t in [target or "__init__", *subs]:
                        if t in mods and t != name:
                            yield name, t, top
                elif isinstance(child, ast.Import):
                    for a in child.names:
                        t = a.name.removeprefix("fersearch").lstrip(".")
                        if a.name.startswith("fersearch") and t in mods:
                            yield name, t, top
                else:
                    yield from walk(child, top)

        yield from walk(ast.parse(f.read_text()), True)


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer():
    assert all(_layer(m) >= 0 for m in _modules())


def test_no_import_points_up_a_layer():
    up = [(a, b) for a, b, _ in _imports(_modules()) if _layer(b) < _layer(a)]
    assert not up, f"imports from a lower layer up to a higher one: {up}"


def test_no_import_cycle():
    graph = defaultdict(set)
    for a, b, top in _imports(_modules()):
        if top:
            graph[a].add(b)
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for m in list(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"


def test_late_imports_are_only_for_start_up_time():
    late = {
        (a, b.split(".")[0])
        for a, b, top in _imports(_modules())
        if not top and not a.startswith(("commands", "cli"))
    }
    assert late <= LATE_OK, f"function-level imports that are not for start-up time: {late - LATE_OK}"
