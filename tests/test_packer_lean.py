"""What one `fastpad.Packer` call does on the CUDA path, counted on the simulated device.

The simulated device (tests/test_packer.py: CUDA streams and events as Python fakes, "pinned" and
"device" buffers as CPU tensors) runs the CUDA path's code; here it is counted: Python function
calls per call (cProfile), aten ops per call (TorchDispatchMode) and the stream/event calls the
fakes see. The device-side ring is checked too: a released batch's buffer is reused in place
(the slot's buffer keeps its address, no allocation), a held batch keeps its buffer, and every
reuse is ordered on the device after the consumer's work. `TorchCudaCalls` (torch's C entry
points, used on a real GPU) is driven with a recording stand-in for ``torch._C``.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import fastpad
import fastpad._ring
from fastpad._ring import PublicCudaCalls, TorchCudaCalls, cuda_calls, slot_layout

torch = pytest.importorskip("torch")
from test_packer import FakeEvent, FakeStream, FakeTorch, assert_same, expected_pad  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

# Issue 20's bounds for a padded call of 64 rows on the simulated device (before the lean path:
# 144 Python calls and 8 aten ops, detach/slice/view/detach/empty/copy_/as_strided x2).
MAX_PYTHON_CALLS = 60
MAX_TORCH_OPS = 8


def sentence_rows(seed: int, count: int = 64) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 30_000, size=int(n)).tolist() for n in rng.integers(5, 120, count)]


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


class CountingFake(FakeTorch):
    """The simulated device, counting the stream and event calls a packer makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        calls = self.calls
        cuda = self.cuda
        current_stream = cuda.current_stream
        stream = cuda.stream

        class CountedEvent(FakeEvent):
            def record(self, stream: Any = None) -> None:
                calls["event.record"] += 1
                super().record(stream)

            def wait(self, stream: Any) -> None:
                calls["event.wait"] += 1
                super().wait(stream)

            def query(self) -> bool:
                calls["event.query"] += 1
                return super().query()

            def synchronize(self) -> None:
                calls["event.synchronize"] += 1
                super().synchronize()

        def counted_current_stream(device: Any = None) -> Any:
            calls["current_stream"] += 1
            return current_stream(device)

        def counted_stream(selected: Any) -> Any:
            calls["stream context"] += 1
            return stream(selected)

        cuda.Event = CountedEvent  # type: ignore[misc]
        cuda.current_stream = counted_current_stream  # type: ignore[method-assign]
        cuda.stream = counted_stream  # type: ignore[method-assign]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> CountingFake:
    counting = CountingFake()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: counting)
    return counting


def warm_packer(stream: str | None, rows: list[list[int]]) -> fastpad.Packer:
    packer = fastpad.Packer("cuda", pad_token_id=0, stream=stream)
    for _ in range(packer.buffers + 1):  # warm: every slot and device buffer allocated, reused
        packer(rows)
    assert isinstance(packer._calls, PublicCudaCalls)  # the fakes are not torch's C API
    return packer


@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_a_padded_call_of_64_rows_stays_lean(
    monkeypatch: pytest.MonkeyPatch, stream: str | None
) -> None:
    rows = sentence_rows(0)
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: FakeTorch())  # the plain simulation
    packer = warm_packer(stream, rows)
    profile = cProfile.Profile()
    profile.enable()
    batch = packer(rows)
    profile.disable()
    stats = pstats.Stats(profile)
    python_calls = stats.total_calls - 1  # less the profiler's own disable()
    with OpCounter() as counter:
        again = packer(rows)
    assert_same(batch, expected_pad(rows, pad_token_id=0))
    assert_same(again, expected_pad(rows, pad_token_id=0))
    assert python_calls <= MAX_PYTHON_CALLS, stats.sort_stats("ncalls").print_stats(40)
    # Two slices (host and device bytes of this batch), the copy, one view per output.
    assert counter.ops == ["slice", "slice", "copy_", "as_strided", "as_strided"]
    assert len(counter.ops) <= MAX_TORCH_OPS
    assert packer.stats.device_allocations == packer.buffers  # released batches: reused

    counting = CountingFake()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: counting)
    packer = warm_packer(stream, rows)
    counting.calls.clear()
    packer(rows)
    # Streams and events: the consumer's stream looked up once, the slot's event queried (the
    # fake's events complete only when waited for, so it is also synchronized), the copy's event
    # recorded; on a side stream the copy switches to it once, the consumer waits for the copy,
    # and the copy waits for the release of the batch last copied into the slot.
    expected = {"current_stream": 1, "event.query": 1, "event.synchronize": 1}
    if stream is None:
        expected |= {"stream context": 1, "event.record": 2, "event.wait": 2}
    else:  # the copy queues on the consumer's stream, behind the reads of the slot's last batch
        expected |= {"event.record": 1}
    assert dict(counting.calls) == expected


