"""`Ragged`: a batch of variable-length integer rows in flat (values + offsets) layout."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Ragged"]


def _as_int_vector(array: Any, name: str) -> npt.NDArray[np.integer[Any]]:
    """View `array` (numpy array, CPU torch tensor, buffer or sequence) as a 1-D integer array."""
    if hasattr(array, "detach") and hasattr(
        array, "numpy"
    ):  # a torch tensor, without importing torch
        if array.device.type != "cpu":
            raise ValueError(f"Ragged: {name} must be on the CPU, got a tensor on {array.device}")
        array = array.detach().numpy()
    result = np.asarray(array)
    if result.ndim != 1:
        raise ValueError(f"Ragged: {name} must be 1-D, got shape {result.shape}")
    # Strided views are copied once here; contiguous arrays are used as they are.
    result = np.ascontiguousarray(result)
    if result.size == 0 and result.dtype.kind == "f":
        result = result.astype(np.int64)  # np.asarray([]) is float64
    if result.dtype.kind not in "iu":
        raise TypeError(f"Ragged: {name} must hold integers, got dtype {result.dtype}")
    if not result.dtype.isnative:  # the other byte order ('>i4'): the same values, native
        result = result.astype(result.dtype.newbyteorder("="))
    return result


class Ragged:
    """A ragged batch stored flat: row ``r`` is ``values[offsets[r]:offsets[r + 1]]``.

    The layout of Arrow list columns and of token streams in servers. `fastpad.pad` reads it
    without copying and with the GIL released.

    Parameters
    ----------
    values : array_like
        1-D integer array (numpy array, CPU torch tensor or sequence) of all tokens, row after row.
    offsets : array_like
        1-D integer array of ``B + 1`` non-decreasing entries, starting at 0 and ending at most at
        ``len(values)``. Checked when the batch is packed.

    Examples
    --------
    >>> import numpy as np
    >>> batch = Ragged(np.array([101, 7592, 102, 101, 102]), np.array([0, 3, 5]))
    >>> len(batch), batch[1].tolist()
    (2, [101, 102])
    """

    __slots__ = ("offsets", "values")

    values: npt.NDArray[np.integer[Any]]
    offsets: npt.NDArray[np.integer[Any]]

    def __init__(self, values: Any, offsets: Any) -> None:
        self.values = _as_int_vector(values, "values")
        self.offsets = _as_int_vector(offsets, "offsets")
        if self.offsets.size == 0:
            raise ValueError("Ragged: offsets must hold at least one entry (0)")

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]] | Sequence[Any]) -> Ragged:
        """Build a `Ragged` from a sequence of rows (lists of ints or 1-D arrays).

        Parameters
        ----------
        rows : sequence of sequences of int
            The rows; this copies them into one flat array.

        Returns
        -------
        Ragged
        """
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(rows) == 0:
            return cls(np.zeros(0, dtype=np.int64), offsets)
        values = np.concatenate([np.asarray(row, dtype=np.int64).reshape(-1) for row in rows])
        return cls(values, offsets)

    @classmethod
    def from_arrow(cls, array: Any) -> Ragged:
        """Wrap a pyarrow list column without copying its tokens.

        Parameters
        ----------
        array : pyarrow.ListArray, LargeListArray, FixedSizeListArray or ChunkedArray of them
            A column of integer lists, e.g. ``dataset.data.column("input_ids")`` of a
            `datasets.Dataset`; objects exporting ``__arrow_c_stream__`` also work. Sliced arrays
            are read through their offsets. A single array (or one chunk) is zero-copy; several
            chunks are concatenated once.

        Returns
        -------
        Ragged
            Values are a read-only view of the Arrow buffer; offsets start at 0.

        Raises
        ------
        ImportError
            pyarrow is not installed.
        TypeError
            Not a list column, or values that are not integers.
        ValueError
            A null row or a null token (row named).
        """
        from ._arrow import arrow_values_offsets  # pyarrow is optional: imported on use

        return cls(*arrow_values_offsets(array))

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """Length of every row, shape ``[B]``."""
        return np.diff(self.offsets).astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self.offsets.size) - 1

    def __getitem__(self, row: int) -> npt.NDArray[np.integer[Any]]:
        rows = len(self)
        if not -rows <= row < rows:
            raise IndexError(f"Ragged: row {row} out of range for {rows} rows")
        row %= rows
        return self.values[int(self.offsets[row]) : int(self.offsets[row + 1])]

    def __iter__(self) -> Iterator[npt.NDArray[np.integer[Any]]]:
        for row in range(len(self)):
            yield self[row]

    def __repr__(self) -> str:
        return f"Ragged(rows={len(self)}, values={self.values.size}, dtype={self.values.dtype})"
