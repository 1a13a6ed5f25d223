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

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["PrefetchStats", "Prefetcher", "prefetch"]

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")

# How long the worker waits on a full queue before it looks at the stop flag again (seconds).
_POLL_S = 0.05


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
    """torch when something already imported it (prefetch never imports torch itself)."""
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


class _Shared:
    """What the worker thread and its `Prefetcher` share. The thread holds this, never the
    Prefetcher itself, so an abandoned Prefetcher is collected and its ``__del__`` stops it."""

    def __init__(self, depth: int) -> None:
        self.queue: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(depth)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.prepare_s = 0.0

    def put(self, entry: tuple[Any, BaseException | None]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False


def _work(
    shared: _Shared,
    items: Iterator[Any],
    prepare: Callable[[Any], Any] | None,
    device: Any,
    stream: Any,
) -> None:
    """The worker thread: prepare each item (and copy it to `device`), queue it in order."""
    try:
        if stream is not None:
            _torch_if_imported().cuda.set_stream(stream)
        while True:
            if shared.stop.is_set():
                return
            started = time.perf_counter()  # getting the item is host prep too (a collate)
            try:
                item = next(items)
            except StopIteration:
                break
            batch = item if prepare is None else prepare(item)
            if device is not None:
                batch = _to_device(batch, device)
            elapsed = time.perf_counter() - started
            with shared.lock:
                shared.prepare_s += elapsed
            if not shared.put((batch, None)):
                return
            del batch, item  # the queue holds the batch; nothing here keeps it alive
        shared.put((_DONE, None))
    except BaseException as error:  # handed to the consumer, raised there
        shared.put((None, error))


class Prefetcher(Generic[Prepared]):
    """Iterator over prepared batches, prepared `depth` ahead by one background thread.

    Made by `prefetch`; see there. Iterate it once. ``close()`` (or leaving a ``with`` block)
    stops the thread at once; an abandoned Prefetcher stops it when it is garbage collected.
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
        self._shared = _Shared(depth)
        self._batches = 0
        self._wait_s = 0.0
        self._finished = False
        # The consumer's current CUDA stream, made current in the worker: a Packer called
        # there orders its copies before this stream, and a non_blocking copy queues on it.
        stream = _consumer_stream(prepare, device)
        self._thread = threading.Thread(
            target=_work,
            args=(self._shared, iter(items), prepare, device, stream),
            name="fastpad-prefetch",
            daemon=True,
        )
        self._thread.start()

    @property
    def stats(self) -> PrefetchStats:
        """Snapshot of the counters (`PrefetchStats`)."""
        with self._shared.lock:
            return PrefetchStats(self._batches, self._shared.prepare_s, self._wait_s)

    def __iter__(self) -> Iterator[Prepared]:
        return self

    def __next__(self) -> Prepared:
        if self._finished:
            raise StopIteration
        started = time.perf_counter()
        batch, error = self._shared.queue.get()
        waited = time.perf_counter() - started
        if error is not None:
            self._finish()
            raise error
        if batch is _DONE:
            self._finish()
            raise StopIteration
        with self._shared.lock:
            self._wait_s += waited
            self._batches += 1
        return batch  # type: ignore[no-any-return]

    def _finish(self) -> None:
        self._finished = True
        self._shared.stop.set()
        self._thread.join()

    def close(self) -> None:
        """Stop the background thread and drop the batches it prepared ahead."""
        self._finished = True
        shared = self._shared
        shared.stop.set()
        while True:  # drop what the worker queued
            try:
                shared.queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self) -> Prefetcher[Prepared]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        shared = getattr(self, "_shared", None)
        if shared is not None:
            shared.stop.set()


def _consumer_stream(prepare: Any, device: Any) -> Any:
    """The current CUDA stream of the device the batches go to (None off CUDA)."""
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
    return torch.cuda.current_stream(target)


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
        ``prepare(item) -> batch``; default: the items themselves. A `fastpad.Packer` here (give
        it ``buffers=depth + 2`` so each copy has a free slot) pads and copies in the thread.
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
    batch where it happened; the thread stops. On CUDA the thread makes the stream that was
    current where `prefetch` was called its current stream, so a Packer's copies are ordered
    before it and a ``non_blocking`` copy queues on it. Tensors a `prepare` creates are not
    inference tensors even inside ``torch.inference_mode`` (a thread-local mode), which any
    model accepts.

    Examples
    --------
    >>> import fastpad
    >>> packer = fastpad.Packer("cpu", pad_token_id=0)
    >>> rows = [[[101, 7592, 102], [101, 102]], [[101, 2088, 2003, 102]]]
    >>> [batch["input_ids"].shape[1] for batch in fastpad.prefetch(rows, packer)]
    [3, 4]
    """
    return Prefetcher(items, prepare, device, depth)
