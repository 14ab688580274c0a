"""The import contract, read statically from the AST: no cycles, and no import from a lower
layer to a higher one. The layer order is written here once; ``docs/architecture.md`` shows it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgeinfer"
#: lowest first; a module may import its own layer and the layers before it (longest prefix wins)
LAYERS = [
    ["errors", "_deps", "progress", "machine", "stats", "timing", "report_html", "quantized_io"],
    ["artifact", "ort_session"],
    ["model"],
    ["zoo"],
    ["loading"],
    ["vision", "synthetic"],
    ["runtime"],
    ["optimization", "conversion", "importing"],
    ["pipeline"],
    ["training"],
    ["compression"],
    ["benchmark", "tuning"],
    ["demo"],
    ["collab"],
    ["serve"],
    ["cli", "api", ""],
]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _layer(module: str) -> int:
    best = max((p for row in LAYERS for p in row if module == p or module.startswith(p + ".")
                or p == ""), key=len)
    return next(i for i, row in enumerate(LAYERS) if best in row)


def _imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (``from edgeinfer.x import y`` names ``x.y`` when
    that is a module, else ``x``); lazy imports inside functions count too."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        found = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                base = node.module
                names = [f"{base}.{a.name}" if f"{base}.{a.name}".removeprefix("edgeinfer.")
                         in files else base for a in node.names]
            else:
                continue
            found |= {n.removeprefix("edgeinfer").lstrip(".") for n in names
                      if n == "edgeinfer" or n.startswith("edgeinfer.")}
    return graph


#: upward imports being removed by work in progress; this set only shrinks
PENDING: set[tuple[str, str]] = set()


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    found = {(m, t) for m, targets in _imports().items() for t in targets
             if _layer(t) > _layer(m)}
    upward = sorted(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
                    for m, t in found - PENDING)
    assert not upward, "\n".join(upward)
    assert not PENDING - found, f"fixed, remove from PENDING: {sorted(PENDING - found)}"


def test_no_import_cycles() -> None:
    graph = _imports()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        if node in done or node not in graph:
            return
        for target in sorted(t for t in graph[node] - {node} if (node, t) not in PENDING):
            visit(target, [*stack, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
