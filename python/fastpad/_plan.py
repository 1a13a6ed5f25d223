"""`fastpad.plan_batches`: token-budget batches of rows of similar length (C++ core)."""

from __future__ import annotations

import numbers
import secrets
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._ragged import Ragged

__all__ = ["plan_batches"]


def _positive(value: Any, name: str, *, optional: bool) -> int:
    if value is None and optional:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"fastpad.plan_batches: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"fastpad.plan_batches: {name} must be > 0, got {value}")
    return int(value)


def _lengths(lengths: Any) -> npt.NDArray[np.int64]:
    if isinstance(lengths, Ragged):
        return lengths.lengths
    if hasattr(lengths, "detach") and hasattr(lengths, "numpy"):  # a torch tensor
        lengths = lengths.detach().cpu().numpy()
    array = np.asarray(lengths)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(
            f"fastpad.plan_batches: lengths must be 1-D (one length per row), got shape "
            f"{array.shape}"
        )
    if array.dtype.kind not in "iu":
        raise TypeError(f"fastpad.plan_batches: lengths must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and int(array.max()) > 2**63 - 1:
        raise OverflowError("fastpad.plan_batches: a length does not fit int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def plan_batches(
    lengths: Any,
    *,
    max_tokens: int,
    max_batch_size: int | None = None,
    multiple_of: int | None = None,
    sort: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[npt.NDArray[np.int64]]:
    """Split rows into batches whose padded size stays within a token budget.

    A batch of ``n`` rows whose longest row has ``L`` tokens pads to ``n * L`` cells (``L``
    rounded up to `multiple_of`). Every batch stays within `max_tokens` cells, except that a row
    longer than the budget gets a batch of its own. With ``sort=True`` rows are taken longest
    first and packed greedily (like fairseq's ``batch_by_size``), so the rows of a batch have
    neighbouring lengths and little padding.

    Parameters
    ----------
    lengths : array_like of int, or Ragged
        Length of every row (1-D), or a `Ragged` whose row lengths are used.
    max_tokens : int
        Budget of padded cells (rows x padded length) per batch.
    max_batch_size : int, optional
        At most this many rows per batch.
    multiple_of : int, optional
        The padded length is the longest length rounded up to a multiple of this (match the
        ``pad_to_multiple_of`` given to `fastpad.pad`).
    sort : bool, default True
        Group rows by length (longest first). False packs rows greedily in the given order.
    shuffle : bool, default False
        Shuffle the order of the batches; with ``sort=True`` rows of equal length are also
        spread over batches at random. Reproducible for a given `seed` on every platform.
    seed : int, optional
        Seed of the shuffle (an int in ``[0, 2**64)``). None draws a fresh one.

    Returns
    -------
    list of numpy.ndarray
        One int64 array of row indices per batch; every index appears exactly once.

    Raises
    ------
    TypeError
        Lengths or options that are not integers.
    ValueError
        A negative length (row named), options <= 0, lengths that are not 1-D.

    Examples
    --------
    >>> batches = plan_batches([5, 3, 8, 2, 7], max_tokens=16)
    >>> [batch.tolist() for batch in batches]
    [[2, 4], [0, 1, 3]]
    """
    array = _lengths(lengths)
    budget = _positive(max_tokens, "max_tokens", optional=False)
    rows_limit = _positive(max_batch_size, "max_batch_size", optional=True)
    multiple = _positive(multiple_of, "multiple_of", optional=True)
    if seed is None:
        seed_value = secrets.randbits(64)
    else:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"fastpad.plan_batches: seed must be an int, got {type(seed).__name__}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"fastpad.plan_batches: seed must be in [0, 2**64), got {seed}")
        seed_value = int(seed)
    try:
        order, bounds = _core.plan_batches(
            array, budget, rows_limit, multiple, bool(sort), bool(shuffle), seed_value
        )
    except ValueError as error:
        raise ValueError(f"fastpad.{error}") from None
    return np.split(order, bounds[1:-1]) if order.size else []
