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
    # Above 2M cells on an idle machine `threads=None` splits rows across default_threads(cells).
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
    for cells in (0, 1, 1 << 20, (1 << 21) - 1, 1 << 21, 1 << 30, 1 << 62):
        assert 1 <= fastpad.default_threads(cells) <= fastpad.default_threads()


def _machine(monkeypatch: pytest.MonkeyPatch, cores: int, load: float | None) -> None:
    """Pretend to run on `cores` cores (all usable) with a 1-minute load average of `load`."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if load is None:
        monkeypatch.delattr(os, "getloadavg", raising=False)
    else:
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))


def test_default_threads_by_work_per_thread_on_an_idle_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _machine(monkeypatch, cores=16, load=0.0)
    assert fastpad.default_threads() == 8
    million = 1 << 20
    expected = {0: 1, million: 1, 2 * million - 1: 1, 2 * million: 2, 5 * million: 5}
    expected.update({8 * million: 8, 100 * million: 8})
    for cells, threads in expected.items():
        assert fastpad.default_threads(cells) == threads, cells
    _machine(monkeypatch, cores=2, load=None)  # no load average: the cores decide
    assert fastpad.default_threads(100 * million) == 2


def test_default_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    big = 100 << 20
    for load, threads in ((0.0, 2), (0.9, 2), (1.0, 2), (1.1, 1), (2.0, 1), (6.0, 1)):
        _machine(monkeypatch, cores=2, load=load)
        assert fastpad.default_threads(big) == threads, load
    _machine(monkeypatch, cores=8, load=5.5)
    assert fastpad.default_threads(big) == 3


def test_busy_machine_pads_a_large_batch_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default's choice reaches the core, with the same output either way.
    from fastpad import _core, _pad

    ragged = _ragged(5, 8192, 400, 600)
    one = fastpad.pad(ragged, pad_token_id=0, threads=1, return_tensors="np")
    assert one["input_ids"].size >= 1 << 21
    pack = _core.pack
    seen: list[int] = []

    def spy(*arguments: Any) -> Any:
        seen.append(arguments[-1])
        return pack(*arguments)

    monkeypatch.setattr(_pad._core, "pack", spy)
    for load in (0.0, 8.0):
        _machine(monkeypatch, cores=2, load=load)
        _equal(one, fastpad.pad(ragged, pad_token_id=0, return_tensors="np"))
    assert seen == [2, 1]
