"""Threaded packing gives exactly the one-thread result (rows split across std::threads)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpad


def _ragged(seed: int, rows: int, mean: int, cap: int) -> fastpad.Ragged:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.poisson(mean, rows), 0, cap)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = rng.integers(1, 30000, int(offsets[-1]), dtype=np.int64)
    return fastpad.Ragged(values, offsets)


def _equal(first: Any, second: Any) -> None:
    assert list(first.keys()) == list(second.keys())
    for key in first:
        assert first[key].dtype == second[key].dtype
        assert np.array_equal(np.asarray(first[key]), np.asarray(second[key])), key


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 300),
    threads=st.integers(2, 9),
    padding_side=st.sampled_from(["left", "right"]),
    truncation_side=st.sampled_from(["left", "right"]),
    max_length=st.one_of(st.none(), st.integers(0, 40)),
    multiple=st.one_of(st.none(), st.integers(1, 8)),
    dtype=st.sampled_from(["int64", "int32"]),
    mask_dtype=st.sampled_from(["int64", "int32", "int8", "bool"]),
)
def test_threads_match_one_thread(
    seed: int,
    rows: int,
    threads: int,
    padding_side: str,
    truncation_side: str,
    max_length: int | None,
    multiple: int | None,
    dtype: str,
    mask_dtype: str,
) -> None:
    ragged = _ragged(seed, rows, 12, 60)
    options: dict[str, Any] = {
        "pad_token_id": 0,
        "padding_side": padding_side,
        "truncation_side": truncation_side,
        "pad_to_multiple_of": multiple,
        "dtype": dtype,
        "mask_dtype": mask_dtype,
        "return_tensors": "np",
    }
    if max_length is not None:
        options.update(truncation=True, max_length=max_length)
    one = fastpad.pad(ragged, threads=1, **options)
    many = fastpad.pad(ragged, threads=threads, **options)
    _equal(one, many)


def test_threads_on_several_fields_and_lists() -> None:
    ragged = _ragged(1, 1000, 30, 200)
    labels = fastpad.Ragged(-ragged.values, ragged.offsets)
    inputs = {"input_ids": ragged, "labels": labels}
    options: dict[str, Any] = {
        "pad_token_id": 0,
        "pad_values": {"labels": -100},
        "return_tensors": "np",
    }
    _equal(fastpad.pad(inputs, threads=1, **options), fastpad.pad(inputs, threads=4, **options))
    rows = [row.tolist() for row in ragged]
    del options["pad_values"]
    _equal(fastpad.pad(rows, threads=1, **options), fastpad.pad(rows, threads=3, **options))


def test_automatic_threads_on_a_large_batch_match_one_thread() -> None:
    # Above 1M cells `threads=None` splits rows across default_threads() threads.
    ragged = _ragged(2, 4096, 300, 512)
    one = fastpad.pad(ragged, pad_token_id=0, threads=1, return_tensors="np")
    assert one["input_ids"].size >= 1 << 20
    _equal(one, fastpad.pad(ragged, pad_token_id=0, return_tensors="np"))


def test_more_threads_than_rows() -> None:
    ragged = _ragged(3, 3, 5, 10)
    _equal(
        fastpad.pad(ragged, pad_token_id=0, threads=1, return_tensors="np"),
        fastpad.pad(ragged, pad_token_id=0, threads=8, return_tensors="np"),
    )


def test_thread_errors_reach_the_caller() -> None:
    ragged = fastpad.Ragged(np.array([1, 2, 3, 2**40], dtype=np.int64), np.array([0, 2, 4]))
    with pytest.raises(OverflowError):
        fastpad.pad(ragged, pad_token_id=0, dtype="int32", threads=2, return_tensors="np")


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_threads(threads: Any) -> None:
    with pytest.raises(ValueError, match="threads"):
        fastpad.pad([[1, 2]], pad_token_id=0, threads=threads)


def test_default_threads_is_capped() -> None:
    assert 1 <= fastpad.default_threads() <= 8
