"""pytest plugin of benchmarks/transformers_matrix.py: one transformers release's results.

Loaded with ``-p transformers_matrix_plugin`` (``benchmarks`` on ``PYTHONPATH``) when the matrix
tool runs tests/test_patch_transformers.py in a release's environment. It writes, to the JSON
file named by ``FASTPAD_MATRIX_OUT``:

- the release's versions (transformers, tokenizers, huggingface_hub) and layout family;
- per entry point, the fingerprints of the transformers functions its fast path reproduces
  (`fastpad._patch_transformers.fingerprints.current`);
- every test's outcome with the entry points its ``patch_entry`` marker names, and the first
  line of a failure;
- what `fastpad.patch_transformers()` patches here, with its warnings.

With ``FASTPAD_MATRIX_GATE=off`` the fingerprint gate is lifted for the run: each entry point's
current fingerprints are its only validated form, so every entry point whose code fastpad can
wrap is patched and the tests judge its behaviour alone. With ``FASTPAD_MATRIX_GATE=on`` (the
default) the package's own `validated.json` decides, as for a user.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import pytest

_RESULTS: dict[str, Any] = {"tests": []}


def _fingerprints() -> dict[str, Any]:
    from fastpad._patch_transformers import common, fingerprints

    tf = common.load_transformers()
    if tf is None:
        return {}
    return {entry: fingerprints.current(entry, tf) for entry in common.ENTRY_POINTS}


def _versions() -> dict[str, Any]:
    from importlib import metadata

    found: dict[str, Any] = {}
    for name in ("transformers", "tokenizers", "huggingface_hub", "torch", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def pytest_configure(config: pytest.Config) -> None:
    from fastpad._patch_transformers import common, fingerprints

    _RESULTS["versions"] = _versions()
    tf = common.load_transformers()
    _RESULTS["family"] = None if tf is None else tf.family
    _RESULTS["fingerprints"] = _fingerprints()
    gate = os.environ.get("FASTPAD_MATRIX_GATE", "on")
    _RESULTS["gate"] = gate
    if gate == "off":
        # Every entry point's code as it is here counts as validated, for this run only.
        fingerprints._VALIDATED = {
            entry: [{"releases": ["(gate off)"], "fingerprints": dict(found)}]
            for entry, found in _RESULTS["fingerprints"].items()
        }


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The call of each test, and a setup or teardown that did not pass (a skip included).
    if report.when == "call" or report.outcome != "passed":
        message = ""
        if report.failed:
            text = str(report.longrepr) if report.longrepr is not None else ""
            lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
            message = " / ".join(lines[:3]) if lines else (text.splitlines() or [""])[-1]
            message = message[:400]
        _RESULTS["tests"].append(
            {
                "test": report.nodeid.split("::", 1)[-1],
                "when": report.when,
                "outcome": report.outcome,
                "entries": list(getattr(report, "patch_entries", ())),
                "message": message,
            }
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    entries: list[str] = []
    for marker in item.iter_markers("patch_entry"):
        entries.extend(marker.args)
    report.patch_entries = tuple(dict.fromkeys(entries))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import fastpad
    from fastpad._patch_transformers import install

    install._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status: Any = fastpad.patch_transformers()
        except Exception as error:  # reported, not raised: the table shows it
            status = {"error": repr(error)}
        finally:
            fastpad.unpatch_transformers()
    _RESULTS["patched"] = status
    _RESULTS["warnings"] = [str(item.message) for item in caught]
    _RESULTS["exitstatus"] = int(exitstatus)
    out = os.environ.get("FASTPAD_MATRIX_OUT")
    if out:
        with open(out, "w") as handle:
            json.dump(_RESULTS, handle, indent=1)
