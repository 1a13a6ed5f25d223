"""Checks and conversions the fast paths share: argument binding, allow-list tests, allocation."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core
from .._inputs import Field
from .._pad import _torch
from .._ragged import Ragged
from . import common

__all__ = [
    "alloc_torch",
    "allocator",
    "bind",
    "is_int_vector",
    "is_option",
    "padding_strategy",
    "rectangle",
    "tensor_kind",
    "unchanged",
    "vector_rows",
]

# transformers' np.asarray of Python ints is int64 wherever numpy's default integer is.
_NUMPY_INT64 = np.asarray([1]).dtype == np.int64


def tensor_kind(return_tensors: Any) -> str | None:
    """The kind ("pt" or "np") of the return_tensors values the fast paths produce, or None."""
    if type(return_tensors) is str:
        value = return_tensors
    else:
        assert common.TF is not None
        if not isinstance(return_tensors, common.TF.TensorType):
            return None
        value = return_tensors.value
    if value == "pt" or (value == "np" and _NUMPY_INT64):
        return value
    return None


_CTYPES = {"int64": ctypes.c_int64}


def alloc_torch(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    """A fresh ``torch.empty`` tensor and a writable numpy view of its memory.

    The tensors are then indistinguishable from those of ``torch.tensor``: memory from torch's
    allocator in a resizable storage. (``Tensor.numpy()`` would mark the storage not resizable
    for good; numpy memory wrapped by torch is not resizable either.) The view borrows the
    memory without owning it: it is used only while the caller holds the tensor.
    """
    torch = _torch()
    tensor = torch.empty((rows, width), dtype=getattr(torch, dtype))
    cells = rows * width
    if cells == 0:
        return tensor, np.empty((rows, width), dtype=dtype)  # nothing is written
    memory = (_CTYPES[dtype] * cells).from_address(tensor.data_ptr())
    return tensor, np.frombuffer(memoryview(memory), dtype=dtype).reshape(rows, width)


def alloc_numpy(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    """A fresh array that owns its memory, as transformers' ``np.array`` gives (not a block of
    fastpad's output cache, whose arrays do not own their data)."""
    array = np.empty((rows, width), dtype=dtype)
    return array, array


def allocator(kind: str) -> Callable[[int, int, str], tuple[Any, Any]]:
    return alloc_numpy if kind == "np" else alloc_torch


def is_int_vector(row: Any, allow_tensor: bool = True) -> bool:
    """A 1-D integer (not bool) numpy array, or CPU torch tensor: `tolist()` gives exact ints."""
    kind = type(row)
    if kind is np.ndarray:
        return bool(row.ndim == 1 and row.dtype.kind in "iu")
    torch = sys.modules.get("torch")
    if allow_tensor and torch is not None and kind is torch.Tensor:
        return bool(
            row.ndim == 1
            and row.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
            and row.device.type == "cpu"
        )
    return False


def vector_rows(column: Any) -> Field | None:
    """A field of 1-D integer arrays, or of tensors, for the core; None for a mix of both.

    Tensors are concatenated by torch first: the core would view each one through
    ``Tensor.numpy()``, which marks the caller's storage as no longer resizable.
    """
    if all(type(row) is np.ndarray for row in column):
        return Field("rows", column)
    torch = sys.modules["torch"]
    if not all(type(row) is torch.Tensor for row in column):
        return None
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum([row.shape[0] for row in column], out=offsets[1:])
    return Field("ragged", Ragged(torch.cat(column).numpy(), offsets))


def rectangle(rows: Any, kind: str) -> Any | None:
    """``torch.tensor(rows)`` / ``np.asarray(rows)`` for a list of equal-length, non-empty lists
    of exact ints (int64 [B, L]), written by the core; None for anything else."""
    if type(rows) is not list or not rows or not _core.exact_int_lists(rows):
        return None
    specs = [("rows", 0, rows)]
    try:
        # padding code 2 (do not pad): a ValueError when the rows differ in length.
        lengths, width = _core.measure(specs, 2, -1, False, 0)
    except ValueError:
        return None
    if width == 0:
        return None  # no cells: transformers' dtype varies by release (float32 before 4.57)
    result, view = allocator(kind)(len(rows), width, "int64")
    _core.pack(specs, [view], [0], lengths, None, width, -1, False, False, 1)
    return result


def bind(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...], defaults: dict[str, Any]
) -> dict[str, Any] | None:
    """Arguments by name as the original signature binds them; None when it would not bind
    them all by itself (the original then runs and reports them)."""
    if len(args) > len(names):
        return None
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in bound or key not in defaults:
            return None
        bound[key] = value
    for key in names:
        if key not in bound:
            if key not in defaults:
                return None
            bound[key] = defaults[key]
    return bound


def unchanged(tokenizer: Any, methods: dict[str, Any]) -> bool:
    """Neither the tokenizer's class nor the instance replaces any of `methods`."""
    kind = type(tokenizer)
    own = getattr(tokenizer, "__dict__", {})
    return all(
        getattr(kind, name, None) is function and name not in own
        for name, function in methods.items()
    )


def padding_strategy(value: Any) -> Any:
    """The string of a PaddingStrategy (a str enum), else the value itself."""
    assert common.TF is not None
    return value.value if isinstance(value, common.TF.PaddingStrategy) else value


def is_option(value: Any, minimum: int) -> bool:
    return value is None or (type(value) is int and value >= minimum)
