"""pytest-benchmark suites: shared fixtures (built once per session, never downloaded)."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def bench_tokenizer() -> Any:
    """The tokenizer of the transformers paths (bundled all-MiniLM-L6-v2, else a built-in one)."""
    from fastpad._bench.workloads import load_tokenizer

    tokenizer, note = load_tokenizer()
    if tokenizer is None:
        pytest.skip(note)
    return tokenizer


@pytest.fixture(scope="session")
def batches() -> Any:
    """make_batch, memoized: each (workload, B) batch is generated once per session."""
    from fastpad._bench.workloads import make_batch

    cache: dict[tuple[str, int], Any] = {}

    def get(workload: Any, size: int) -> Any:
        key = (workload.name, size)
        if key not in cache:
            cache.clear()  # keep one batch alive at a time: B=4096 documents are ~200 MB of lists
            cache[key] = make_batch(workload, size)
        return cache[key]

    return get
