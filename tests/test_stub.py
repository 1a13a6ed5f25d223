"""The hand-written stub `fastpad/_core.pyi` must match the compiled `fastpad._core`.

Names on both sides must agree, and every function's parameter names, order and defaults must
match the signature pybind11 writes into the docstring.
"""

from __future__ import annotations

import ast
import re
from importlib import resources

import pytest

from fastpad import _core


def _stub_tree() -> ast.Module:
    source = resources.files("fastpad").joinpath("_core.pyi").read_text(encoding="utf-8")
    return ast.parse(source)


def _stub_functions() -> dict[str, list[ast.FunctionDef]]:
    functions: dict[str, list[ast.FunctionDef]] = {}
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            functions.setdefault(node.name, []).append(node)
    return functions


def _stub_names() -> set[str]:
    names: set[str] = set()
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return {name for name in names if not name.startswith("_")}


def _module_names() -> set[str]:
    return {name for name in dir(_core) if not name.startswith("_")}


def _split_top_level(text: str) -> list[str]:
    """Split a parameter list at commas outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _runtime_signatures(name: str) -> list[list[tuple[str, bool]]]:
    """(parameter name, has default) lists parsed from pybind11's docstring signature(s)."""
    doc = getattr(_core, name).__doc__ or ""
    signatures = []
    for match in re.finditer(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) ->", doc, re.MULTILINE):
        params = []
        for part in _split_top_level(match.group(1)):
            if part in ("*", "/"):
                continue
            params.append((part.split(":", 1)[0].split("=", 1)[0].strip(), "=" in part))
        signatures.append(params)
    return signatures


def _stub_signature(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    args = node.args
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    params = [(arg.arg, index >= first_default) for index, arg in enumerate(positional)]
    params += [
        (arg.arg, default is not None)
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return params


def test_stub_and_module_have_the_same_names() -> None:
    stub, module = _stub_names(), _module_names()
    missing = sorted(module - stub)
    assert not missing, f"in fastpad._core but missing from _core.pyi: {missing}"
    assert not stub - module, f"in _core.pyi but not in fastpad._core: {sorted(stub - module)}"


@pytest.mark.parametrize("name", sorted(_stub_functions()))
def test_stub_signature_matches_the_binding(name: str) -> None:
    if not callable(getattr(_core, name, None)):
        pytest.fail(f"_core.pyi declares function {name!r}, fastpad._core has no such callable")
    runtime = _runtime_signatures(name)
    assert runtime, f"could not read the signature of _core.{name} from its docstring"
    stub = [_stub_signature(node) for node in _stub_functions()[name]]
    for signature in stub:
        assert signature in runtime, (
            f"_core.pyi {name}{signature} matches no binding signature {runtime}"
        )
    assert len(stub) == len(runtime), f"{name}: {len(stub)} stub overloads, {len(runtime)} bound"


def test_every_binding_is_documented() -> None:
    for name in _module_names():
        doc = getattr(_core, name).__doc__ or ""
        lines = [line for line in doc.splitlines() if line.strip()]
        assert len(lines) >= 2, f"_core.{name} has no docstring beyond its signature"
