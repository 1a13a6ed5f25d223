"""fastpad.Packer on the CPU path: equal to fastpad.pad, results never overwritten, ragged transfer.

The CPU path runs the same layout code as the CUDA path (one buffer per batch, views at aligned
offsets, ragged expansion with torch ops); only pinning, the copy and the events are CUDA-only
(tests/test_packer_cuda.py).
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad._packer
import fastpad._ring
from fastpad import _core
from fastpad._expand import choose_ragged, gather_field, rebuild_index
from fastpad._packer import Packer
from fastpad._ring import PinnedRing

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

token = st.integers(-(2**31), 2**31 - 1)
rows_strategy = st.lists(st.lists(token, max_size=30), max_size=10)

options_strategy = st.fixed_dictionaries(
    {},
    optional={
        "padding": st.sampled_from([True, "longest", "max_length"]),
        "max_length": st.integers(0, 40),
        "truncation": st.booleans(),
        "pad_to_multiple_of": st.sampled_from([None, 1, 3, 8]),
        "padding_side": st.sampled_from(["left", "right"]),
        "truncation_side": st.sampled_from(["left", "right"]),
        "return_attention_mask": st.booleans(),
        "dtype": st.sampled_from([None, "int64", "int32", torch.int32]),
        "mask_dtype": st.sampled_from([None, "int64", "int32", "int8", "bool"]),
    },
)


def assert_same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert isinstance(actual, fastpad.Batch)
    assert list(actual) == list(expected)
    for key, value in expected.items():
        got = actual[key]
        assert isinstance(got, torch.Tensor), key
        assert got.device.type == "cpu", key
        assert got.dtype == value.dtype, key
        assert tuple(got.shape) == tuple(value.shape), key
        assert torch.equal(got, value), key


def expected_pad(encoded: Any, **kwargs: Any) -> Any:
    return fastpad.pad(encoded, pin_memory=False, **kwargs)


def check_against_pad(packer: fastpad.Packer, encoded: Any, **kwargs: Any) -> None:
    """The packer and fastpad.pad raise the same exception type or return equal batches."""
    try:
        expected = expected_pad(encoded, **kwargs)
    except (TypeError, ValueError, OverflowError) as error:
        with pytest.raises(type(error)):
            packer(encoded, **kwargs)
        return
    assert_same(packer(encoded, **kwargs), expected)


@pytest.fixture(params=[False, True, "auto"], ids=["padded", "ragged", "auto"])
def packer(request: pytest.FixtureRequest) -> fastpad.Packer:
    return fastpad.Packer("cpu", pad_token_id=0, ragged_transfer=request.param)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, options=options_strategy, ragged=st.sampled_from([False, True, "auto"]))
def test_equals_pad_on_random_batches(
    rows: list[list[int]], options: dict[str, Any], ragged: bool | str
) -> None:
    packer = fastpad.Packer("cpu", ragged_transfer=ragged)
    check_against_pad(packer, rows, pad_token_id=7, **options)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, options=options_strategy, ragged=st.booleans())
def test_equals_pad_on_ragged_input_with_fields(
    rows: list[list[int]], options: dict[str, Any], ragged: bool
) -> None:
    """Ragged input, extra padded fields, a given attention mask and per-example scalars."""
    packer = fastpad.Packer("cpu", ragged_transfer=ragged)
    encoded = {
        "input_ids": fastpad.Ragged.from_rows(rows),
        "token_type_ids": [[index % 2] * len(row) for index, row in enumerate(rows)],
        "attention_mask": [[1] * len(row) for row in rows],
        "labels": [[token % 5 for token in row] for row in rows],
        "label": [float(index) / 2 for index in range(len(rows))],
        "idx": np.arange(len(rows), dtype=np.int32),
    }
    check_against_pad(
        packer, encoded, pad_token_id=3, pad_values={"labels": -100, "token_type_ids": 2}, **options
    )


@pytest.mark.parametrize(
    "encoded",
    [
        [[101, 7592, 102], [101, 102], []],
        [[]],
        [],
        [101, 7592, 102],
        np.arange(12).reshape(3, 4),
        torch.arange(12).reshape(3, 4),
        [{"input_ids": [1, 2, 3], "label": 1}, {"input_ids": [4], "label": 0}],
        {"input_ids": [[1, 2], [3]], "special_tokens_mask": [[1, 0], [1]]},
    ],
    ids=[
        "lists",
        "one-empty-row",
        "no-rows",
        "one-flat-row",
        "numpy-2d",
        "torch-2d",
        "dicts",
        "stm",
    ],
)
def test_input_forms(packer: fastpad.Packer, encoded: Any) -> None:
    check_against_pad(packer, encoded, pad_token_id=0)
    check_against_pad(packer, encoded, pad_token_id=0, padding_side="left", pad_to_multiple_of=8)


@pytest.mark.parametrize(
    ("encoded", "kwargs", "error"),
    [
        ([[1, None]], {}, TypeError),
        ([[1, "2"]], {}, TypeError),
        ({"input_ids": [[1, 2]], "labels": [[1]]}, {"pad_values": {"labels": -100}}, ValueError),
        ({"input_ids": [[1, 2]], "labels": [[1, 2]]}, {}, ValueError),  # no pad value for labels
        ([[1, 2, 3]], {"padding": "max_length", "max_length": 2}, ValueError),
        ([[2**40]], {"dtype": "int32"}, OverflowError),
        ([[1]], {"padding_side": "middle"}, ValueError),
        ("text", {}, TypeError),
        ({"label": [1, 2]}, {}, ValueError),  # only per-example scalars
    ],
)
def test_bad_input_raises_like_pad(
    packer: fastpad.Packer, encoded: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        fastpad.pad(encoded, pad_token_id=0, pin_memory=False, **kwargs)
    with pytest.raises(error):
        packer(encoded, **kwargs)
    # A failed call leaves the packer usable.
    assert_same(packer([[5, 6], [7]]), expected_pad([[5, 6], [7]], pad_token_id=0))


def test_earlier_results_are_never_overwritten(packer: fastpad.Packer) -> None:
    rng = np.random.default_rng(0)
    batches = [
        [list(rng.integers(1, 30_000, size=int(length))) for length in rng.integers(0, 60, size=16)]
        for _ in range(12)
    ]
    results = [packer(batch) for batch in batches]
    # Compared only after every call: a reused buffer would show up as a later batch's data.
    for batch, result in zip(batches, results, strict=True):
        assert_same(result, expected_pad(batch, pad_token_id=0))
    storages = {result["input_ids"].untyped_storage().data_ptr() for result in results}
    assert len(storages) == len(results)


def test_defaults_and_per_call_overrides() -> None:
    packer = fastpad.Packer("cpu", pad_token_id=9, padding_side="left", dtype="int32")
    rows = [[1, 2, 3], [4]]
    assert_same(
        packer(rows), expected_pad(rows, pad_token_id=9, padding_side="left", dtype="int32")
    )
    assert_same(
        packer(rows, padding_side="right", pad_token_id=5),
        expected_pad(rows, pad_token_id=5, padding_side="right", dtype="int32"),
    )


def test_tokenizer_output(tokenizer: Any, sentences: list[str]) -> None:
    encoded = tokenizer(sentences)
    for ragged in (False, True):
        packer = fastpad.Packer("cpu", tokenizer=tokenizer, ragged_transfer=ragged)
        assert_same(packer(encoded), expected_pad(encoded, tokenizer=tokenizer))
        reference = tokenizer.pad(encoded, return_tensors="pt")
        result = packer(encoded)
        for key in reference:
            assert torch.equal(result[key], reference[key]), key


def test_stats_on_cpu() -> None:
    # One long row and many short ones: mostly padding.
    rows = [list(range(1, 201))] + [[1, 2]] * 31
    padded = fastpad.Packer("cpu", pad_token_id=0)
    ragged = fastpad.Packer("cpu", pad_token_id=0, ragged_transfer=True)
    for _ in range(3):
        padded(rows)
        ragged(rows)
    padded_stats, ragged_stats = padded.stats, ragged.stats
    assert isinstance(padded_stats, fastpad.PackerStats)
    cells = 32 * 200
    for stats in (padded_stats, ragged_stats):
        assert stats.batches == 3
        assert stats.pinned_allocations == stats.pinned_bytes == stats.ring_bytes == 0
        assert stats.reuses == stats.waits == stats.copied_bytes == 0
        assert stats.output_bytes == 3 * 2 * cells * 8  # ids and mask, int64
    assert padded_stats.ragged_batches == 0
    assert ragged_stats.ragged_batches == 3
    # Padded: ids and mask (mask at an aligned offset after the ids).
    assert padded_stats.payload_bytes == 3 * (cells * 8 + cells * 8)
    # Ragged: the 262 real tokens and one pad cell per row (294 int64 = 2352 bytes, next part at
    # 2560), then base and bound of the 32 rows (64 int64 = 512 bytes): nothing padded.
    assert ragged_stats.payload_bytes == 3 * (2560 + 512)
    assert ragged_stats.payload_bytes * 30 < padded_stats.payload_bytes


def test_auto_takes_the_ragged_path_only_when_it_saves_enough() -> None:
    auto = fastpad.Packer("cpu", pad_token_id=0, ragged_transfer="auto")
    short = [[1, 2, 3], [4]]  # saves a few bytes: padded
    long_tail = [list(range(1, 4001))] + [[1, 2]] * 255  # ~16 MB padded against ~34 kB flat
    assert_same(auto(short), expected_pad(short, pad_token_id=0))
    assert auto.stats.ragged_batches == 0
    assert_same(auto(long_tail), expected_pad(long_tail, pad_token_id=0))
    assert auto.stats.ragged_batches == 1
    assert choose_ragged(10**9, 0) and not choose_ragged(1000, 999)


def test_cuda_without_a_device_falls_back_to_cpu_and_warns_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code written for a GPU keeps running on a CPU-only machine, and says so once per process
    (a warning, not an error: tests and CPU CI run GPU code unchanged)."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setattr(fastpad._packer, "_warned_no_cuda", False)
    with pytest.warns(RuntimeWarning, match=r"Packer\('cuda'\): torch sees no CUDA device") as seen:
        packer = fastpad.Packer(pad_token_id=0)
    assert len(seen) == 1 and seen[0].filename == __file__  # points at the caller's line
    assert packer.device == torch.device("cpu")
    assert packer.stream is None
    assert_same(packer([[1, 2], [3]]), expected_pad([[1, 2], [3]], pad_token_id=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the next packers stay silent
        fastpad.Packer("cuda:0", pad_token_id=0)
        fastpad.Packer("cpu", pad_token_id=0)
    monkeypatch.setattr(fastpad._packer, "_warned_no_cuda", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastpad.Packer("cpu", pad_token_id=0)  # asking for the CPU never warns


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="buffers"):
        fastpad.Packer("cpu", buffers=0)
    with pytest.raises(TypeError, match="buffers"):
        fastpad.Packer("cpu", buffers=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="return_tensors"):
        fastpad.Packer("cpu", return_tensors="np")
    with pytest.raises(TypeError, match="pin_memory"):
        fastpad.Packer("cpu", pin_memory=True)
    with pytest.raises(ValueError, match="device"):
        fastpad.Packer("meta")
    with pytest.raises(ValueError, match="ragged_transfer"):
        fastpad.Packer("cpu", ragged_transfer="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream"):
        fastpad.Packer("cpu", stream="side")
    packer = fastpad.Packer("cpu", pad_token_id=0)
    with pytest.raises(TypeError, match="return_tensors"):
        packer([[1]], return_tensors="np")
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(packer)
    assert "cpu" in repr(packer)


def test_shared_between_threads() -> None:
    packer = fastpad.Packer("cpu", pad_token_id=0)
    ragged = fastpad.Packer("cpu", pad_token_id=0, ragged_transfer=True)
    failures: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            rows = [list(rng.integers(1, 1000, size=int(n))) for n in rng.integers(0, 50, size=8)]
            expected = expected_pad(rows, pad_token_id=0)
            for each in (packer, ragged):
                got = each(rows)
                if not all(torch.equal(got[key], expected[key]) for key in expected):
                    failures.append(f"thread {seed}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert packer.stats.batches == ragged.stats.batches == 80


def reference_expand(
    rows: list[list[int]], width: int, pad_value: Any, pad_left: bool
) -> list[list[Any]]:
    return [
        [pad_value] * (width - len(row)) + row
        if pad_left
        else row + [pad_value] * (width - len(row))
        for row in rows
    ]


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(-50, 50), max_size=12), max_size=8),
    extra=st.integers(0, 5),
    keep=st.one_of(st.none(), st.integers(0, 12)),
    pad_left=st.booleans(),
    truncate_left=st.booleans(),
    dtype=st.sampled_from([torch.int64, torch.int32]),
)
def test_ragged_layout_and_rebuild(
    rows: list[list[int]],
    extra: int,
    keep: int | None,
    pad_left: bool,
    truncate_left: bool,
    dtype: torch.dtype,
) -> None:
    """The host layout (pack_ragged) and the device rebuild (run here on the CPU)."""
    kept_rows = [
        row if keep is None else (row[max(len(row) - keep, 0) :] if truncate_left else row[:keep])
        for row in rows
    ]
    width = max((len(row) for row in kept_rows), default=0) + extra
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    flat = sum(len(row) for row in kept_rows) + len(rows)
    values = torch.full((flat,), 99, dtype=dtype)
    meta = torch.zeros(2 * len(rows), dtype=dtype)
    written = _core.pack_ragged(
        [("input_ids", 0, rows)],
        [values.numpy()],
        [-7],
        lengths,
        meta.numpy(),
        width,
        -1 if keep is None else keep,
        pad_left,
        truncate_left,
    )
    assert written == flat
    # Only real tokens and one pad cell per row: nothing padded is written on the host.
    expected_flat = [
        token for row in kept_rows for token in ([-7, *row] if pad_left else [*row, -7])
    ]
    assert values.tolist() == expected_flat
    buffer = torch.cat([values, meta])
    index, keep_mask = rebuild_index(buffer, len(rows), width, flat, pad_left=pad_left)
    assert index.dtype == torch.int64 and index.shape == (len(rows), width)
    padded = gather_field(buffer, index, dtype, 0)
    assert padded.dtype == dtype and padded.shape == (len(rows), width)
    assert padded.tolist() == reference_expand(kept_rows, width, -7, pad_left)
    assert keep_mask.dtype == torch.bool
    assert keep_mask.tolist() == reference_expand(
        [[True] * len(row) for row in kept_rows], width, False, pad_left
    )


def test_pack_ragged_rejects_bad_outputs() -> None:
    rows = [[1, 2, 3], [4]]
    lengths = np.array([3, 1], dtype=np.int64)
    meta = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="6 elements"):
        _core.pack_ragged(
            [("x", 0, rows)], [np.zeros(5, np.int64)], [0], lengths, meta, 3, -1, False, False
        )
    with pytest.raises(TypeError, match="int32 or int64"):
        _core.pack_ragged(
            [("x", 0, rows)],
            [np.zeros(6, np.int64)],
            [0],
            lengths,
            np.zeros(4, np.int8),
            3,
            -1,
            False,
            False,
        )
    with pytest.raises(OverflowError, match="row 0 of 'x': value 300 does not fit int8"):
        _core.pack_ragged(
            [("x", 0, [[1, 300], [2]])],
            [np.zeros(5, np.int8)],
            [0],
            np.array([2, 1]),
            meta,
            2,
            -1,
            False,
            False,
        )
    with pytest.raises(OverflowError, match="pad value 1000"):
        _core.pack_ragged(
            [("x", 0, rows)], [np.zeros(6, np.int8)], [1000], lengths, meta, 3, -1, False, False
        )
    with pytest.raises(ValueError, match="does not fit the width"):
        _core.pack_ragged(
            [("x", 0, rows)], [np.zeros(6, np.int64)], [0], lengths, meta, 2, -1, False, False
        )
    with pytest.raises(TypeError, match="row 1 of 'x'"):
        _core.pack_ragged(
            [("x", 0, [[1], [None]])],
            [np.zeros(4, np.int64)],
            [0],
            np.array([1, 1]),
            meta,
            1,
            -1,
            False,
            False,
        )


class OpRecorder(TorchDispatchMode):
    """Records every aten op dispatched, split at the end of the host-to-device step."""

    def __init__(self) -> None:
        super().__init__()
        self.copied = False
        self.before: list[str] = []
        self.after: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        (self.after if self.copied else self.before).append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


# Ops that read back to the host (or whose output size depends on values): never in a rebuild.
SYNCING_OPS = {
    "nonzero",
    "masked_select",
    "_local_scalar_dense",
    "item",
    "unique",
    "repeat_interleave",
}


def recorded_call(
    monkeypatch: pytest.MonkeyPatch, packer: fastpad.Packer, rows: Any, **kwargs: Any
) -> tuple[Any, OpRecorder]:
    recorder = OpRecorder()
    to_device = Packer._to_device
    ship = PinnedRing.ship

    def marked(self: Packer, slot: Any, layout: Any, dtype: Any) -> Any:
        result = to_device(self, slot, layout, dtype)
        recorder.copied = True
        return result

    def marked_ship(self: PinnedRing, slot: Any, nbytes: int, consumer: Any) -> Any:
        result = ship(self, slot, nbytes, consumer)
        recorder.copied = True
        return result

    monkeypatch.setattr(Packer, "_to_device", marked)
    monkeypatch.setattr(PinnedRing, "ship", marked_ship)
    with recorder:
        batch = packer(rows, **kwargs)
    return batch, recorder


@pytest.mark.parametrize("simulated_cuda", [False, True], ids=["default-device", "simulated-cuda"])
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 8),
        ({"padding_side": "left"}, 8),
        ({"padding_side": "left", "pad_to_multiple_of": 8, "dtype": "int32"}, 8),
        ({"truncation": True, "max_length": 3, "truncation_side": "left"}, 8),
        ({"mask_dtype": "bool"}, 7),
        ({"return_attention_mask": False}, 7),
    ],
)
def test_ragged_rebuild_takes_at_most_8_ops(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], expected: int, simulated_cuda: bool
) -> None:
    """input_ids + attention_mask from the copied buffer: <= 8 torch ops, views included, none
    of which reads anything back to the host."""
    if simulated_cuda:
        monkeypatch.setattr(fastpad._ring, "_torch", lambda: FakeTorch())
    device = "cuda" if simulated_cuda or torch.cuda.is_available() else "cpu"
    packer = fastpad.Packer(device, pad_token_id=0, ragged_transfer=True)
    rows = [[101, 7592, 2088, 102], [101, 102], [], [101, 1, 2, 3, 4, 102]]
    for _ in range(packer.buffers):  # warm: every slot allocated
        packer(rows, **options)
    batch, recorder = recorded_call(monkeypatch, packer, rows, **options)
    if not simulated_cuda and packer.device.type == "cuda":  # a real GPU: compare on the host
        batch = batch.to("cpu")
    assert_same(batch, expected_pad(rows, pad_token_id=0, **options))
    assert len(recorder.after) == expected, recorder.after
    assert not SYNCING_OPS & set(recorder.after), recorder.after
    # Before the rebuild: the slot's views, the device buffer and its copy (a real GPU adds the
    # consumer's record_stream); no padded scratch.
    assert len(recorder.before) <= 7, recorder.before
    assert recorder.before.count("empty") <= 1, recorder.before
    assert packer.stats.ragged_batches == packer.buffers + 1


def test_padded_path_hands_out_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """The padded CUDA path's device side: one view per output of the copied buffer's dtype."""
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: FakeTorch())
    packer = fastpad.Packer("cuda", pad_token_id=0)
    rows = [[101, 7592, 2088, 102], [101, 102]]
    packer(rows)
    packer(rows)
    batch, recorder = recorded_call(monkeypatch, packer, rows)
    assert_same(batch, expected_pad(rows, pad_token_id=0))
    assert recorder.after == ["as_strided", "as_strided"]


class FakeEvent:
    """An event that completes only when waited for: every reuse of its slot must wait."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False) -> None:
        self.done = True
        self.records = 0
        self.blocking = blocking
        self.streams: list[Any] = []

    def record(self, stream: Any = None) -> None:
        self.done = False
        self.records += 1
        self.streams.append(stream)

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.done = True

    def wait(self, stream: Any) -> None:
        stream.wait_event(self)  # as torch.cuda.Stream.wait_event and Event.wait pair up


