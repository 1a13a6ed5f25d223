"""Streams, lifetimes and defaults of the GPU path (issue 26), on a simulated device.

The simulated device of tests/test_packer.py, extended with what `fastpad.prefetch` uses: a
current stream per thread (``torch.cuda.set_stream``, ``with torch.cuda.stream(s)``), streams that
record the events they were made to wait for, and a current device that can change. It checks:
each prefetched batch is ordered before the stream current where the batch is taken (not the one
current where `prefetch` was created), and a Packer's ring records its release there; steady-state
loops (plain, and under `prefetch` with a Packer, with a step that holds the GIL) allocate no device
memory after warm-up; a ``Packer("cuda")`` takes the device current at its first copy; a torch
without ``_storage_Use_Count`` still never overwrites a held batch.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import fastpad
import fastpad._prefetch
import fastpad._ring

torch = pytest.importorskip("torch")
from test_packer import (  # noqa: E402
    FakeCuda,
    FakeEvent,
    FakeStream,
    FakeTorch,
    assert_same,
    expected_pad,
)


class ThreadStreamsCuda(FakeCuda):
    """FakeCuda with a current stream per thread and a current device."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self.device_index = 0
        cuda = self

        class Stream(FakeStream):
            """torch.cuda.Stream(device=None): on the current device."""

            def __init__(self, device: Any = None) -> None:
                super().__init__(f"cuda:{cuda.device_index}" if device is None else device)

        self.Stream = Stream  # type: ignore[misc]

    def current_device(self) -> int:
        return self.device_index

    def current_stream(self, device: Any = None) -> Any:
        return getattr(self._local, "stream", None) or self.default_stream

    def set_stream(self, stream: Any) -> None:
        self._local.stream = stream

    def stream(self, stream: Any) -> Any:
        cuda = self

        class Switch:
            def __enter__(self) -> None:
                self.previous = getattr(cuda._local, "stream", None)
                cuda._local.stream = stream

            def __exit__(self, *exc: object) -> None:
                cuda._local.stream = self.previous

        return Switch()


class StreamsTorch(FakeTorch):
    def __init__(self) -> None:
        super().__init__()
        self.cuda = ThreadStreamsCuda()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> StreamsTorch:
    simulated = StreamsTorch()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: simulated)
    monkeypatch.setattr(fastpad._prefetch, "_torch_if_imported", lambda: simulated)
    return simulated


def token_batches(count: int, rows: int = 8, seed: int = 0) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(1, 30_000, size=int(n)).tolist() for n in rng.integers(1, 40, size=rows)]
        for _ in range(count)
    ]


# -- stream order taken where the batch is consumed ----------------------------------------------


@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_prefetch_orders_each_batch_before_the_stream_where_it_is_taken(
    fake: StreamsTorch, stream: str | None
) -> None:
    """Created outside ``with torch.cuda.stream(s):``, consumed inside it: `s` waits for each
    batch's event, the model's default stream gets no wait queued by the worker, and the ring
    records the release of each batch on `s` (so a copy into its slot waits for `s`)."""
    batches = token_batches(12)
    packer = fastpad.Packer("cuda", pad_token_id=0, stream=stream)
    prefetched = fastpad.prefetch(batches, packer, depth=2)  # outside the stream context
    worker_stream = prefetched.stream
    assert isinstance(worker_stream, FakeStream)
    model_stream = fake.cuda.Stream()
    with fake.cuda.stream(model_stream):
        for rows, batch in zip(batches, prefetched, strict=True):
            assert_same(batch, expected_pad(rows, pad_token_id=0))
            slot = fastpad._ring._HANDED_SLOTS[batch["input_ids"].untyped_storage()._cdata]
            assert slot.consumer is model_stream  # the release is recorded where it is read
            del batch
    # One wait per batch on the consuming stream, each for an event the worker recorded on its
    # own stream after the batch (and after the packer's copy: the worker stream waited for it).
    batch_events = [event for event in model_stream.waited if worker_stream in event.streams]
    assert len(batch_events) == len(model_stream.waited) == len(batches)
    assert fake.cuda.default_stream.waited == []  # nothing lands in the default stream
    if stream is None:  # the copy events, waited for by the worker's stream
        copies = {id(slot.event) for slot in packer._ring.slots}
        assert copies <= {id(event) for event in worker_stream.waited}
    # Releases recorded on the stream that read the batches.
    frees = [slot.freed for slot in packer._ring.slots if slot.freed is not None]
    assert frees and all(model_stream in event.streams for event in frees)
    assert all(worker_stream not in event.streams for event in frees)


def test_taking_a_batch_record_streams_tensors_outside_a_ring(fake: StreamsTorch) -> None:
    """Tensors the worker allocated on its stream (``device=``, a ragged rebuild) are
    ``record_stream``-ed on the consuming stream; a ring's views are handed to it instead."""
    recorded: list[Any] = []

    class CudaTensor:
        device = torch.device("cuda", 0)

        def untyped_storage(self) -> Any:
            return SimpleNamespace(_cdata=-1)  # in no ring

        def record_stream(self, stream: Any) -> None:
            recorded.append(stream)

    order = fastpad._prefetch._StreamOrder(fake, torch.device("cuda", 0))
    event = FakeEvent()
    consumer = fake.cuda.Stream()
    with fake.cuda.stream(consumer):
        order.take({"a": CudaTensor(), "b": [CudaTensor(), "meta"]}, event)
    assert recorded == [consumer, consumer]
    assert consumer.waited == [event]


# -- steady state: no device allocation after warm-up --------------------------------------------


