"""Host buffers of `fastpad.Packer`: the layout of one batch in one buffer, and the pinned ring.

Every output of a batch (padded fields, the attention mask, per-example scalars; or the flat
tokens and row layout of a ragged transfer) lives in one uint8 host buffer at a 256-byte aligned
offset (a `Part`), so one copy moves the batch. On CUDA that buffer is a slot of a `PinnedRing`:
a slot is rewritten only after the event recorded behind its last copy has completed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ALIGN", "Layout", "Part", "PinnedRing", "aligned"]

# Device kernels load 16-byte vectors at best; 256 keeps every view on its own cache lines and
# every offset a multiple of any element size (so a view may reinterpret the buffer's dtype).
ALIGN = 256
# Smallest pinned slot: pinning is a driver call under a global lock, so tiny batches share one.
MIN_SLOT_BYTES = 1 << 16


def _torch() -> Any:
    """torch, imported lazily: the one place tests swap in a simulated CUDA (test_packer.py)."""
    import torch

    return torch


def aligned(nbytes: int) -> int:
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN


@functools.cache
def _numpy_dtype(dtype: Any) -> np.dtype[Any]:
    """The numpy dtype of an integer or bool torch dtype."""
    return np.dtype(str(dtype).removeprefix("torch."))


class Part:
    """Where one output lives in the batch buffer: byte offset, torch dtype and shape."""

    __slots__ = ("dtype", "nbytes", "offset", "shape")

    def __init__(self, offset: int, dtype: Any, shape: tuple[int, ...]) -> None:
        self.offset = offset
        self.dtype = dtype  # torch.dtype
        self.shape = shape
        count = 1
        for size in shape:
            count *= size
        self.nbytes = count * int(dtype.itemsize)

    def host_view(self, buffer: Any) -> Any:
        """Torch view of this part in the uint8 host `buffer` (any dtype, bfloat16 included)."""
        return buffer[self.offset : self.offset + self.nbytes].view(self.dtype).view(self.shape)

    def device_view(self, typed: Any) -> Any:
        """View of this part in the copied buffer `typed` (1-D, any dtype): one op, or two when
        the part's dtype differs from the buffer's (a dtype reinterpretation)."""
        if typed.dtype != self.dtype:
            typed = typed.view(self.dtype)
        strides = []
        stride = 1
        for size in reversed(self.shape):
            strides.append(stride)
            stride *= size
        return typed.as_strided(
            self.shape, tuple(reversed(strides)), self.offset // int(self.dtype.itemsize)
        )


class Layout:
    """Hands out aligned parts of one uint8 host tensor, acquired once the batch's size is known.

    The host side writes through numpy views (what the C++ core writes into) or, for dtypes
    numpy lacks (bfloat16), through `Part.host_view`; the device side makes views from the
    `Part` records once the bytes have been copied.
    """

    def __init__(self, acquire: Callable[[int], Any]) -> None:
        self._acquire = acquire
        self.buffer: Any = None  # torch uint8 tensor
        self.array: Any = None  # numpy view of `buffer`
        self.used = 0  # aligned start of the next part

    def reserve(self, nbytes: int) -> None:
        if self.buffer is None:
            self.buffer = self._acquire(aligned(max(nbytes, 1)))
            self.array = self.buffer.numpy()

    @property
    def nbytes(self) -> int:
        """Bytes a copy moves: every part, rounded up to the alignment (reserved up front)."""
        return self.used

    def take(self, dtype: Any, shape: tuple[int, ...]) -> Part:
        part = Part(self.used, dtype, shape)
        end = part.offset + part.nbytes
        if self.buffer is None or aligned(end) > self.array.shape[0]:
            # The sizes reserved up front cover every take; reaching this is a fastpad bug.
            raise RuntimeError("fastpad.Packer: batch layout exceeds its reserved buffer")
        self.used = aligned(end)
        return part

    def numpy_view(self, part: Part) -> Any:
        """Writable numpy view of an integer or bool part (what the C++ core writes into)."""
        view = self.array[part.offset : part.offset + part.nbytes]
        return view.view(_numpy_dtype(part.dtype)).reshape(part.shape)


class _Slot:
    """One pinned host buffer of the ring and the event recorded after its last copy."""

    __slots__ = ("buffer", "event")

    def __init__(self) -> None:
        self.buffer: Any = None
        self.event: Any = None


class PinnedRing:
    """`count` pinned host buffers reused round-robin, each guarded by its last copy's event.

    `counters` (the packer's, updated under its lock): ``pinned_allocations``, ``pinned_bytes``
    (every pinned byte allocated, including buffers grown out of the ring, which torch's caching
    host allocator keeps page-locked for later pinned allocations), ``ring_bytes`` (the ring
    now), ``reuses`` and ``waits``.
    """

    def __init__(self, count: int, counters: dict[str, int]) -> None:
        self._slots = [_Slot() for _ in range(count)]
        self._next = 0
        self._counters = counters
        self.current: _Slot | None = None  # the slot the batch in progress is packed into

    @property
    def slots(self) -> list[_Slot]:
        return self._slots

    def acquire(self, nbytes: int) -> Any:
        """The next slot's buffer, grown to at least `nbytes` once its last copy is done."""
        torch = _torch()
        slot = self._slots[self._next]
        self.current = slot
        self._next = (self._next + 1) % len(self._slots)
        if slot.event is not None and not slot.event.query():
            # The copy out of this slot is still in flight: writing now would corrupt it. The
            # event is blocking (cudaEventBlockingSync): this thread sleeps, it does not spin.
            slot.event.synchronize()
            self._counters["waits"] += 1
        if slot.buffer is not None and slot.buffer.numel() >= nbytes:
            self._counters["reuses"] += 1
            return slot.buffer
        old = 0 if slot.buffer is None else int(slot.buffer.numel())
        capacity = max(MIN_SLOT_BYTES, 2 * old)
        while capacity < nbytes:
            capacity *= 2
        # The old buffer's copy has completed (waited above), so dropping it is safe; torch's
        # host allocator keeps it pinned (counted in pinned_bytes, no longer in ring_bytes).
        slot.buffer = torch.empty(capacity, dtype=torch.uint8, pin_memory=True)
        self._counters["pinned_allocations"] += 1
        self._counters["pinned_bytes"] += capacity
        self._counters["ring_bytes"] += capacity - old
        return slot.buffer

    def guard(self, stream: Any) -> Any:
        """Record the current slot's event on `stream` (after its copy was queued there)."""
        torch = _torch()
        slot = self.current
        assert slot is not None
        if slot.event is None:
            slot.event = torch.cuda.Event(blocking=True)
        slot.event.record(stream)
        return slot.event