class FakeStream:
    """A CUDA stream that records the events it was made to wait for."""

    def __init__(self, device: Any = None) -> None:
        self.device = torch.device("cuda", 0) if device is None else torch.device(device)
        self.waited: list[FakeEvent] = []

    def wait_event(self, event: FakeEvent) -> None:
        self.waited.append(event)


class FakeCuda:
    Event = FakeEvent
    Stream = FakeStream

    def __init__(self) -> None:
        self.default_stream = FakeStream()

    def is_available(self) -> bool:
        return True

    def current_device(self) -> int:
        return 0

    def current_stream(self, device: Any = None) -> Any:
        return self.default_stream

    def stream(self, stream: Any) -> Any:
        return contextlib.nullcontext()

    def device(self, device: Any) -> Any:
        return contextlib.nullcontext()


class FakeTorch:
    """torch, with CUDA simulated on the CPU: 'pinned' and 'device' buffers are CPU tensors."""

    def __init__(self) -> None:
        self.cuda = FakeCuda()
        self.pinned: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def empty(self, *args: Any, pin_memory: bool = False, device: Any = None, **kwargs: Any) -> Any:
        tensor = torch.empty(*args, **kwargs)
        if pin_memory:
            self.pinned.append(tensor)
        return tensor


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_ring_logic_with_a_simulated_device(
    monkeypatch: pytest.MonkeyPatch, ragged: bool, stream: str | None
) -> None:
    """The CUDA path's ring (slots, events, growth, stats, one copy per batch, the consumer's
    wait on the copy) on the CPU."""
    fake = FakeTorch()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: fake)
    packer = fastpad.Packer(
        "cuda", buffers=2, pad_token_id=0, ragged_transfer=ragged, stream=stream
    )
    # "cuda": the device (and the side stream on it) are taken at the first copy.
    assert packer.device == torch.device("cuda") and packer.stream is None
    consumer = fake.cuda.default_stream
    rng = np.random.default_rng(3)
    largest = [[9] * 64] * 16
    batches = [largest, largest] + [
        [rng.integers(1, 1000, size=int(n)).tolist() for n in rng.integers(0, 65, size=16)]
        for _ in range(10)
    ]
    results = [packer(batch, padding_side="left") for batch in batches]
    assert packer.device == torch.device("cuda", 0)
    if stream is None:
        assert isinstance(packer.stream, FakeStream) and packer.stream is not consumer
    else:
        assert packer.stream is None
    stats = packer.stats
    assert stats.batches == 12
    assert stats.ragged_batches == (12 if ragged else 0)
    assert stats.pinned_allocations == len(fake.pinned) == 2
    assert stats.pinned_bytes == stats.ring_bytes == sum(buffer.numel() for buffer in fake.pinned)
    assert stats.reuses == 10
    assert stats.waits == 10  # every reuse found its slot's copy "in flight" and waited
    assert stats.copied_bytes == stats.payload_bytes > 0
    events = [slot.event for slot in packer._ring.slots]
    assert all(event.records == 6 and event.blocking for event in events)
    copy_stream = packer.stream or consumer
    assert all(recorded is copy_stream for event in events for recorded in event.streams)
    if stream is None:
        # The consumer waited (on the device) for every batch's copy before using it: deleting
        # that wait fails here, and in the CUDA side-stream tests.
        assert len(consumer.waited) == 12 and set(map(id, consumer.waited)) == set(map(id, events))
    else:
        assert consumer.waited == []
    for buffer in fake.pinned:
        buffer.fill_(255)  # the results were copied out of the slots
    for batch, result in zip(batches, results, strict=True):
        assert_same(result, expected_pad(batch, pad_token_id=0, padding_side="left"))
    packer([[1] * 1000] * 16)  # larger than the slots: one grows, geometrically
    grown = packer.stats
    assert grown.pinned_allocations == 3
    assert fake.pinned[-1].numel() >= 2 * fake.pinned[0].numel()
    # The grown-out slot stays pinned in torch's host cache: counted, no longer in the ring.
    assert grown.pinned_bytes == sum(buffer.numel() for buffer in fake.pinned)
    assert grown.ring_bytes == fake.pinned[1].numel() + fake.pinned[2].numel()


