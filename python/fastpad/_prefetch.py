"""Host prep hidden behind the model: `fastpad.prefetch`.

A model loop on a GPU alternates host prep (tokenize, pad, pin, start the copy) and model work.
When the loop reads results back every batch (``.cpu()``, ``.item()``, a loss logged), the GPU
idles while the host prepares the next batch, and the host idles while the GPU runs. `prefetch`
prepares batches ``depth`` ahead in one background thread: batch k+1 is tokenized, padded into
pinned memory and its copy started while the model runs batch k. The thread spends its time in
the tokenizer's and fastpad's C++ code and in CUDA calls; the model's thread waits for the GPU
with the GIL released, so both proceed.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import _ring

__all__ = ["PrefetchStats", "Prefetcher", "prefetch"]

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")

# How long `Prefetcher.close` waits, by default, for a `prepare` in progress to finish (seconds).
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PrefetchStats:
    """Counters of a `Prefetcher` (a snapshot; see `Prefetcher.stats`).

    Attributes
    ----------
    batches : int
        Batches handed to the consumer.
    prepare_s : float
        Seconds the background thread spent getting the items (a DataLoader collates then) and
        preparing them (``prepare`` and the device copy): the host prep the loop would
        otherwise run itself.
    wait_s : float
        Seconds the consumer waited for a batch that was not ready yet: the host prep that was
        not hidden (0 when every batch was ready when asked for).
    """

    batches: int = 0
    prepare_s: float = 0.0
    wait_s: float = 0.0


class _Done:
    """The worker's end-of-items marker."""


_DONE = _Done()


def _torch_if_imported() -> Any:
    """torch when something already imported it (prefetch never imports torch itself); the one
    place tests swap in a simulated CUDA (tests/test_prefetch_cuda_order.py)."""
    return sys.modules.get("torch")


def _to_device(batch: Any, device: Any) -> Any:
    """`batch` with every tensor copied to `device` with ``non_blocking=True`` (asynchronous
    from pinned memory): a tensor, a Mapping of them (``Batch``, ``BatchEncoding`` and dicts keep
    their type), or a list/tuple of them; other values are kept as they are."""
    if hasattr(batch, "is_pinned") and hasattr(batch, "to"):  # a tensor
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        moved = {key: _to_device(value, device) for key, value in batch.items()}
        if type(batch) is dict:
            return moved
        rebuild: Any = type(batch)
        try:
            return rebuild(moved)
        except Exception:  # a Mapping type that cannot be rebuilt from a dict
            return moved
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _tensors(batch: Any) -> Iterator[Any]:
    """The tensors in `batch` (a tensor, a Mapping or list/tuple of them, nested)."""
    if hasattr(batch, "record_stream") and hasattr(batch, "untyped_storage"):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from _tensors(value)
    elif isinstance(batch, list | tuple):
        for value in batch:
            yield from _tensors(value)


class _StreamOrder:
    """CUDA stream order between the worker and the stream where each batch is taken.

    The worker runs on a stream of its own (`stream`), so nothing it queues (a Packer's wait for
    its copy, a ``non_blocking`` copy, a ragged rebuild) lands in the middle of the model's work.
    After each batch it records an event on that stream (`mark`); `take`, in ``__next__``, makes
    the stream current *there* wait for it on the device, tells a Packer's ring that its slot's
    batch is used on that stream, and ``record_stream``s every other CUDA tensor of the batch on
    it (memory the worker allocated on its own stream is then not reused before that stream's
    work on it has run).
    """

    def __init__(self, torch: Any, device: Any) -> None:
        self._cuda = torch.cuda
        self.device = device
        self.stream = torch.cuda.Stream(device=device)
        self._event = torch.cuda.Event

    def enter_worker(self) -> None:
        self._cuda.set_stream(self.stream)  # also makes its device current in the worker

    def mark(self) -> Any:
        event = self._event()
        event.record(self.stream)
        return event

    def take(self, batch: Any, event: Any) -> None:
        consumer = self._cuda.current_stream(self.device)
        consumer.wait_event(event)
        for tensor in _tensors(batch):
            if not _ring.hand_to(tensor, consumer) and tensor.device.type == "cuda":
                tensor.record_stream(consumer)


def _stream_order(prepare: Any, device: Any) -> _StreamOrder | None:
    """The stream order for batches that go to a CUDA device (None off CUDA)."""
    torch = _torch_if_imported()
    if torch is None or not torch.cuda.is_available():
        return None
    target = getattr(prepare, "device", None) if device is None else device
    try:
        target = torch.device(target) if target is not None else None
    except (TypeError, RuntimeError, ValueError):
        target = None
    if target is not None and target.type != "cuda":
        return None
    if target is None or target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return _StreamOrder(torch, target)


