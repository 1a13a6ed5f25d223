"""Buffers of `fastpad.Packer`: the layout of one batch in one buffer, the ring of slots, and
the CUDA calls of a copy.

Every output of a batch (padded fields, the attention mask, per-example scalars; or the flat
tokens and row layout of a ragged transfer) lives in one uint8 host buffer at a 256-byte aligned
offset (`slot_layout`, or a `Part` of a `Layout`), so one copy moves the batch. On CUDA that
buffer is a `Slot` of a `PinnedRing`: a pinned host buffer, rewritten only after the event
recorded behind its last copy has completed, and a device buffer of the same size that the copy
writes into, rewritten only once the batch last handed out from it is released. The CUDA calls
(current stream, stream switch, event record/wait/query) are bound once per packer
(`TorchCudaCalls`, or `PublicCudaCalls` where torch's C entry points are missing).
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ALIGN",
    "Layout",
    "Part",
    "PinnedRing",
    "PublicCudaCalls",
    "Slot",
    "TorchCudaCalls",
    "aligned",
    "cuda_calls",
    "hand_to",
    "slot_layout",
    "storage_use_count",
]

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


def slot_layout(cells: int, itemsizes: list[int]) -> tuple[list[int], int]:
    """Byte offsets of outputs of `cells` elements each (item sizes `itemsizes`) packed one
    after the other at `ALIGN`-aligned offsets, and the aligned end of the last one."""
    offsets = []
    used = 0
    for size in itemsizes:
        offsets.append(used)
        used += (cells * size + ALIGN - 1) // ALIGN * ALIGN
    return offsets, used


# -- the CUDA calls of a copy, looked up once ---------------------------------------------------


class PublicCudaCalls:
    """The CUDA calls a `PinnedRing` makes, through torch's public API.

    Used where torch's C entry points are missing (and by the simulated device of the tests):
    correct everywhere, but each call goes through torch's Python helpers (device-index lookups,
    stream contexts). `TorchCudaCalls` makes the same calls without them.
    """

    def __init__(self, torch: Any, device: Any, stream: Any) -> None:
        self._torch = torch
        self._cuda = torch.cuda
        self.device = device
        self.copy_stream = stream  # None: the consumer's (current) stream
        event = torch.cuda.Event
        # record(event, stream); wait(event, stream): `stream` waits for `event` on the device
        # (the host does not); query(event): whether it completed. Unbound: one call each.
        self.record: Callable[[Any, Any], None] = event.record
        self.wait: Callable[[Any, Any], None] = event.wait
        self.query: Callable[[Any], bool] = event.query

    def consumer(self) -> Any:
        """The current stream of the packer's device: the stream the batch is used on."""
        return self._cuda.current_stream(self.device)

    def copy(self, destination: Any, source: Any, consumer: Any, wait: Any) -> None:
        """``destination.copy_(source, non_blocking=True)`` on the copy stream, after `wait` (an
        event, or None) on that stream."""
        stream = self.copy_stream
        if stream is None:  # stream="current": the consumer's stream is current already
            if wait is not None:
                self.wait(wait, consumer)
            destination.copy_(source, non_blocking=True)
            return
        with self._cuda.stream(stream):
            if wait is not None:
                self.wait(wait, stream)
            destination.copy_(source, non_blocking=True)

    def allocate(self, nbytes: int, consumer: Any) -> Any:
        """A uint8 device buffer allocated on the copy stream (so the caching allocator orders
        its reuse after the copy)."""
        torch = self._torch
        stream = consumer if self.copy_stream is None else self.copy_stream
        with self._cuda.device(self.device), self._cuda.stream(stream):
            return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def event(self, blocking: bool) -> Any:
        return self._cuda.Event(blocking=blocking)


