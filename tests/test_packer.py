"""fastpad.Packer on the CPU path: equal to fastpad.pad, results never overwritten, ragged transfer.

The CPU path runs the same layout code as the CUDA path (one buffer per batch, views at aligned
offsets, ragged expansion with torch ops); only pinning, the copy and the events are CUDA-only
(tests/test_packer_cuda.py).
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad._packer
from fastpad._packer import expand_ragged, ragged_mask, ragged_scatter_index

torch = pytest.importorskip("torch")

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


@pytest.fixture(params=[False, True], ids=["padded", "ragged"])
def packer(request: pytest.FixtureRequest) -> fastpad.Packer:
    return fastpad.Packer("cpu", pad_token_id=0, ragged_transfer=request.param)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, options=options_strategy, ragged=st.booleans())
def test_equals_pad_on_random_batches(
    rows: list[list[int]], options: dict[str, Any], ragged: bool
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
        assert stats.pinned_allocations == stats.pinned_bytes == 0
        assert stats.reuses == stats.waits == stats.copied_bytes == 0
        assert stats.output_bytes == 3 * 2 * cells * 8  # ids and mask, int64
    # Padded: ids and mask (mask at an aligned offset after the ids).
    assert padded_stats.payload_bytes == 3 * (cells * 8 + cells * 8)
    # Ragged: offsets (33 int64 = 264 bytes, next view at 512) and the 262 real tokens only.
    tokens = 200 + 31 * 2
    assert ragged_stats.payload_bytes == 3 * (512 + tokens * 8)
    assert ragged_stats.payload_bytes * 10 < padded_stats.payload_bytes


def test_cuda_without_a_device_falls_back_to_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    packer = fastpad.Packer(pad_token_id=0)
    assert packer.device == torch.device("cpu")
    assert packer.stream is None
    assert_same(packer([[1, 2], [3]]), expected_pad([[1, 2], [3]], pad_token_id=0))


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
    rows: list[list[int]], width: int, pad_value: int, pad_left: bool
) -> list[list[int]]:
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
    pad_left=st.booleans(),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.int8]),
)
def test_ragged_expansion_helpers(
    rows: list[list[int]], extra: int, pad_left: bool, dtype: torch.dtype
) -> None:
    """The device-side expansion, run here on the CPU: index, scatter and mask."""
    width = max((len(row) for row in rows), default=0) + extra
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.int64)
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    values = torch.tensor([token for row in rows for token in row], dtype=dtype)
    index = ragged_scatter_index(offsets, width, total, pad_left=pad_left)
    assert index.dtype == torch.int64 and index.shape == (total,)
    padded = expand_ragged(values, index, len(rows), width, -7)
    assert padded.dtype == dtype and padded.shape == (len(rows), width)
    assert padded.tolist() == reference_expand(rows, width, -7, pad_left)
    mask = ragged_mask(offsets, width, torch.bool, pad_left=pad_left)
    assert mask.dtype == torch.bool
    assert mask.tolist() == reference_expand(
        [[True] * len(row) for row in rows], width, False, pad_left
    )


class FakeEvent:
    """An event that completes only when waited for: every reuse of its slot must wait."""

    def __init__(self) -> None:
        self.done = True
        self.records = 0

    def record(self, stream: Any = None) -> None:
        self.done = False
        self.records += 1

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.done = True


class FakeCuda:
    Event = FakeEvent

    def __init__(self) -> None:
        self.default_stream = object()

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
def test_ring_logic_with_a_simulated_device(monkeypatch: pytest.MonkeyPatch, ragged: bool) -> None:
    """The CUDA path's ring (slots, events, growth, stats, one copy per batch) on the CPU."""
    fake = FakeTorch()
    monkeypatch.setattr(fastpad._packer, "_torch", lambda: fake)
    packer = fastpad.Packer("cuda", buffers=2, pad_token_id=0, ragged_transfer=ragged)
    assert packer.device == torch.device("cuda", 0)
    rng = np.random.default_rng(3)
    largest = [[9] * 64] * 16
    batches = [largest, largest] + [
        [rng.integers(1, 1000, size=int(n)).tolist() for n in rng.integers(0, 65, size=16)]
        for _ in range(10)
    ]
    results = [packer(batch, padding_side="left") for batch in batches]
    stats = packer.stats
    assert stats.batches == 12
    assert stats.pinned_allocations == len(fake.pinned) == 2
    assert stats.pinned_bytes == sum(buffer.numel() for buffer in fake.pinned)
    assert stats.reuses == 10
    assert stats.waits == 10  # every reuse found its slot's copy "in flight" and waited
    assert stats.copied_bytes == stats.payload_bytes > 0
    assert all(slot.event.records == 6 for slot in packer._slots)
    for buffer in fake.pinned:
        buffer.fill_(255)  # the results were copied out of the slots
    for batch, result in zip(batches, results, strict=True):
        assert_same(result, expected_pad(batch, pad_token_id=0, padding_side="left"))
    packer([[1] * 1000] * 16)  # larger than the slots: one grows, geometrically
    assert packer.stats.pinned_allocations == 3
    assert fake.pinned[-1].numel() >= 2 * fake.pinned[0].numel()
