"""No import cycle among fastpad's modules, function-level (lazy) imports included.

The imports are read with `ast`, not executed: each module's edges are the fastpad modules it
imports anywhere in its source; a cycle is a strongly connected component of more than one
module. Cheap, and independent of what is installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fastpad

# The fastpad under test: the source tree, or the installed wheel when CI runs the tests from
# outside the tree (a wheel ships the .py sources and the extension's stub).
PACKAGE = Path(fastpad.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (source, is a package); extension modules by their stub (leaves)."""
    modules: dict[str, tuple[Path, bool]] = {}
    root = PACKAGE.parent
    for source in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]):
        if source.suffix == ".pyi" and source.with_suffix(".py").exists():
            continue
        parts = list(source.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (source, is_package)
    return modules


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def import_graph() -> dict[str, set[str]]:
    """Edges module -> the fastpad modules it imports (at any depth of its source)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, (source, is_package) in modules.items():
        if source.suffix == ".pyi":
            continue
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                # `from package import name`: the submodule when `name` is one.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_detector_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert len(graph) > 40, f"read only {len(graph)} modules under {PACKAGE}"
    assert "fastpad._bench.run" in graph["fastpad.__main__"]  # inside a function
    assert "fastpad._core" in graph["fastpad._pad"]  # `from . import _core`, an extension
    assert "fastpad._bench.measure" in graph["fastpad._bench.patch"]


def test_no_import_cycle_in_fastpad() -> None:
    assert cycles(import_graph()) == []
