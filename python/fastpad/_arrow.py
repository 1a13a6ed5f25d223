"""`Ragged.from_arrow`: an Arrow list column (a `datasets` column) as values + offsets, zero-copy.

This module returns plain numpy arrays and never imports `Ragged`: `_ragged` imports it (lazily,
pyarrow being optional), not the other way round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["arrow_values_offsets"]

_NAME = "fastpad.Ragged.from_arrow"


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as error:
        raise ImportError(
            f"{_NAME} needs pyarrow, which is not installed: `pip install pyarrow`"
        ) from error
    return pyarrow


def _first_null(mask: Any) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


# (values, offsets): row r is values[offsets[r]:offsets[r + 1]], the layout `Ragged` wraps.
_Flat = tuple[npt.NDArray[Any], npt.NDArray[Any]]


def _from_list_array(pa: Any, array: Any, first_row: int = 0) -> _Flat:
    """One (possibly sliced) List/LargeList/FixedSizeList array; values are never copied.

    `first_row` is the index of the array's first row in the whole column (for error messages).
    """
    kind = array.type
    if array.null_count:
        row = first_row + _first_null(array.is_null())
        raise ValueError(f"{_NAME}: row {row} is null; fill or drop null rows first")
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        # .values ignores the slice: the slice starts `array.offset` lists into it.
        begin = array.offset * size
        offsets = np.arange(len(array) + 1, dtype=np.int64) * size
        end = begin + len(array) * size
    else:
        # .offsets is already the slice's window (len + 1 entries) into the unsliced .values.
        raw: npt.NDArray[Any] = array.offsets.to_numpy(zero_copy_only=True)
        begin = int(raw[0])
        end = int(raw[-1])
        offsets = raw - raw[0] if begin else raw
    child = array.values
    value_type = child.type
    if not pa.types.is_integer(value_type):
        raise TypeError(f"{_NAME}: the list values are {value_type}; expected integers (token ids)")
    window = child.slice(begin, end - begin)
    if window.null_count:
        position = _first_null(window.is_null())
        row = int(np.searchsorted(offsets, position, side="right")) - 1
        column = position - int(offsets[row])
        raise ValueError(f"{_NAME}: row {first_row + row} holds a null token at position {column}")
    values = window.to_numpy(zero_copy_only=True)
    return values, offsets


def _from_chunks(pa: Any, chunks: list[Any], value_type: Any) -> _Flat:
    firsts = np.cumsum([0] + [len(chunk) for chunk in chunks])[:-1]
    parts = [
        _from_list_array(pa, chunk, int(first)) for chunk, first in zip(chunks, firsts, strict=True)
    ]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        dtype = np.dtype(value_type.to_pandas_dtype())
        return np.zeros(0, dtype=dtype), np.zeros(1, dtype=np.int64)
    # Several chunks cannot share one buffer: one copy of the values, offsets shifted per chunk.
    values = np.concatenate(
        [part_values[: int(part_offsets[-1])] for part_values, part_offsets in parts]
    )
    shifts = np.cumsum([0] + [int(part_offsets[-1]) for _, part_offsets in parts[:-1]])
    offsets = np.concatenate(
        [np.zeros(1, dtype=np.int64)]
        + [
            part_offsets[1:].astype(np.int64) + shift
            for (_, part_offsets), shift in zip(parts, shifts, strict=True)
        ]
    )
    return values, offsets


def arrow_values_offsets(array: Any) -> _Flat:
    """The flat values and offsets of a pyarrow list column; see `Ragged.from_arrow`."""
    pa = _pyarrow()
    if not isinstance(array, pa.Array | pa.ChunkedArray):
        if hasattr(array, "__arrow_c_stream__"):
            array = pa.chunked_array(array)
        elif hasattr(array, "__arrow_c_array__"):
            array = pa.array(array)
        else:
            raise TypeError(
                f"{_NAME}: expected a pyarrow ListArray, LargeListArray or ChunkedArray of them, "
                f"got {type(array).__name__}"
            )
    kind = array.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise TypeError(
            f"{_NAME}: expected a column of integer lists (list<int>, large_list<int>), got {kind}"
        )
    if isinstance(array, pa.ChunkedArray):
        return _from_chunks(pa, [chunk for chunk in array.chunks if len(chunk)], kind.value_type)
    return _from_list_array(pa, array)
