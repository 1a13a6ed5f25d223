"""The patch_transformers section of `python -m fastpad bench` runs and reports (no timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fastpad
from fastpad._bench import patch
from fastpad._bench.run import BenchConfig
from fastpad._bench.workloads import WORKLOADS

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")


@pytest.mark.filterwarnings("ignore::fastpad._patch_transformers.PatchWarning")
def test_section_measures_reports_and_plots(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sentence_transformers")
    monkeypatch.setattr(patch, "_QUICK", {"encode": (40, 16, 1), "train": (32, 8, 2, 1)})
    config = BenchConfig(
        workloads=[WORKLOADS["short"]],
        batch_sizes=[8],
        budget_seconds=0.01,
        min_rounds=1,
        quick=True,
    )
    messages: list[str] = []
    section = patch.measure(config, tokenizer, messages.append)
    assert section is not None
    assert not any(fastpad.patch_transformers.is_patched().values())  # undone afterwards
    patched = fastpad.patch_transformers()
    fastpad.unpatch_transformers()
    expected = ["tokenizer.pad", "tokenizer.pad (examples)", "tokenizer call"]
    if not (patched["tokenizer.pad"] and patched["tokenizer.__call__"]):
        expected = []  # an unrecognised transformers: nothing to compare
    assert [item["short"] for item in section["micro"]] == expected
    assert all(item["unpatched_s"] > 0 and item["patched_s"] > 0 for item in section["micro"])
    encode = section["sentence_transformers"]
    assert encode["bit_identical"] is True
    assert encode["batches"] == 3 and encode["texts"] == 40
    training = section["training_loop"]
    assert training["batches"] == 2
    for part in (encode, training):
        for mode in ("unpatched", "patched"):
            figures = part[mode]
            assert 0 < figures["prep_s"] < figures["total_s"]
            assert figures["prep_share"] == pytest.approx(figures["prep_s"] / figures["total_s"])
    report = {"patch_transformers": section}
    json.loads(json.dumps(report))  # JSON-ready
    text = "\n".join(patch.table_lines(report))
    assert ("tokenizer.pad (dict of lists), B=256" in text) == bool(expected)
    assert "SentenceTransformer.encode" in text and "Training-style loop" in text
    assert "host prep per batch" in text

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastpad._bench.plot import _patch

    figure, axis = plt.subplots()
    assert _patch(axis, report)
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert labels[: len(expected)] == expected
    assert "encode: host prep / batch" in labels and "train: host prep / batch" in labels
    figure.savefig(tmp_path / "panel.png")
    plt.close(figure)


def test_section_is_skipped_without_a_real_tokenizer() -> None:
    config = BenchConfig(workloads=[WORKLOADS["short"]], batch_sizes=[8])
    assert patch.measure(config, None, print) is None
    assert list(patch.table_lines({"patch_transformers": None})) == []
