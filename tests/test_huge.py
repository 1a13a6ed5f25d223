"""Batches whose B x L exceeds memory raise MemoryError naming the size; no arithmetic wraps.

The inputs here are small (a few MB): one long row plus many empty ones, or a huge max_length or
pad_to_multiple_of, make the padded batch petabytes wide without allocating it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastpad
from fastpad import _core

INT64_MAX = 2**63 - 1


def _size_named(message: str) -> bool:
    """The message states a size: shape [B, L], a byte count, or a TiB/PiB figure."""
    return bool(re.search(r"\[\d+, \d+\]|\(\d+, \d+\)|\d{10,}|\d+(\.\d+)? [PTEG]iB", message))


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
def test_long_row_times_many_rows_is_a_memory_error(return_tensors: str) -> None:
    rows, longest = 1 << 22, 1 << 26  # 2**48 cells, 2 PiB as int64: beyond any address space
    offsets = np.zeros(rows + 1, dtype=np.int64)
    offsets[1:] = longest  # row 0 holds every value, the others are empty
    batch = fastpad.Ragged(np.zeros(longest, dtype=np.int32), offsets)
    with pytest.raises(MemoryError) as caught:
        fastpad.pad(batch, pad_token_id=0, return_tensors=return_tensors)
    assert _size_named(str(caught.value)), str(caught.value)


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
@pytest.mark.parametrize("max_length", [1 << 50, INT64_MAX, 1 << 62])
def test_huge_max_length_is_a_memory_error(return_tensors: str, max_length: int) -> None:
    with pytest.raises(MemoryError) as caught:
        fastpad.pad(
            [[1, 2], [3]],
            pad_token_id=0,
            padding="max_length",
            max_length=max_length,
            return_tensors=return_tensors,
        )
    assert _size_named(str(caught.value)), str(caught.value)


@pytest.mark.parametrize("multiple", [1 << 50, INT64_MAX, 2**63, 2**80])
def test_huge_pad_to_multiple_of_is_a_memory_error(multiple: int) -> None:
    with pytest.raises(MemoryError) as caught:
        fastpad.pad([[1, 2], [3]], pad_token_id=0, pad_to_multiple_of=multiple, return_tensors="np")
    assert _size_named(str(caught.value)), str(caught.value)


def test_huge_max_length_without_padding_to_it_is_harmless() -> None:
    # Truncating to a limit no row reaches keeps everything, even beyond int64.
    for limit in (INT64_MAX, 2**63, 2**100):
        batch = fastpad.pad(
            [[1, 2], [3]], pad_token_id=0, truncation=True, max_length=limit, return_tensors="np"
        )
        assert batch["input_ids"].tolist() == [[1, 2], [3, 0]]


@pytest.mark.parametrize(
    ("rows", "width"),
    [(1 << 32, 1 << 32), (INT64_MAX, 2), (2, INT64_MAX), (1 << 61, 1), (3, 1 << 62)],
)
@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_checked_cells_never_wraps(rows: int, width: int, itemsize: int) -> None:
    with pytest.raises(MemoryError, match=rf"\[{rows}, {width}\]"):
        _core.checked_cells(rows, width, itemsize)


def test_checked_cells_accepts_what_fits() -> None:
    assert _core.checked_cells(1 << 10, 1 << 10, 8) == 1 << 20
    assert _core.checked_cells(0, INT64_MAX, 8) == 0
    assert _core.checked_cells(INT64_MAX, 0, 1) == 0


def test_checked_cells_refuses_more_than_physical_memory() -> None:
    # 2**40 cells of int64 (8 TiB): addressable, but more than this machine's memory.
    with pytest.raises(
        MemoryError, match=r"\[1048576, 1048576\] int64 batch \(8796093022208 bytes\)"
    ):
        _core.checked_cells(1 << 20, 1 << 20, 8)


def test_pt_batch_beyond_memory_below_the_check_threshold() -> None:
    rows, longest = 1 << 12, 1 << 26  # 2**38 cells, 2 TiB as int64
    offsets = np.zeros(rows + 1, dtype=np.int64)
    offsets[1:] = longest
    batch = fastpad.Ragged(np.zeros(longest, dtype=np.int8), offsets)
    with pytest.raises(MemoryError):
        fastpad.pad(batch, pad_token_id=0, return_tensors="pt")


@pytest.mark.parametrize("max_length", [INT64_MAX, 2**70])
@pytest.mark.parametrize("multiple", [2, 3, 2**62 + 1])
def test_width_rounding_cannot_overflow(max_length: int, multiple: int) -> None:
    with pytest.raises(MemoryError, match="does not fit in memory"):
        _core.measure([("input_ids", 0, [[1]])], 1, max_length, False, multiple)


def test_offsets_past_int64_are_rejected_not_wrapped() -> None:
    values = np.zeros(4, dtype=np.int64)
    for offsets in (
        np.array([0, 2**64 - 1], dtype=np.uint64),
        np.array([0, 2**63], dtype=np.uint64),
        np.array([0, 2, 2**63 + 1], dtype=np.uint64),
        np.array([0, 2**32 - 1], dtype=np.uint32),
        np.array([0, INT64_MAX], dtype=np.int64),
    ):
        with pytest.raises(ValueError, match="run past the values"):
            fastpad.pad(fastpad.Ragged(values, offsets), pad_token_id=0, return_tensors="np")


def test_huge_multiple_is_ignored_without_padding() -> None:
    # fuzz_pad: padding=False ignores pad_to_multiple_of, even one beyond int64 (was MemoryError).
    batch = fastpad.pad(
        [[1, 2, 3]], pad_token_id=0, padding=False, pad_to_multiple_of=2**64, return_tensors="np"
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3]]