def test_released_batches_reuse_device_buffers_in_place(fake: CountingFake) -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=2)
    addresses = []
    for seed in range(10):
        rows = sentence_rows(seed, 16)
        batch = packer(rows)
        # Checked while held, then let go of: the next calls may reuse its buffer.
        assert_same(batch, expected_pad(rows, pad_token_id=0))
        addresses.append(batch["input_ids"].untyped_storage().data_ptr())
        del batch
    assert isinstance(packer.stream, FakeStream)
    assert packer.stats.device_allocations == 2
    assert len(set(addresses)) == 2 and addresses[:2] * 5 == addresses  # per slot
    # Every reuse waited, on the copy stream, for an event recorded on the consumer after the
    # batch it overwrites was released (8 reuses).
    consumer = fake.cuda.default_stream
    frees = [slot.freed for slot in packer._ring.slots]
    assert all(event is not None and consumer in event.streams for event in frees)
    waited_frees = [event for event in packer.stream.waited if event in frees]
    assert len(waited_frees) == 8


def test_held_batches_keep_their_device_buffers(fake: CountingFake) -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=2)
    rows = [sentence_rows(seed, 8) for seed in range(8)]
    first = packer(rows[0])  # slot 0
    derived = first["input_ids"][:, 1:3]  # a view of an output holds the buffer too
    del first
    packer(rows[1])  # slot 1, let go of at once
    packer(rows[2])  # slot 0: still held through `derived`, so a new buffer
    packer(rows[3])  # slot 1: released, reused
    assert packer.stats.device_allocations == 3
    assert torch.equal(derived, expected_pad(rows[0], pad_token_id=0)["input_ids"][:, 1:3])
    # Slots 0 and 1 reused (their batches were let go of), then both found held.
    kept = [packer(each) for each in rows[4:]]
    assert packer.stats.device_allocations == 5
    for each, batch in zip(rows[4:], kept, strict=True):
        assert_same(batch, expected_pad(each, pad_token_id=0))
    assert packer.stats.pinned_allocations == 2  # the host ring is reused all the same


def test_scalars_and_ragged_ride_the_device_ring(fake: CountingFake) -> None:
    for ragged in (False, True):
        packer = fastpad.Packer("cuda", pad_token_id=0, buffers=1, ragged_transfer=ragged)
        for seed in range(4):
            rows = sentence_rows(seed, 8)
            encoded = {"input_ids": rows, "label": [index / 2 for index in range(len(rows))]}
            batch = packer(encoded)
            assert_same(batch, expected_pad(encoded, pad_token_id=0))
            del batch
        assert packer.stats.device_allocations == 1


def test_slot_layout() -> None:
    assert slot_layout(0, [8, 8]) == ([0, 0], 0)
    assert slot_layout(64 * 100, [8, 1, 4]) == ([0, 51200, 57600], 83200)
    assert slot_layout(3, [8, 8]) == ([0, 256], 512)


class RecordingApi:
    """A stand-in for the torch._C entry points `TorchCudaCalls` binds, recording each call."""

    def __init__(self, current_device: int, stream_ids: tuple[int, int, int]) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.device = current_device
        self.streams = {stream_ids[1]: stream_ids}
        log = self.log
        api = self

        class EventBase:
            @staticmethod
            def record(event: Any, stream: Any) -> None:
                log.append(("record", event, stream))

            @staticmethod
            def wait(event: Any, stream: Any) -> None:
                log.append(("wait", event, stream))

            @staticmethod
            def query(event: Any) -> bool:
                log.append(("query", event))
                return True

        self._CudaEventBase = EventBase

        def get_stream(index: int) -> tuple[int, int, int]:
            log.append(("getCurrentStream", index))
            return api.streams[index]

        def set_stream(stream_id: int, device_index: int, device_type: int) -> None:
            log.append(("setStream", stream_id, device_index, device_type))
            api.device = device_index  # as torch's: it makes the stream's device current
            api.streams[device_index] = (stream_id, device_index, device_type)

        def get_device() -> int:
            log.append(("getDevice",))
            return api.device

        def set_device(index: int) -> None:
            log.append(("setDevice", index))
            api.device = index

        self._cuda_getCurrentStream = get_stream
        self._cuda_setStream = set_stream
        self._cuda_getDevice = get_device
        self._cuda_setDevice = set_device


class FakeCudaStream:
    def __init__(self, stream_id: int, device_index: int, device_type: int) -> None:
        self.stream_id, self.device_index, self.device_type = stream_id, device_index, device_type


def torch_calls(
    api: RecordingApi, index: int, devices: int, copy_stream: Any
) -> tuple[TorchCudaCalls, Any]:
    stand_in = SimpleNamespace(
        cuda=SimpleNamespace(
            Stream=lambda **ids: FakeCudaStream(**ids),
            Event=FakeEvent,
            device_count=lambda: devices,
        ),
    )
    return TorchCudaCalls(stand_in, torch.device("cuda", index), copy_stream, c_api=api), api


