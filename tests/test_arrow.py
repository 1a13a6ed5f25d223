"""fastpad.Ragged.from_arrow: list columns (sliced, chunked, large), zero-copy where possible."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpad

pa = pytest.importorskip("pyarrow")

rows_strategy = st.lists(st.lists(st.integers(0, 30_000), max_size=12), max_size=20)


def as_lists(ragged: fastpad.Ragged) -> list[list[int]]:
    return [row.tolist() for row in ragged]


def list_type(kind: str, value_type: Any) -> Any:
    return pa.large_list(value_type) if kind == "large" else pa.list_(value_type)


@settings(max_examples=200, deadline=None)
@given(
    rows_strategy,
    st.sampled_from(["list", "large"]),
    st.sampled_from(["int32", "int64", "uint16"]),
    st.data(),
)
def test_sliced_arrays_match_python_rows(
    rows: list[list[int]], kind: str, value_type: str, data: Any
) -> None:
    array = pa.array(rows, type=list_type(kind, pa.type_for_alias(value_type)))
    start = data.draw(st.integers(0, len(rows)))
    stop = data.draw(st.integers(start, len(rows)))
    sliced = array.slice(start, stop - start)
    ragged = fastpad.Ragged.from_arrow(sliced)
    assert as_lists(ragged) == rows[start:stop]
    assert int(ragged.offsets[0]) == 0
    assert ragged.values.dtype == np.dtype(value_type)
    if ragged.values.size:
        # Zero-copy: the values are a view of the Arrow child buffer.
        assert np.shares_memory(ragged.values, array.values.to_numpy())
    # And the batch pads like the Python rows.
    if rows[start:stop]:
        expected = fastpad.pad(rows[start:stop], pad_token_id=0, return_tensors="np")
        actual = fastpad.pad(ragged, pad_token_id=0, return_tensors="np")
        for key in expected:
            np.testing.assert_array_equal(actual[key], expected[key])


@settings(max_examples=100, deadline=None)
@given(st.lists(rows_strategy, max_size=5), st.sampled_from(["list", "large"]))
def test_chunked_arrays(chunks: list[list[list[int]]], kind: str) -> None:
    kind_type = list_type(kind, pa.int64())
    column = pa.chunked_array([pa.array(rows, type=kind_type) for rows in chunks], type=kind_type)
    ragged = fastpad.Ragged.from_arrow(column)
    assert as_lists(ragged) == [row for rows in chunks for row in rows]
    assert ragged.values.dtype == np.int64


def test_single_chunk_is_zero_copy_and_sliced_chunks_work() -> None:
    array = pa.array([[1, 2, 3], [4], [], [5, 6]], type=pa.list_(pa.int32()))
    ragged = fastpad.Ragged.from_arrow(pa.chunked_array([array]))
    assert np.shares_memory(ragged.values, array.values.to_numpy())
    column = pa.chunked_array([array.slice(1, 2), array.slice(3)])
    assert as_lists(fastpad.Ragged.from_arrow(column)) == [[4], [], [5, 6]]


def test_fixed_size_lists() -> None:
    array = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.int64)), 3)
    assert as_lists(fastpad.Ragged.from_arrow(array.slice(1, 2))) == [[3, 4, 5], [6, 7, 8]]


def test_empty_inputs() -> None:
    empty = fastpad.Ragged.from_arrow(pa.array([], type=pa.list_(pa.int16())))
    assert len(empty) == 0 and empty.values.dtype == np.int16
    chunked = fastpad.Ragged.from_arrow(pa.chunked_array([], type=pa.large_list(pa.int32())))
    assert len(chunked) == 0 and chunked.values.dtype == np.int32


def test_table_column_like_a_datasets_column() -> None:
    table = pa.table({"input_ids": [[101, 7592, 102], [101, 102]], "label": [0, 1]})
    ragged = fastpad.Ragged.from_arrow(table.column("input_ids"))
    batch = fastpad.pad(ragged, pad_token_id=0, return_tensors="np")
    assert batch["input_ids"].tolist() == [[101, 7592, 102], [101, 102, 0]]


def test_nulls_are_rejected_with_the_row() -> None:
    with pytest.raises(ValueError, match="row 1 is null"):
        fastpad.Ragged.from_arrow(pa.array([[1], None, [2]]))
    with pytest.raises(ValueError, match="row 2 holds a null token at position 1"):
        fastpad.Ragged.from_arrow(pa.array([[1], [], [2, None]]))
    # A null outside the slice is not in the batch.
    assert as_lists(fastpad.Ragged.from_arrow(pa.array([[1], None, [2]]).slice(2))) == [[2]]
    # Rows are numbered over the whole column, not per chunk.
    with pytest.raises(ValueError, match="row 1 is null"):
        fastpad.Ragged.from_arrow(pa.chunked_array([pa.array([[1]]), pa.array([None, [2]])]))
    with pytest.raises(ValueError, match="row 3 holds a null token at position 0"):
        fastpad.Ragged.from_arrow(pa.chunked_array([pa.array([[1], [2]]), pa.array([[3], [None]])]))


def test_wrong_types() -> None:
    with pytest.raises(TypeError, match="integers"):
        fastpad.Ragged.from_arrow(pa.array([["a", "b"]]))
    with pytest.raises(TypeError, match="integers"):
        fastpad.Ragged.from_arrow(pa.array([[1.5]]))
    with pytest.raises(TypeError, match="integers"):
        fastpad.Ragged.from_arrow(pa.array([[[1, 2]]]))
    with pytest.raises(TypeError, match="integer lists"):
        fastpad.Ragged.from_arrow(pa.array([1, 2]))
    with pytest.raises(TypeError, match="ListArray"):
        fastpad.Ragged.from_arrow([[1, 2]])


def test_missing_pyarrow_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        fastpad.Ragged.from_arrow(object())
