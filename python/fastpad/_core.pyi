"""Type stub of the C++ extension; tests/test_stub.py keeps it in sync with the module."""

from typing import Any

import numpy as np
import numpy.typing as npt

def measure(
    fields: list[tuple[Any, ...]],
    padding: int,
    max_length: int,
    truncate: bool,
    multiple_of: int,
) -> tuple[npt.NDArray[np.int64], int]: ...
def pack(
    fields: list[tuple[Any, ...]],
    outputs: list[Any],
    pad_values: list[int],
    lengths: npt.NDArray[np.int64],
    mask: Any | None,
    width: int,
    keep_limit: int,
    pad_left: bool,
    truncate_left: bool,
    threads: int = 1,
) -> None: ...
def checked_cells(rows: int, width: int, itemsize: int) -> int: ...
def hardware_threads() -> int: ...
def concat_rows(
    name: str, rows: list[Any] | tuple[Any, ...], out: npt.NDArray[np.int64]
) -> None: ...
def plan_batches(
    lengths: npt.NDArray[np.int64],
    max_tokens: int,
    max_batch_size: int,
    multiple_of: int,
    sort: bool,
    shuffle: bool,
    seed: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def pack_ragged(
    fields: list[tuple[Any, ...]],
    outputs: list[Any],
    pad_values: list[int],
    lengths: npt.NDArray[np.int64],
    meta: Any,
    width: int,
    keep_limit: int,
    pad_left: bool,
    truncate_left: bool,
) -> int: ...
def exact_int_lists(rows: list[Any] | tuple[Any, ...]) -> bool: ...
def cached_empty(rows: int, width: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]: ...
def set_cache_limit(limit: int) -> None: ...
def clear_cache() -> None: ...
def cache_stats() -> dict[str, int]: ...