class Destination:
    def __init__(self, log: list[tuple[Any, ...]], fail: bool = False) -> None:
        self.log = log
        self.fail = fail

    def copy_(self, source: Any, non_blocking: bool) -> None:
        self.log.append(("copy_", source, non_blocking))
        if self.fail:
            raise RuntimeError("copy failed")


@pytest.mark.parametrize("fail", [False, True], ids=["copy", "copy-raises"])
def test_torch_cuda_calls_switch_to_the_copy_stream_and_back(fail: bool) -> None:
    """On a packer for cuda:1 while cuda:0 is current: the copy runs with the copy stream
    current, then the consumer's stream and the caller's device are current again (also when
    the copy raises), as ``with torch.cuda.stream(copy_stream)`` leaves them."""
    side = FakeCudaStream(7, 1, 1)
    api = RecordingApi(current_device=0, stream_ids=(0, 1, 1))
    calls, api = torch_calls(api, 1, 2, side)
    consumer = calls.consumer()
    assert (consumer.stream_id, consumer.device_index) == (0, 1)
    assert calls.consumer() is consumer  # made again only when the current stream changes
    destination = Destination(api.log, fail)
    api.log.clear()
    if fail:
        with pytest.raises(RuntimeError, match="copy failed"):
            calls.copy(destination, "host", consumer, "free-event")
    else:
        calls.copy(destination, "host", consumer, "free-event")
    assert api.log == [
        ("getDevice",),
        ("setStream", 7, 1, 1),
        ("wait", "free-event", side),
        ("copy_", "host", True),
        ("setStream", 0, 1, 1),
        ("setDevice", 0),
    ]
    assert api.device == 0 and api.streams[1] == (0, 1, 1)


def test_torch_cuda_calls_on_one_device_and_on_the_current_stream() -> None:
    api = RecordingApi(current_device=0, stream_ids=(0, 0, 1))
    side, _ = torch_calls(api, 0, 1, FakeCudaStream(3, 0, 1))
    consumer = side.consumer()
    api.log.clear()
    side.copy(Destination(api.log), "host", consumer, None)
    # One device: never read or restored.
    assert api.log == [("setStream", 3, 0, 1), ("copy_", "host", True), ("setStream", 0, 0, 1)]
    current, _ = torch_calls(api, 0, 1, None)
    consumer = current.consumer()
    api.log.clear()
    current.copy(Destination(api.log), "host", consumer, "free-event")
    assert api.log == [("wait", "free-event", consumer), ("copy_", "host", True)]
    api.log.clear()
    current.record("event", consumer)
    current.wait("event", consumer)
    assert current.query("event")
    assert api.log == [
        ("record", "event", consumer),
        ("wait", "event", consumer),
        ("query", "event"),
    ]


def test_cuda_calls_choice(fake: CountingFake) -> None:
    """torch's C entry points for the real torch that has them, the public API otherwise (the
    simulated device; a CPU build of torch, which lacks them)."""
    assert type(cuda_calls(fake, torch.device("cuda", 0), None)) is PublicCudaCalls
    if not hasattr(torch._C, "_cuda_getCurrentStream"):
        assert type(cuda_calls(torch, torch.device("cuda", 0), None)) is PublicCudaCalls


@pytest.mark.parametrize("buffers", [2, 3])
def test_when_a_release_is_seen_in_a_loop_that_holds_its_last_batch(
    fake: CountingFake, monkeypatch: pytest.MonkeyPatch, buffers: int
) -> None:
    """``batch = packer(rows)`` holds batch k-1 while packing batch k. With 3 slots the slot a
    call reuses was released before the previous call, which recorded its release event then
    (before the previous model step was queued): the copy waits only for older work. With 2 the
    release is seen by the reusing call itself (the copy waits for all work queued so far)."""
    ring_type = fastpad._ring.PinnedRing
    record_free = ring_type._record_free
    copy = PublicCudaCalls.copy
    calls = [0]
    released_at: dict[int, int] = {}
    waits: list[tuple[int, int]] = []  # (call, call at which the awaited release was seen)

    def logged_record_free(self: Any, slot: Any) -> None:
        record_free(self, slot)  # creates the slot's release event on first use
        released_at[id(slot.freed)] = calls[0]

    def logged_copy(self: Any, destination: Any, source: Any, consumer: Any, wait: Any) -> None:
        if wait is not None:
            waits.append((calls[0], released_at[id(wait)]))
        copy(self, destination, source, consumer, wait)

    monkeypatch.setattr(ring_type, "_record_free", logged_record_free)
    monkeypatch.setattr(PublicCudaCalls, "copy", logged_copy)
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=buffers)
    rows = sentence_rows(5, 8)
    batch = None
    for call in range(12):
        calls[0] = call
        batch = packer(rows)  # the previous batch is let go of only after this call returns
        assert_same(batch, expected_pad(rows, pad_token_id=0))
    assert batch is not None
    assert len(waits) == 12 - buffers  # every reuse waited for its slot's release
    lag = 1 if buffers == 3 else 0
    assert all(call - seen == lag for call, seen in waits), waits
    assert packer.stats.device_allocations == buffers
