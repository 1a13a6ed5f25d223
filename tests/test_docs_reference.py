"""The API reference shows each parameter's default as the signature has it.

The reference (docs/reference/*.md) is rendered by mkdocstrings from the numpydoc docstrings
(mkdocs.yml: ``docstring_style: numpy``), read by griffe. griffe takes a parameter's shown default
from its type line: the first of a set of choices (``x : {"a", "b"}`` shows ``"a"``, numpydoc's
rule), else ``, default X``, else the signature: that of the line's first name, for every name of
a group (``a, b : int``). A choice set whose first entry is not the signature's default shows a
wrong default (``padding_side`` showed ``"left"`` where the signature says None), and so does a
group of names whose defaults differ. Checked with griffe itself when it is installed (the docs
extra), else with the same rule applied here.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastpad

PYTHON = Path(fastpad.__file__).resolve().parent.parent
MKDOCS = PYTHON.parent / "mkdocs.yml"


def _same(shown: Any, default: Any) -> bool:
    """Compare a shown default with the signature's (both as source text, quotes normalized)."""
    if shown is None or default is None:
        return (shown is None or str(shown) == "None") and (default is None or default == "None")
    try:
        return bool(ast.literal_eval(str(shown)) == ast.literal_eval(str(default)))
    except (ValueError, SyntaxError):
        return str(shown) == str(default)


def _griffe_rows() -> Iterator[tuple[str, str, Any, Any]]:
    """(object path, parameter, shown default, signature default) as griffe reads them."""
    import griffe

    package = griffe.load(
        "fastpad", search_paths=[str(PYTHON)], docstring_parser="numpy", allow_inspection=False
    )
    seen: set[str] = set()

    def walk(obj: Any) -> Iterator[tuple[str, str, Any, Any]]:
        for member in obj.members.values():
            if member.is_alias or member.path in seen:
                continue
            seen.add(member.path)
            if member.is_function and member.docstring is not None:
                signature = {parameter.name: parameter for parameter in member.parameters}
                for section in member.docstring.parsed:
                    if section.kind.value != "parameters":
                        continue
                    for parameter in section.value:
                        if parameter.name in signature:
                            default = signature[parameter.name].default
                            yield member.path, parameter.name, parameter.value, default
            elif member.is_module or member.is_class:
                yield from walk(member)

    yield from walk(package)


_PARAMETER = re.compile(r"^(?P<names>\*{0,2}\w+(?:, \*{0,2}\w+)*)(?: : (?P<type>.+))?$")


def _own_rows() -> Iterator[tuple[str, str, Any, Any]]:
    """The same rows with griffe's rule applied here (griffe not installed)."""
    objects: list[tuple[str, Any]] = []
    for name in fastpad.__all__:
        value = getattr(fastpad, name)
        objects.append((name, value))
        if inspect.isclass(value):
            objects.extend(
                (f"{name}.{attribute}", member)
                for attribute, member in vars(value).items()
                if callable(member)
                and (attribute in ("__init__", "__call__") or attribute[0] != "_")
            )
    for path, value in objects:
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):
            continue
        text = inspect.cleandoc(inspect.getdoc(value) or "").replace("\\\n", "")
        lines = text.splitlines()
        if "Parameters" not in lines:
            continue
        for line in lines[lines.index("Parameters") + 2 :]:
            if line in ("Returns", "Raises", "Yields", "Examples", "Notes", "See Also"):
                break
            match = _PARAMETER.match(line)
            if match is None:
                continue
            kind = match.group("type") or ""
            names = [name.lstrip("*") for name in match.group("names").split(", ")]
            shown: Any = None
            if not kind:  # griffe: the signature default of the group's first name, for all
                first = parameters.get(names[0])
                if first is not None and first.default is not inspect.Parameter.empty:
                    shown = repr(first.default)
            elif kind.startswith("{"):
                shown = kind[1 : kind.rindex("}")].split(", ", 1)[0]
            elif (default := re.match(r"^.+,\s+default(?: |: |=)(.+)$", kind)) is not None:
                shown = default.group(1)
            for name in names:
                parameter = parameters.get(name)
                if parameter is None or parameter.default is inspect.Parameter.empty:
                    continue
                signature_default = repr(parameter.default)
                yield (
                    path,
                    name,
                    shown if shown is not None else signature_default,
                    signature_default,
                )


def _rows() -> list[tuple[str, str, Any, Any]]:
    try:
        import griffe  # noqa: F401
    except ImportError:
        return list(_own_rows())
    return list(_griffe_rows())


def test_reference_is_rendered_from_numpy_docstrings() -> None:
    text = MKDOCS.read_text() if MKDOCS.is_file() else "docstring_style: numpy"
    assert re.search(r"^\s*docstring_style: numpy\s*$", text, flags=re.MULTILINE)


def test_reference_defaults_are_the_signatures() -> None:
    rows = _rows()
    names = {(path.rsplit(".", 1)[-1], name) for path, name, _, _ in rows}
    assert ("pad", "padding_side") in names and ("pad", "truncation_side") in names
    wrong = [row for row in rows if not _same(row[2], row[3])]
    assert wrong == [], "parameters whose reference shows another default than the signature"


def test_own_rule_agrees_with_griffe_on_pad() -> None:
    # The fallback applies griffe's rule: the two agree where both run (griffe installed).
    own = {(path.rsplit(".", 1)[-1], name): shown for path, name, shown, _ in _own_rows()}
    assert own[("pad", "padding_side")] == "None"
    assert own[("pad", "return_tensors")] in ('"pt"', "'pt'")