class _Shared:
    """What the worker thread and its `Prefetcher` share. The thread holds this, never the
    Prefetcher itself, so an abandoned Prefetcher is collected and its ``__del__`` stops it.

    The queue is a deque under a condition: once `shut` has run (under the condition) the worker
    can put nothing more, so no prepared batch outlives ``close()`` in the queue.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.entries: collections.deque[tuple[Any, Any, BaseException | None]] = collections.deque()
        # Re-entrant: a garbage collection inside a critical section may run an abandoned
        # Prefetcher's __del__, which shuts its queue.
        self.condition = threading.Condition(threading.RLock())
        self.stopped = False
        self.in_source = False  # the worker waits in next(items): it holds no prepared batch
        self.lock = threading.Lock()
        self.prepare_s = 0.0

    def put(self, entry: tuple[Any, Any, BaseException | None]) -> bool:
        """Queue `entry` once there is room; False (and nothing queued) once shut."""
        with self.condition:
            while not self.stopped and len(self.entries) >= self.depth:
                self.condition.wait()
            if self.stopped:
                return False
            self.entries.append(entry)
            self.condition.notify_all()
            return True

    def get(self) -> tuple[Any, Any, BaseException | None]:
        with self.condition:
            while not self.entries:
                self.condition.wait()
            entry = self.entries.popleft()
            self.condition.notify_all()
            return entry

    def shut(self) -> list[tuple[Any, Any, BaseException | None]]:
        """Stop the worker's puts and take what it queued (dropped by the caller, outside the
        condition: dropping a batch may run arbitrary code)."""
        with self.condition:
            self.stopped = True
            queued = list(self.entries)
            self.entries.clear()
            self.condition.notify_all()
        return queued


def _work(
    shared: _Shared,
    items: Iterator[Any],
    prepare: Callable[[Any], Any] | None,
    device: Any,
    order: _StreamOrder | None,
) -> None:
    """The worker thread: prepare each item (and copy it to `device`), queue it in order."""
    try:
        if order is not None:
            order.enter_worker()
        while not shared.stopped:
            started = time.perf_counter()  # getting the item is host prep too (a collate)
            shared.in_source = True
            try:
                item = next(items)
            except StopIteration:
                break
            finally:
                shared.in_source = False
            if shared.stopped:  # closed while the source was waited for: prepare nothing
                return
            if prepare is None:
                batch = item
            else:
                try:
                    batch = prepare(item)
                except StopIteration as error:
                    # As PEP 479 for generators: never a silent end of the loop.
                    raise RuntimeError("fastpad.prefetch: prepare raised StopIteration") from error
            if device is not None:
                batch = _to_device(batch, device)
            event = None if order is None else order.mark()
            elapsed = time.perf_counter() - started
            with shared.lock:
                shared.prepare_s += elapsed
            if not shared.put((batch, event, None)):
                return
            del batch, item  # the queue holds the batch; nothing here keeps it alive
        shared.put((_DONE, None, None))
    except BaseException as error:  # handed to the consumer, raised there
        shared.put((None, None, error))


class Prefetcher(Generic[Prepared]):
    """Iterator over prepared batches, prepared `depth` ahead by one background thread.

    Made by `prefetch`; see there. Iterate it once. ``close()`` (or leaving a ``with`` block)
    stops the thread and drops the batches prepared ahead; an abandoned Prefetcher stops it when
    it is garbage collected.
    """

    def __init__(
        self,
        items: Iterable[Any],
        prepare: Callable[[Any], Prepared] | None,
        device: Any,
        depth: int,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"fastpad.prefetch: depth must be an int >= 1, got {depth!r}")
        if prepare is not None and not callable(prepare):
            raise TypeError(
                f"fastpad.prefetch: prepare must be callable, got {type(prepare).__name__}"
            )
        reserve = getattr(prepare, "reserve_buffers", None)
        if callable(reserve):  # a Packer: a free slot for every copy (see `prefetch`)
            reserve(depth + HELD_BEYOND_DEPTH)
        self._shared = _Shared(depth)
        self._batches = 0
        self._wait_s = 0.0
        self._finished = False
        self._order = _stream_order(prepare, device)
        self._thread = threading.Thread(
            target=_work,
            args=(self._shared, iter(items), prepare, device, self._order),
            name="fastpad-prefetch",
            daemon=True,
        )
        self._thread.start()

    @property
    def stats(self) -> PrefetchStats:
        """Snapshot of the counters (`PrefetchStats`)."""
        with self._shared.lock:
            return PrefetchStats(self._batches, self._shared.prepare_s, self._wait_s)

    @property
    def stream(self) -> Any:
        """The CUDA stream the background thread prepares on (None off CUDA)."""
        return None if self._order is None else self._order.stream

    def __iter__(self) -> Iterator[Prepared]:
        return self

    def __next__(self) -> Prepared:
        if self._finished:
            raise StopIteration
        started = time.perf_counter()
        batch, event, error = self._shared.get()
        waited = time.perf_counter() - started
        if error is not None:
            self._finish()
            raise error
        if batch is _DONE:
            self._finish()
            raise StopIteration
        if event is not None:
            self._order.take(batch, event)  # type: ignore[union-attr]
        with self._shared.lock:
            self._wait_s += waited
            self._batches += 1
        return batch  # type: ignore[no-any-return]

    def _finish(self) -> None:
        self._finished = True
        self._shared.shut()
        self._thread.join(CLOSE_TIMEOUT_S)

    def close(self, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Stop the background thread and drop the batches it prepared ahead.

        Once this returns, no batch the thread prepared is held by the queue, and the thread
        queues nothing more. A ``prepare`` in progress is waited for (at most `timeout`
        seconds; None: as long as it takes), so that the batch it makes is dropped before this
        returns. A thread waiting in the source (``next(items)`` on a loader that blocks) is not
        waited for: it holds no prepared batch, and when the source returns it drops the item
        without preparing it and ends (a daemon thread: it never keeps the process alive).

        Parameters
        ----------
        timeout : float or None, default 10.0
            Seconds to wait for a ``prepare`` in progress.
        """
        self._finished = True
        shared = self._shared
        queued = shared.shut()
        del queued  # the prepared batches, dropped here
        if not shared.in_source:
            self._thread.join(timeout)

    def __enter__(self) -> Prefetcher[Prepared]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        shared = getattr(self, "_shared", None)
        if shared is not None:
            shared.shut()