def gil_holding_step(batch: Any, seconds: float = 0.0005) -> int:
    """A model step that holds the GIL (pure Python), reading the batch."""
    end = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < end:
        spins += 1
    return int(batch["input_ids"].shape[0]) + spins * 0


def test_plain_loop_allocates_nothing_after_warm_up(fake: StreamsTorch) -> None:
    """``batch = packer(rows); model(**batch)`` with the default ring, 300 batches."""
    packer = fastpad.Packer("cuda", pad_token_id=0)
    assert packer.buffers == 3
    batches = token_batches(300, seed=1)
    after_warm_up = None
    for index, rows in enumerate(batches):
        batch = packer(rows)
        gil_holding_step(batch)
        if index == packer.buffers:
            after_warm_up = packer.stats.device_allocations
    assert after_warm_up == packer.stats.device_allocations == packer.buffers
    assert_same(batch, expected_pad(batches[-1], pad_token_id=0))


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("step", ["gil-holding", "gil-releasing"])
def test_prefetch_with_a_packer_allocates_nothing_after_warm_up(
    fake: StreamsTorch, depth: int, step: str
) -> None:
    """300 batches through ``prefetch(items, packer, depth)``: the packer's ring is raised to
    depth + 3 slots, and once each slot has its device buffer no call allocates another one."""
    packer = fastpad.Packer("cuda", pad_token_id=0)
    batches = token_batches(300, seed=depth)
    counts = []
    with fastpad.prefetch(batches, packer, depth=depth) as prefetched:
        assert packer.buffers == depth + 3
        for batch in prefetched:
            if step == "gil-holding":
                gil_holding_step(batch)
            else:
                time.sleep(0.0002)
            counts.append(packer.stats.device_allocations)
        assert_same(batch, expected_pad(batches[-1], pad_token_id=0))
    # Warm-up: the first depth + 3 batches take the ring's buffers; then nothing more.
    assert counts[-1] == packer.buffers, counts
    assert counts[packer.buffers] == counts[-1]


def test_the_documented_formula_for_a_prepare_that_calls_a_packer(fake: StreamsTorch) -> None:
    """A `prepare` that wraps a Packer is not resized: ``buffers=depth + 3`` suffices."""
    depth = 2
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=depth + 3)
    batches = token_batches(300, seed=7)
    for batch in fastpad.prefetch(batches, lambda rows: packer(rows), depth=depth):
        gil_holding_step(batch)
    assert packer.buffers == depth + 3
    assert packer.stats.device_allocations == depth + 3


def test_leaving_a_prefetched_loop_early_releases_the_ring(fake: StreamsTorch) -> None:
    """After ``break`` (the ``with`` block closes the prefetcher), the batches prepared ahead are
    gone: the packer's next calls reuse every buffer and allocate none."""
    packer = fastpad.Packer("cuda", pad_token_id=0)
    batches = token_batches(40, seed=3)
    with fastpad.prefetch(batches, packer, depth=2) as prefetched:
        for index, _batch in enumerate(prefetched):
            if index == 10:
                break
    del _batch
    allocated = packer.stats.device_allocations
    assert allocated == packer.buffers
    for rows in batches[:20]:
        assert_same(packer(rows), expected_pad(rows, pad_token_id=0))
    assert packer.stats.device_allocations == allocated


# -- the device, taken at the first copy; the private entry point, with a fallback ---------------


def test_cuda_takes_the_device_current_at_the_first_copy(fake: StreamsTorch) -> None:
    """``Packer("cuda")`` built before ``torch.cuda.set_device(local_rank)`` copies to
    local_rank; ``"cuda:N"`` is bound at construction."""
    packer = fastpad.Packer("cuda", pad_token_id=0)
    fixed = fastpad.Packer("cuda:0", pad_token_id=0)
    assert packer.device == torch.device("cuda") and packer.stream is None
    fake.cuda.device_index = 1  # torch.cuda.set_device(1)
    rows = [[1, 2, 3], [4]]
    assert_same(packer(rows), expected_pad(rows, pad_token_id=0))
    assert packer.device == torch.device("cuda", 1)
    assert packer.stream.device == torch.device("cuda", 1)
    assert packer._calls.device == torch.device("cuda", 1)
    fixed(rows)
    assert fixed.device == torch.device("cuda", 0) and fixed.stream.device == torch.device(
        "cuda", 0
    )
    fake.cuda.device_index = 0  # later changes do not move a bound packer
    packer(rows)
    assert packer.device == torch.device("cuda", 1)
    # A stream of yours names the device ("cuda" takes it; "cuda:N" must match it).
    mine = fake.cuda.Stream(device="cuda:1")
    assert fastpad.Packer("cuda", stream=mine, pad_token_id=0).device == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="stream is on cuda:1 but the packer copies to cuda:0"):
        fastpad.Packer("cuda:0", stream=mine, pad_token_id=0)


def test_without_storage_use_count_held_batches_stay_intact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A torch without ``torch._C._storage_Use_Count``: the ring cannot see releases, so every
    copy takes a device buffer from torch's allocator; held batches are never overwritten."""

    class NoUseCount(FakeTorch):
        _C = SimpleNamespace()

    simulated = NoUseCount()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: simulated)
    assert fastpad._ring.storage_use_count(simulated) is None
    assert fastpad._ring.storage_use_count(torch) is torch._C._storage_Use_Count
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=2)
    batches = token_batches(8, seed=5)
    results = [packer(rows) for rows in batches]  # all held
    for rows, result in zip(batches, results, strict=True):
        assert_same(result, expected_pad(rows, pad_token_id=0))
    assert packer.stats.device_allocations == len(batches)
    assert packer.stats.pinned_allocations == 2  # the host ring is reused all the same