class TorchCudaCalls(PublicCudaCalls):
    """`PublicCudaCalls` through torch's C entry points, bound at construction.

    What ``torch.cuda.current_stream(device)`` and ``with torch.cuda.stream(s)`` do, without the
    Python around them (``_get_device_index``, ``torch.cuda.is_available()``, environment reads,
    context-manager objects): the current stream's ids come from ``_cuda_getCurrentStream``; its
    Stream object is made again only when they change; the copy stream is made current with
    ``_cuda_setStream`` (which also makes its device current) and the consumer's stream and the
    caller's device are restored after the copy, as ``torch.cuda.stream`` restores them.
    """

    def __init__(self, torch: Any, device: Any, stream: Any, c_api: Any = None) -> None:
        super().__init__(torch, device, stream)
        api = torch._C if c_api is None else c_api
        self._index = int(device.index)
        self._get_stream = api._cuda_getCurrentStream
        self._set_stream = api._cuda_setStream
        self._get_device = api._cuda_getDevice
        self._set_device = api._cuda_setDevice
        self._stream_type = torch.cuda.Stream
        # One device: the current device is always this one, never read or restored.
        self._single = torch.cuda.device_count() == 1
        self._copy_ids = (
            None
            if stream is None
            else (int(stream.stream_id), int(stream.device_index), int(stream.device_type))
        )
        self._consumer_ids: Any = None
        self._consumer: Any = None
        # The C methods under torch.cuda.Event's Python wrappers (which look up the current
        # stream when given none; a stream is always given here).
        event_base = api._CudaEventBase
        self.record = event_base.record
        self.wait = event_base.wait
        self.query = event_base.query

    def consumer(self) -> Any:
        ids = self._get_stream(self._index)
        if ids != self._consumer_ids:
            self._consumer = self._stream_type(
                stream_id=ids[0], device_index=ids[1], device_type=ids[2]
            )
            self._consumer_ids = ids
        return self._consumer

    def copy(self, destination: Any, source: Any, consumer: Any, wait: Any) -> None:
        copy_ids = self._copy_ids
        if copy_ids is None:  # stream="current": the copy queues on the consumer's stream
            if wait is not None:
                self.wait(wait, consumer)
            destination.copy_(source, non_blocking=True)
            return
        previous = self._index if self._single else self._get_device()
        self._set_stream(*copy_ids)
        try:
            if wait is not None:
                self.wait(wait, self.copy_stream)
            destination.copy_(source, non_blocking=True)
        finally:
            consumer_ids = self._consumer_ids
            self._set_stream(*consumer_ids)
            if previous != self._index:
                self._set_device(previous)


def cuda_calls(torch: Any, device: Any, stream: Any) -> PublicCudaCalls:
    """`TorchCudaCalls` for the real torch with the CUDA entry points it binds (the current
    stream as a (stream id, device index, device type) tuple, as torch >= 1.13 gives it), else
    `PublicCudaCalls`."""
    api: Any = getattr(torch, "_C", None)
    names = (
        "_cuda_getCurrentStream",
        "_cuda_setStream",
        "_cuda_getDevice",
        "_cuda_setDevice",
        "_CudaEventBase",
    )
    if isinstance(torch, types.ModuleType) and all(hasattr(api, name) for name in names):
        try:
            ids = api._cuda_getCurrentStream(int(device.index))
        except Exception:  # an entry point of another shape: the public API it is
            ids = None
        if isinstance(ids, tuple) and len(ids) == 3:
            return TorchCudaCalls(torch, device, stream)
    return PublicCudaCalls(torch, device, stream)


# -- the ring ------------------------------------------------------------------------------------


def storage_use_count(torch: Any) -> Callable[[int], int] | None:
    """``torch._C._storage_Use_Count`` (references to a storage, by its ``_cdata``), or None
    where this torch lacks it: the ring then cannot tell a released batch from a held one and
    takes every device buffer afresh from torch's caching allocator (`PinnedRing`)."""
    use_count = getattr(getattr(torch, "_C", None), "_storage_Use_Count", None)
    return use_count if callable(use_count) else None


# Slots whose device buffer holds a batch handed out, by the buffer's storage (``_cdata``):
# `hand_to` finds the slot of a tensor there. Weak: a ring that is collected leaves no entry.
_HANDED_SLOTS: weakref.WeakValueDictionary[int, Slot] = weakref.WeakValueDictionary()


def hand_to(tensor: Any, stream: Any) -> bool:
    """Tell the ring that owns `tensor`'s device buffer that its batch is used on `stream`.

    ``fastpad.prefetch`` calls this where a batch is taken, so the release of the batch is
    recorded on the stream that reads it (not on the stream it was prepared on). False when the
    tensor is not in a ring's current device buffer (the caller then ``record_stream``s it).
    """
    try:
        cdata = tensor.untyped_storage()._cdata
    except (AttributeError, RuntimeError):
        return False
    slot = _HANDED_SLOTS.get(cdata)
    if slot is None:
        return False
    with slot.lock:
        if slot.cdata != cdata or slot.device is None or not slot.handed:
            return False
        slot.consumer = stream
    return True