# Batches of a Packer held at once under `prefetch(depth)`, beyond the `depth` queued: the one
# the loop holds, the one `__next__` is handing out, and the slot the next copy needs free.
HELD_BEYOND_DEPTH = 3


def prefetch(
    items: Iterable[Item],
    prepare: Callable[[Item], Prepared] | None = None,
    *,
    device: Any = None,
    depth: int = 2,
) -> Prefetcher[Prepared]:
    """Prepare batches in a background thread, `depth` ahead of the loop that consumes them.

    While the loop body runs batch k (on a GPU: its kernels run and the loop waits for their
    results), the thread prepares batch k+1: ``prepare(item)`` (tokenize and pad, e.g. a
    `fastpad.Packer`, which pads into pinned memory and starts the copy to the GPU), then, with
    `device`, the copy of every tensor in it to `device` with ``non_blocking=True``. Batches
    come out in the order of `items`, each exactly what the loop would have made itself.

    Parameters
    ----------
    items : iterable
        What to prepare: lists of texts, lists of token ids, a ``torch.utils.data.DataLoader``
        (its collator, e.g. `fastpad.DataCollatorWithPadding`, then runs in the thread when
        ``num_workers=0``)...
    prepare : callable, optional
        ``prepare(item) -> batch``; default: the items themselves. A `fastpad.Packer` here pads
        and copies in the thread; its ring is given at least ``depth + 3`` slots (see Notes).
    device : str or torch.device, optional
        Copy the prepared tensors to this device (``non_blocking=True``; asynchronous from
        pinned memory, as `fastpad.pad` and the collators allocate when a GPU is present).
    depth : int, default 2
        Batches prepared ahead (the thread then waits for the loop).

    Returns
    -------
    Prefetcher
        An iterator over the prepared batches, with `Prefetcher.stats` (time the thread spent
        preparing, time the loop waited for it) and `Prefetcher.close`.

    Raises
    ------
    ValueError
        `depth` is not an int >= 1.
    TypeError
        `prepare` is not callable.

    Notes
    -----
    An exception raised by `prepare` (or by iterating `items`) is raised by the loop at the
    batch where it happened, and the thread stops; a ``StopIteration`` raised by `prepare` is
    raised as a RuntimeError chained to it (as PEP 479 does in generators), never taken for the
    end of the items.

    Streams: on CUDA the thread prepares on a stream of its own (`Prefetcher.stream`), and
    records an event after each batch. The loop's ``next()`` makes the stream current *where
    the batch is taken* wait for that event (on the device; the host does not wait), so a
    prefetcher created outside ``with torch.cuda.stream(s):`` and iterated inside it orders each
    batch before `s`. A Packer's ring is told that its batch is used on that stream, and every
    other CUDA tensor of the batch is ``record_stream``-ed on it. Nothing queued by the thread
    lands in the middle of the model's stream.

    Ring size: under ``prefetch(..., depth=d)`` up to ``d + 2`` batches of a Packer are alive
    when it packs the next one (``d`` queued, the one the loop holds, the one ``next()`` is
    handing out), so its ring needs ``d + 3`` slots for steady state to allocate no device
    memory. With the Packer itself as `prepare`, `prefetch` raises its ``buffers`` to that
    (never lowers it); a `prepare` that calls a Packer should give it ``buffers=depth + 3``, one
    more for each batch the loop keeps beyond the current one.

    Tensors a `prepare` creates are not inference tensors even inside ``torch.inference_mode``
    (a thread-local mode), which any model accepts.

    Examples
    --------
    >>> import fastpad
    >>> packer = fastpad.Packer("cpu", pad_token_id=0)
    >>> rows = [[[101, 7592, 102], [101, 102]], [[101, 2088, 2003, 102]]]
    >>> [batch["input_ids"].shape[1] for batch in fastpad.prefetch(rows, packer)]
    [3, 4]
    """
    return Prefetcher(items, prepare, device, depth)
