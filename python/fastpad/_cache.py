"""Output memory that stays warm between calls: fastpad's cache of output blocks.

Outputs of at least `MIN_CELLS` cells (``pad``'s ids, masks and other fields with ``"pt"`` or
``"np"`` outputs, unpinned; ``flatten``'s tokens) are numpy arrays over blocks of a process-wide
C++ cache (``csrc/buffer_cache.cpp``). A block goes back to the cache when the last array, view or
tensor using it dies (``torch.from_numpy`` keeps the array alive, the array keeps the block), so
the next output of its size class is written into memory that is already mapped instead of
freshly page-faulted and zero-filled: every process runs at the same speed, whatever it allocated
before. Pinned outputs keep going through torch's pinned allocator.

The cache keeps at most `cache_limit` idle bytes (default 128 MiB), least recently released
blocks freed first; ``set_cache_limit(0)`` turns it off (outputs are then allocated as without it).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core

__all__ = ["CacheInfo", "cache_info", "clear_cache", "empty", "set_cache_limit"]

# Outputs below this many cells (16 KiB of int64) come from np.empty: numpy and malloc keep such
# sizes warm themselves, and np.empty is some 10-40 ns faster per buffer.
MIN_CELLS = 2048

# Whether outputs come from the cache (False after set_cache_limit(0)). Read on every call.
enabled = True

DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name) for name in ("bool", "int8", "int32", "int64")
}


@dataclass(frozen=True)
class CacheInfo:
    """Counters of fastpad's output cache (this process).

    Attributes
    ----------
    limit : int
        Most idle bytes kept (0: the cache is off).
    idle_bytes, idle_blocks : int
        Blocks kept for reuse, nothing references them.
    live_bytes, live_blocks : int
        Blocks in use by arrays/tensors that are still alive.
    hits, misses : int
        Outputs served by an idle block / by a newly allocated one.
    evictions : int
        Released blocks freed to stay within the limit.
    """

    limit: int
    idle_bytes: int
    idle_blocks: int
    live_bytes: int
    live_blocks: int
    hits: int
    misses: int
    evictions: int


def set_cache_limit(limit: int) -> None:
    """Set the most idle bytes fastpad keeps for reuse as output memory (0 turns the cache off).

    Idle blocks beyond the new limit are freed at once. Outputs still in use are never touched;
    their blocks come back (or are freed) when they die.

    Parameters
    ----------
    limit : int
        Bytes, >= 0. The default is 128 MiB.

    Examples
    --------
    >>> import fastpad
    >>> fastpad.set_cache_limit(64 << 20)
    >>> fastpad.cache_info().limit
    67108864
    >>> fastpad.set_cache_limit(128 << 20)
    """
    global enabled
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral):
        raise TypeError(
            f"fastpad.set_cache_limit: limit must be an int, got {type(limit).__name__}"
        )
    limit = int(limit)
    if limit < 0:
        raise ValueError(f"fastpad.set_cache_limit: limit must be >= 0 bytes, got {limit}")
    _core.set_cache_limit(limit)
    enabled = limit > 0


def cache_info() -> CacheInfo:
    """Counters of the output cache: limit, idle and live blocks, hits, misses, evictions."""
    return CacheInfo(**_core.cache_stats())


def clear_cache() -> None:
    """Free every idle block of the output cache (blocks in use come back when they die)."""
    _core.clear_cache()


def empty(rows: int, width: int, dtype: str) -> Any:
    """An uninitialized, writable, C-contiguous ``[rows, width]`` array of `dtype`.

    From the cache when it is on and the array has at least `MIN_CELLS` cells, else np.empty.
    """
    if enabled and rows * width >= MIN_CELLS:
        return _core.cached_empty(rows, width, DTYPES[dtype])
    return np.empty((rows, width), DTYPES[dtype])