def test_stream_on_another_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTorch()
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: fake)
    with pytest.raises(ValueError, match=r"stream is on cuda:1 but the packer copies to cuda:0"):
        fastpad.Packer("cuda:0", stream=FakeStream("cuda:1"), pad_token_id=0)
    with pytest.raises(TypeError, match=r"torch\.cuda\.Stream"):
        fastpad.Packer("cuda:0", stream=object(), pad_token_id=0)
    packer = fastpad.Packer("cuda:1", stream=FakeStream("cuda:1"), pad_token_id=0)
    assert packer.device == torch.device("cuda", 1)
    assert "side" in repr(packer)


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
def test_scalars_of_every_dtype_ride_in_the_buffer(
    monkeypatch: pytest.MonkeyPatch, ragged: bool
) -> None:
    """Per-example scalars of dtypes numpy lacks (bfloat16) or of another size than the ids go
    through the pinned buffer and come out as views of the copied one."""
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: FakeTorch())
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged)
    dtypes = [torch.bfloat16, torch.float16, torch.bool, torch.int8, torch.complex64, torch.float64]
    examples = [
        {
            "input_ids": list(range(1, 2 + index)),
            **{
                str(dtype): torch.tensor(index % 3 - 0.5, dtype=torch.float64).to(dtype)
                for dtype in dtypes
            },
        }
        for index in range(5)
    ]
    expected = expected_pad(examples, pad_token_id=0)
    assert [expected[str(dtype)].dtype for dtype in dtypes] == dtypes
    assert_same(packer(examples), expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=rows_strategy,
    options=options_strategy,
    ragged=st.sampled_from([False, True, "auto"]),
    stream=st.sampled_from([None, "current"]),
    form=st.sampled_from(["lists", "Ragged", "fields"]),
)
def test_simulated_device_equals_pad(
    rows: list[list[int]],
    options: dict[str, Any],
    ragged: bool | str,
    stream: str | None,
    form: str,
) -> None:
    """The CUDA path (ring, copy, device views, rebuild) on a simulated device: equal to
    fastpad.pad on random batches, options and input forms, or the same exception type."""
    fake = FakeTorch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastpad._ring, "_torch", lambda: fake)
        packer = fastpad.Packer("cuda", buffers=1, ragged_transfer=ragged, stream=stream)
        encoded: Any = rows
        if form == "Ragged":
            encoded = fastpad.Ragged.from_rows(rows)
        elif form == "fields":
            encoded = {
                "input_ids": rows,
                "attention_mask": [[1] * len(row) for row in rows],
                "labels": [[token % 7 for token in row] for row in rows],
                "score": [index / 2 for index in range(len(rows))],
            }
        kwargs = {"pad_token_id": 5, "pad_values": {"labels": -100}, **options}
        check_against_pad(packer, encoded, **kwargs)
        check_against_pad(packer, encoded, **kwargs)  # the slot reused
