"""Tens of thousands of calls on good and bad input keep memory flat.

Each scenario runs a warm-up, then many calls, and compares Python-heap (tracemalloc: leaked
references keep objects alive) and process RSS (native leaks: buffers never released, C++
allocations never freed) before and after. Errors raised mid-batch are included: they are where
an extension forgets a Py_DECREF or a PyBuffer_Release. The heavier variant is marked `slow`.
"""

from __future__ import annotations

import gc
import itertools
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastpad
from fastpad import _core

torch = pytest.importorskip("torch")

ROWS, WIDTH = 16, 48


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rows(seed: int) -> list[list[int]]:
    # Ints above 256 are fresh objects, so a leaked row is a leaked list of real objects.
    rng = np.random.default_rng(seed)
    return [
        [int(v) + 1000 for v in rng.integers(0, 30_000, size=int(n))]
        for n in rng.integers(1, WIDTH, size=ROWS)
    ]


def _expect_error(call: Callable[[], Any], error: type[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except error:
            return
        raise AssertionError("expected an error")

    return run


def _scenarios() -> dict[str, Callable[[], Any]]:
    good = _rows(0)
    ragged = fastpad.Ragged.from_rows(good)
    arrays = [np.asarray(row, dtype=np.int64) for row in good]
    tensors = [torch.tensor(row) for row in good]
    mapping = {"input_ids": good, "labels": good}
    bad_token = [*good[:-1], [*good[-1][:-1], None]]  # fails on the last token of the last row
    overflow = [*good[:-1], [2**40]]
    bad_offsets = fastpad.Ragged(ragged.values, np.array([0, 5, 3]))
    numpy_scalars = [[np.int64(v) for v in row] for row in good[:4]]
    # Outputs of 2048+ cells come from the output cache: blocks must go back, not pile up.
    big = [_rows(seed) * 8 for seed in (2, 3, 4)]  # 128 rows: widths differ, so size classes do
    widths = itertools.cycle(big)
    return {
        "cached-torch": lambda: fastpad.pad(big[0], pad_token_id=0),
        "cached-np-varied": lambda: fastpad.pad(next(widths), pad_token_id=0, return_tensors="np"),
        "cached-flatten": lambda: fastpad.flatten(big[1]),
        "lists": lambda: fastpad.pad(_rows(1), pad_token_id=0, return_tensors="np"),
        "lists-torch": lambda: fastpad.pad(good, pad_token_id=0),
        "ragged": lambda: fastpad.pad(ragged, pad_token_id=0, return_tensors="np", threads=2),
        "array-rows": lambda: fastpad.pad(arrays, pad_token_id=0, return_tensors="np"),
        "tensor-rows": lambda: fastpad.pad(tensors, pad_token_id=0, return_tensors="np"),
        "numpy-scalars": lambda: fastpad.pad(numpy_scalars, pad_token_id=0, return_tensors="np"),
        "mapping-truncate": lambda: fastpad.pad(
            mapping,
            pad_token_id=0,
            pad_values={"labels": -100},
            truncation=True,
            max_length=9,
            padding_side="left",
            return_tensors="np",
        ),
        "bad-token": _expect_error(
            lambda: fastpad.pad(bad_token, pad_token_id=0, return_tensors="np"), TypeError
        ),
        "overflow-int32": _expect_error(
            lambda: fastpad.pad(overflow, pad_token_id=0, dtype="int32", return_tensors="np"),
            OverflowError,
        ),
        "bad-offsets": _expect_error(
            lambda: fastpad.pad(bad_offsets, pad_token_id=0, return_tensors="np"), ValueError
        ),
        "bad-option": _expect_error(
            lambda: fastpad.pad(good, pad_token_id=0, padding="max_length", max_length=3),
            ValueError,
        ),
        "core-bad-output": _expect_error(
            lambda: _core.pack(
                [("input_ids", 0, good)],
                [np.zeros((ROWS, 2), np.int64)],
                [0],
                np.array([len(row) for row in good]),
                None,
                2,
                -1,
                False,
                False,
            ),
            ValueError,
        ),
        "core-bad-spec": _expect_error(
            lambda: _core.measure([("input_ids", 1, ragged.values)], 0, -1, False, 0), ValueError
        ),
    }


def _growth(call: Callable[[], Any], calls: int) -> tuple[int, int]:
    for _ in range(200):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        heap_before = tracemalloc.get_traced_memory()[0]
        rss_before = _rss_bytes()
        for _ in range(calls):
            call()
        gc.collect()
        heap_after = tracemalloc.get_traced_memory()[0]
        rss_after = _rss_bytes()
    finally:
        tracemalloc.stop()
    return heap_after - heap_before, rss_after - rss_before


SCENARIOS = sorted(_scenarios())


@pytest.mark.parametrize("name", SCENARIOS)
def test_memory_stays_flat(name: str) -> None:
    # A leaked batch is ~10-40 KB here, so 3000 calls would leak tens of MB.
    heap, rss = _growth(_scenarios()[name], 3000)
    assert heap < 256 * 1024, f"{name}: Python heap grew by {heap} bytes over 3000 calls"
    # Under ASan (.ci/sanitize.sh) freed memory sits in quarantine, so RSS is not meaningful.
    if not os.environ.get("FASTPAD_SANITIZED"):
        assert rss < 16 * 1024 * 1024, f"{name}: RSS grew by {rss} bytes over 3000 calls"


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_memory_stays_flat_long(name: str) -> None:
    heap, rss = _growth(_scenarios()[name], 30_000)
    assert heap < 256 * 1024, f"{name}: Python heap grew by {heap} bytes over 30000 calls"
    if not os.environ.get("FASTPAD_SANITIZED"):
        assert rss < 16 * 1024 * 1024, f"{name}: RSS grew by {rss} bytes over 30000 calls"
