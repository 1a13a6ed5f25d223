"""`python -m fastpad bench` runs end to end on a tiny workload (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def _run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "fastpad", "bench", "--out", str(tmp_path), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


def test_bench_writes_png_and_json(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "--quick",
        "--batch-sizes",
        "1,8",
        "--workloads",
        "short,30:64:16",
        "--budget",
        "0.01",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    png = tmp_path / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "bench.json").read_text())
    paths = {item["path"] for item in report["results"]}
    assert {"fastpad-lists", "fastpad-ragged", "reference", "numpy-lists", "copy-floor"} <= paths
    assert {item["batch_size"] for item in report["results"]} == {1, 8}
    assert {item["workload"] for item in report["results"]} == {"short", "custom-30:64:16"}
    assert all(item["median_s"] > 0 for item in report["results"])
    assert report["machine"]["cpu"]
    # The table names every path and the ratios.
    assert "fastpad.pad (lists)" in result.stdout
    assert "vs fastpad.reference" in result.stdout
    try:
        import transformers  # noqa: F401
    except ImportError:
        assert "skipped" in result.stdout + result.stderr
    else:
        assert "tokenizer-pad" in paths and "collator" in paths


def test_bench_paths_option_and_no_plot(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "--batch-sizes",
        "4",
        "--workloads",
        "short",
        "--paths",
        "fastpad-lists,numpy-lists",
        "--budget",
        "0.01",
        "--no-memory",
        "--no-progress",
        "--no-plot",
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "bench.png").exists()
    report = json.loads((tmp_path / "bench.json").read_text())
    assert {item["path"] for item in report["results"]} == {"fastpad-lists", "numpy-lists"}


@pytest.mark.parametrize(
    "arguments",
    [["--workloads", "nonsense"], ["--paths", "no-such-path"], ["--batch-sizes", "0"]],
)
def test_bench_rejects_bad_options(tmp_path: Path, arguments: list[str]) -> None:
    result = _run(tmp_path, *arguments)
    assert result.returncode == 2
    assert not (tmp_path / "bench.json").exists()
