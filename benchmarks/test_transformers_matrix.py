"""benchmarks/transformers_matrix.py: the shipped data is what the recorded results give, and a
form seen where its entry point differs is refused."""

from __future__ import annotations

import copy
import json
from typing import Any

import transformers_matrix as matrix

from fastpad._patch_transformers import fingerprints


def _result(forms: dict[str, dict[str, str]], exact: dict[str, bool]) -> dict[str, Any]:
    return {
        "versions": {"tokenizers": "0.0"},
        "fingerprints": forms,
        "entries": {
            entry: {
                "exact": exact.get(entry, False),
                "passed": 3,
                "failed": 0 if exact.get(entry) else 1,
                "failures": [] if exact.get(entry) else ["test_x"],
                "reason": "" if exact.get(entry) else "test_x: differs",
            }
            for entry in matrix.ENTRY_POINTS
        },
    }


def test_the_shipped_forms_are_those_of_the_recorded_results() -> None:
    recorded = json.loads(matrix.RESULTS.read_text())
    forms, conflicts = matrix.validated_forms(recorded)
    assert not conflicts
    shipped = json.loads(matrix.VALIDATED.read_text())["entry_points"]
    assert shipped == forms
    assert fingerprints.validated() == forms
    # One entry per distinct form, not per release: fewer forms than exact releases.
    for entry in matrix.ENTRY_POINTS:
        exact = [version for version in recorded if recorded[version]["entries"][entry]["exact"]]
        assert sum(len(form["releases"]) for form in forms[entry]) == len(exact)


def test_a_form_also_seen_where_it_differs_is_refused() -> None:
    pad = "tokenizer.pad"
    same = {pad: {"f": "1"}}
    results = {
        "9.0.0": _result(copy.deepcopy(same), {pad: True}),
        "9.1.0": _result(copy.deepcopy(same), {pad: False}),
        "9.2.0": _result({pad: {"f": "2"}}, {pad: True}),
        "9.3.0": _result({pad: {"f": "2"}}, {pad: True}),
        "9.4.0": _result({pad: {"f": None}}, {pad: True}),  # unreadable source: never validated
    }
    forms, conflicts = matrix.validated_forms(results)
    assert forms[pad] == [{"releases": ["9.2.0", "9.3.0"], "fingerprints": {"f": "2"}}]
    assert len(conflicts) == 1 and "9.1.0" in conflicts[0]
    full, compact = matrix.tables(results, forms)
    assert full.count("\n") == 2 + len(results)
    assert "| 9.2 .. 9.3 (2 minors) | patched, exact |" in compact
    assert "| 9.1.0 | 0.0 | not patched: differs: `test_x` (1 of 4 tests failed) |" in full
    assert "exact, not patched" in full  # 9.0.0: exact, but its form is refused