class Slot:
    """One slot of the ring: a pinned host buffer and a device buffer of the same capacity.

    ``event`` is recorded on the copy stream after the slot's last copy (the host buffer is
    rewritten only once it completed). The device buffer's outputs were handed out to the
    ``consumer`` stream (``handed``) until its storage is referenced by nothing but the ring
    (``base_uses`` references, the buffer and its typed views); then ``freed`` is recorded on
    that stream and the next copy into the buffer waits for it on the device. ``consumer`` is
    the stream current at the call, or the one `hand_to` names (``fastpad.prefetch``, where the
    batch is taken).
    """

    __slots__ = (
        "__weakref__",
        "alloc_stream",
        "array",
        "base_uses",
        "capacity",
        "cdata",
        "consumer",
        "device",
        "event",
        "free_pending",
        "freed",
        "handed",
        "host",
        "lock",
        "typed",
    )

    def __init__(self) -> None:
        self.host: Any = None  # pinned uint8 tensor
        self.array: Any = None  # numpy view of `host` (what the C++ core writes into)
        self.capacity = 0
        self.event: Any = None
        self.device: Any = None  # uint8 device tensor, `capacity` bytes
        self.typed: dict[Any, Any] = {}  # torch dtype -> 1-D view of `device`
        self.cdata = 0  # the device storage (torch._C._storage_Use_Count's argument)
        self.base_uses = 0
        self.alloc_stream: Any = None
        self.handed = False
        self.consumer: Any = None
        self.freed: Any = None
        self.free_pending = False
        self.lock: Any = None  # the packer's lock (`hand_to` changes `consumer` under it)

    @property
    def buffer(self) -> Any:
        """The pinned host buffer."""
        return self.host


