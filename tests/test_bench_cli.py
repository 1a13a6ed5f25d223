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


def _run(
    tmp_path: Path, *arguments: str, out: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    where = ["--out", str(tmp_path)] if out else []
    return subprocess.run(
        [sys.executable, "-m", "fastpad", "bench", *where, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
        cwd=cwd,
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
        "--e2e-texts",
        "6",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    # --no-progress: no bar at all, transformers' "Loading weights" (the patch section) included.
    assert "Loading weights" not in result.stderr
    assert "it/s]" not in result.stderr and "step/s]" not in result.stderr
    assert f"writing bench.json and bench.png to {tmp_path}" in result.stdout
    assert f"wrote {tmp_path / 'bench.json'}" in result.stdout
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
        end_to_end = report["end_to_end"]
        assert end_to_end["texts"] == 6 and end_to_end["max_abs_diff"] <= 1e-5
        assert "**End to end**" in result.stdout


def test_quick_covers_every_path_and_section() -> None:
    from fastpad.__main__ import _parser
    from fastpad._bench import e2e
    from fastpad._bench.run import BenchConfig
    from fastpad._bench.workloads import QUICK_BATCH_SIZES, WORKLOADS, make_batch

    arguments = _parser().parse_args(["bench", "--quick"])
    assert arguments.paths is None and arguments.workloads == "short,sentences,documents"
    # No path is skipped as too slow at --quick's largest batch, in any workload.
    largest = max(QUICK_BATCH_SIZES)
    limit = BenchConfig(workloads=[], batch_sizes=[]).slow_max_cells
    for workload in WORKLOADS.values():
        assert largest * make_batch(workload, largest).width <= limit
    assert e2e.QUICK[0] > 0  # the end-to-end section runs too, on a slice


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
    [
        ["--workloads", "nonsense"],
        ["--paths", "no-such-path"],
        ["--batch-sizes", "0"],
        ["--e2e-texts", "-1"],
    ],
)
def test_bench_rejects_bad_options(tmp_path: Path, arguments: list[str]) -> None:
    result = _run(tmp_path, *arguments)
    assert result.returncode == 2
    assert not (tmp_path / "bench.json").exists()


def test_bench_writes_to_a_fastpad_bench_folder_by_default(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "--batch-sizes",
        "2",
        "--workloads",
        "short",
        "--paths",
        "fastpad-lists",
        "--budget",
        "0.01",
        "--no-memory",
        "--no-progress",
        "--no-plot",
        out=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "fastpad-bench"
    assert (folder / "bench.json").is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["fastpad-bench"]
    assert f"writing bench.json to {folder}" in result.stdout


def test_version_and_plain_text_help() -> None:
    import fastpad

    def run(*arguments: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "fastpad", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    assert run("--version").strip().splitlines()[-1] == f"fastpad {fastpad.__version__}"
    for text in (run("--help"), run("bench", "--help")):
        assert "``" not in text and ":func:" not in text
    assert "default fastpad-bench/" in run("bench", "--help")
