"""Every padding path on every workload and batch size, checked equal, then timed.

Run ``python -m pytest benchmarks`` for timings (pytest-benchmark; compare paths within a group)
or ``python -m pytest benchmarks --benchmark-disable`` for the smoke run CI does: each path runs
once and is still checked against the first one.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastpad._bench.paths import PATHS, assert_same
from fastpad._bench.workloads import BATCH_SIZES, WORKLOADS

pytest.importorskip("torch")


@pytest.mark.parametrize("size", BATCH_SIZES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("path", list(PATHS))
def test_pad(
    benchmark: Any, batches: Any, request: Any, path: str, workload: str, size: int
) -> None:
    spec = PATHS[path]
    tokenizer = (
        request.getfixturevalue("bench_tokenizer").tokenizer if spec.needs_tokenizer else None
    )
    batch = batches(WORKLOADS[workload], size)
    function = spec.prepare(batch, tokenizer, 1)
    expected = PATHS["fastpad-ragged"].prepare(batch, None, 1)()
    assert_same(function(), expected, f"{path} at {workload} B={size}")
    benchmark.group = f"{workload} B={size}"
    benchmark.extra_info.update(
        {"tokens": batch.tokens, "width": batch.width, "output_bytes": batch.output_bytes}
    )
    benchmark(function)