class PinnedRing:
    """`count` slots reused round-robin: pinned host buffers and the device buffers they are
    copied into, each host buffer guarded by its last copy's event, each device buffer by the
    release of the batch last handed out from it.

    `counters` (the packer's, updated under its lock): ``pinned_allocations``, ``pinned_bytes``
    (every pinned byte allocated, including buffers grown out of the ring, which torch's caching
    host allocator keeps page-locked for later pinned allocations), ``ring_bytes`` (the ring
    now), ``reuses``, ``waits`` and ``device_allocations``.
    """

    def __init__(
        self, count: int, counters: dict[str, int], calls: Any = None, lock: Any = None
    ) -> None:
        self._lock = threading.Lock() if lock is None else lock
        self._slots: list[Slot] = []
        self._next = 0
        self._counters = counters
        self._calls = calls
        self.current: Slot | None = None  # the slot the batch in progress is packed into
        torch = _torch()
        self._int_dtypes = (torch.bool, torch.int8, torch.int32, torch.int64)
        # None: every device buffer is taken afresh (see `storage_use_count`).
        self._use_count = storage_use_count(torch)
        self.grow_to(count)

    @property
    def slots(self) -> list[Slot]:
        return self._slots

    def bind(self, calls: Any) -> None:
        """Set the CUDA calls (a packer binds its device at its first copy)."""
        self._calls = calls

    def grow_to(self, count: int) -> None:
        """At least `count` slots (new ones are allocated at their first use)."""
        while len(self._slots) < count:
            slot = Slot()
            slot.lock = self._lock
            self._slots.append(slot)

    def acquire(self, nbytes: int) -> Slot:
        """The next slot, its host buffer at least `nbytes` and its last copy done."""
        slot = self._slots[self._next]
        self.current = slot
        self._next = (self._next + 1) % len(self._slots)
        event = slot.event
        if event is not None and not self._calls.query(event):
            # The copy out of this slot is still in flight: writing now would corrupt it. The
            # event is blocking (cudaEventBlockingSync): this thread sleeps, it does not spin.
            event.synchronize()
            self._counters["waits"] += 1
        if slot.host is not None and nbytes <= slot.capacity:
            self._counters["reuses"] += 1
            return slot
        self._grow(slot, nbytes)
        return slot

    def _grow(self, slot: Slot, nbytes: int) -> None:
        torch = _torch()
        old = slot.capacity
        capacity = max(MIN_SLOT_BYTES, 2 * old)
        while capacity < nbytes:
            capacity *= 2
        # The old buffer's copy has completed (waited above), so dropping it is safe; torch's
        # host allocator keeps it pinned (counted in pinned_bytes, no longer in ring_bytes).
        slot.host = torch.empty(capacity, dtype=torch.uint8, pin_memory=True)
        slot.array = slot.host.numpy()
        slot.capacity = capacity
        if slot.device is not None:
            self._retire(slot)  # a device buffer of the new capacity comes with the next copy
        self._counters["pinned_allocations"] += 1
        self._counters["pinned_bytes"] += capacity
        self._counters["ring_bytes"] += capacity - old

    def _retire(self, slot: Slot) -> None:
        """Let go of the slot's device buffer (its batch may still be held and read).

        Its memory returns to the caching allocator's pool of the stream it was allocated on once
        nothing holds it; ``record_stream`` makes that wait for the consumer's work on it too.
        """
        device = slot.device
        if slot.consumer is not None and slot.consumer is not slot.alloc_stream and device.is_cuda:
            device.record_stream(slot.consumer)
        if _HANDED_SLOTS.get(slot.cdata) is slot:
            del _HANDED_SLOTS[slot.cdata]
        slot.device = None
        slot.typed = {}
        slot.cdata = 0
        slot.handed = False
        slot.free_pending = False

    def ship(self, slot: Slot, nbytes: int, consumer: Any) -> Slot:
        """Copy the first `nbytes` of the slot's host buffer into its device buffer (one
        ``copy_`` on the copy stream), and order the consumer stream after it.

        The device buffer is rewritten only after the batch last handed out from it was
        released (no tensor of it held) and the consumer's work queued before that release has
        run (a device-side wait); a batch still held keeps its buffer and the slot takes a new
        one (``device_allocations``).
        """
        calls = self._calls
        use_count = self._use_count
        side = calls.copy_stream is not None
        for other in self._slots:
            # Without a use count a handed-out batch counts as held for ever.
            if other.handed and use_count is not None and use_count(other.cdata) <= other.base_uses:
                # Released since the last call: every read of it was queued before now. On a
                # side stream the next copy into it waits for an event recorded now (early, so
                # the wait does not take in later work); on the consumer's stream a copy queues
                # behind those reads anyway, unless the current stream changed in between.
                other.handed = False
                other.free_pending = True
                if side:
                    self._record_free(other)
        copy_stream = calls.copy_stream if side else consumer
        wait = None
        if slot.handed:  # still held: the batch keeps its buffer
            self._retire(slot)
        elif slot.free_pending:
            slot.free_pending = False
            if slot.consumer is not copy_stream:
                if not side:
                    self._record_free(slot)
                wait = slot.freed
        if slot.device is None:
            self._allocate_device(slot, consumer)
        calls.copy(slot.device[:nbytes], slot.host[:nbytes], consumer, wait)
        event = slot.event
        if event is None:
            event = slot.event = calls.event(True)
        calls.record(event, copy_stream)
        if copy_stream is not consumer:
            calls.wait(event, consumer)
        slot.handed = True
        slot.consumer = consumer
        return slot

    def _record_free(self, slot: Slot) -> None:
        """Record the slot's release event on the stream its batch was handed out to."""
        calls = self._calls
        if slot.freed is None:
            slot.freed = calls.event(False)
        calls.record(slot.freed, slot.consumer)

    def _allocate_device(self, slot: Slot, consumer: Any) -> None:
        calls = self._calls
        slot.device = calls.allocate(slot.capacity, consumer)
        slot.alloc_stream = consumer if calls.copy_stream is None else calls.copy_stream
        # The integer and bool views the outputs are carved from, made once per buffer.
        slot.typed = {dtype: slot.device.view(dtype) for dtype in self._int_dtypes}
        slot.cdata = slot.device.untyped_storage()._cdata
        use_count = self._use_count
        slot.base_uses = 0 if use_count is None else use_count(slot.cdata)
        _HANDED_SLOTS[slot.cdata] = slot
        self._counters["device_allocations"] += 1

    @staticmethod
    def typed(slot: Slot, dtype: Any) -> Any:
        """1-D view of the slot's device buffer as `dtype` (made once per buffer)."""
        view = slot.typed.get(dtype)
        if view is None:
            view = slot.typed[dtype] = slot.device.view(dtype)
            slot.base_uses += 1
        return view
