"""fastpad.Packer on CUDA: equal to the CPU path, pinned ring reused, never corrupts, overlaps.

Every test here needs a CUDA device and is skipped without one (marker `cuda`, see conftest).
`torch.cuda._sleep(cycles)` holds a stream busy on the GPU: it stands in for a slow model step
or a long queue of copies, so the tests can check ordering without timing anything. Results are
read on the consumer stream before any host synchronization where the ordering matters (a copy
read before it ran shows up as wrong values), and compared after one.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# GPU clock cycles: ~0.1 s at 1.5-2 GHz, far longer than packing the small batches below.
SLEEP_CYCLES = 200_000_000
PATHS = [False, True]
PATH_IDS = ["padded", "ragged"]


def sleep_on(stream: Any, cycles: int = SLEEP_CYCLES) -> None:
    with torch.cuda.stream(stream):
        torch.cuda._sleep(cycles)


def assert_equal_to_cpu(result: dict[str, Any], expected: dict[str, Any]) -> None:
    assert isinstance(result, fastpad.Batch)
    assert list(result) == list(expected)
    for key, value in expected.items():
        got = result[key]
        assert got.device.type == "cuda", key
        assert got.dtype == value.dtype, key
        assert tuple(got.shape) == tuple(value.shape), key
        assert torch.equal(got.cpu(), value), key


def expected_pad(encoded: Any, **options: Any) -> Any:
    return fastpad.pad(encoded, pin_memory=False, **options)


def random_rows(rng: np.random.Generator, rows: int, longest: int) -> list[list[int]]:
    return [
        rng.integers(1, 30_000, size=int(length)).tolist()
        for length in rng.integers(0, longest + 1, size=rows)
    ]


def cloned(batch: dict[str, Any]) -> dict[str, Any]:
    """Copies made on the current stream: they read the batch when that stream gets there."""
    return fastpad.Batch({key: value.clone() for key, value in batch.items()})


CASES = [
    ([[101, 7592, 102], [101, 102], []], {}),
    ([101, 7592, 2088, 102], {}),  # one flat row: a batch of one
    ([[101, 7592, 102], [101, 102]], {"padding_side": "left", "pad_to_multiple_of": 8}),
    ([[1, 2, 3, 4, 5], [6, 7]], {"truncation": True, "max_length": 3, "truncation_side": "left"}),
    ([[1, 2, 3], [4]], {"dtype": "int32", "mask_dtype": "bool"}),
    ([[1, 2, 3], [4]], {"padding": "max_length", "max_length": 6, "return_attention_mask": False}),
    ([], {}),
]


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize(("rows", "options"), CASES)
def test_device_results_equal_cpu(rows: Any, options: dict[str, Any], ragged: bool) -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged)
    assert packer.device.type == "cuda"
    result = packer(rows, **options)
    torch.cuda.synchronize()
    assert_equal_to_cpu(result, expected_pad(rows, pad_token_id=0, **options))


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_fields_and_scalars_equal_cpu(ragged: bool) -> None:
    rng = np.random.default_rng(1)
    rows = random_rows(rng, 24, 50)
    encoded = {
        "input_ids": fastpad.Ragged.from_rows(rows),
        "attention_mask": [[1] * len(row) for row in rows],
        "labels": [[token % 9 for token in row] for row in rows],
        "label": [index / 3 for index in range(len(rows))],
        "idx": np.arange(len(rows), dtype=np.int32),
    }
    options = {"pad_values": {"labels": -100}, "padding_side": "left"}
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged)
    result = packer(encoded, **options)
    torch.cuda.synchronize()
    assert_equal_to_cpu(result, expected_pad(encoded, pad_token_id=0, **options))


# -- randomized, both paths ----------------------------------------------------------------------

_PACKERS: dict[tuple[bool, str | None], fastpad.Packer] = {}


def shared_packer(ragged: bool, stream: str | None) -> fastpad.Packer:
    """One packer per configuration for the whole module (hypothesis calls the test often)."""
    key = (ragged, stream)
    if key not in _PACKERS:
        _PACKERS[key] = fastpad.Packer("cuda", ragged_transfer=ragged, stream=stream)
    return _PACKERS[key]


token = st.integers(-(2**31), 2**31 - 1)
rows_strategy = st.lists(st.lists(token, max_size=40), min_size=1, max_size=12)
options_strategy = st.fixed_dictionaries(
    {
        "padding_side": st.sampled_from(["left", "right"]),
        "truncation_side": st.sampled_from(["left", "right"]),
    },
    optional={
        "padding": st.sampled_from([True, "max_length"]),
        "max_length": st.integers(0, 48),
        "truncation": st.booleans(),
        "pad_to_multiple_of": st.sampled_from([None, 1, 3, 8, 64]),
        "return_attention_mask": st.booleans(),
        "dtype": st.sampled_from(["int64", "int32"]),
        "mask_dtype": st.sampled_from(["int64", "int32", "int8", "bool"]),
    },
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=rows_strategy,
    options=options_strategy,
    given_mask=st.sampled_from([None, "bool", "int8"]),
    ragged=st.sampled_from(PATHS),
    stream=st.sampled_from([None, "current"]),
)
def test_random_batches_equal_pad(
    rows: list[list[int]],
    options: dict[str, Any],
    given_mask: str | None,
    ragged: bool,
    stream: str | None,
) -> None:
    """Random rows (a single row included), a given bool/int8 mask, truncation side x padding
    side x pad_to_multiple_of with max_length, int32 ids: the device batch equals fastpad.pad,
    or both raise the same exception type."""
    encoded: Any = rows
    if given_mask is not None:
        options = {**options, "mask_dtype": given_mask}
        encoded = {
            "input_ids": rows,
            "attention_mask": [
                [int((index + column) % 3 != 0) for column in range(len(row))]
                for index, row in enumerate(rows)
            ],
        }
    packer = shared_packer(ragged, stream)
    try:
        expected = expected_pad(encoded, pad_token_id=3, **options)
    except (TypeError, ValueError, OverflowError) as error:
        with pytest.raises(type(error)):
            packer(encoded, pad_token_id=3, **options)
        return
    result = cloned(packer(encoded, pad_token_id=3, **options))
    torch.cuda.synchronize()
    assert_equal_to_cpu(result, expected)


# -- streams and devices ---------------------------------------------------------------------------


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_consumer_waits_for_the_side_stream_copy(ragged: bool) -> None:
    """The copy is held back on its side stream; the batch is read on the consumer stream before
    any host synchronization. Without the consumer's wait on the copy's event the clones would
    read device memory the copy had not written yet."""
    stream = torch.cuda.Stream()
    packer = fastpad.Packer("cuda", stream=stream, pad_token_id=0, ragged_transfer=ragged)
    rng = np.random.default_rng(11)  # values no other test packs
    rows = random_rows(rng, 48, 200)
    expected = expected_pad(rows, pad_token_id=0)
    torch.cuda.synchronize()
    sleep_on(stream)  # the copy queues behind ~0.1 s of GPU work
    copies = cloned(packer(rows))  # queued on the consumer right away
    assert not stream.query()  # the copy has not run yet: the clones must wait for it
    torch.cuda.synchronize()
    assert_equal_to_cpu(copies, expected)


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_side_stream_copy_does_not_queue_behind_the_current_stream(ragged: bool) -> None:
    """Why the side stream is the default: its copy runs while the current stream (the model)
    is busy; with stream="current" the copy waits for everything queued there first."""
    side = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged)
    current = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged, stream="current")
    assert side.stream is not None and current.stream is None
    rows = random_rows(np.random.default_rng(12), 32, 64)
    for packer in (side, current, side, current):  # warm: slots and device memory
        packer(rows)
    torch.cuda.synchronize()
    busy = torch.cuda.current_stream()
    sleep_on(busy, SLEEP_CYCLES * 5)  # ~0.5 s of "model" on the current stream
    from_side = cloned(side(rows))
    side._ring.current.event.synchronize()  # the side-stream copy completes...
    assert not busy.query()  # ...while the current stream is still busy
    from_current = cloned(current(rows))
    assert not current._ring.current.event.query()  # queued behind the busy stream
    torch.cuda.synchronize()
    expected = expected_pad(rows, pad_token_id=0)
    assert_equal_to_cpu(from_side, expected)
    assert_equal_to_cpu(from_current, expected)


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_call_inside_a_stream_context(ragged: bool, stream: str | None) -> None:
    """Inside ``with torch.cuda.stream(s)`` the batch is ready on s (the consumer then)."""
    packer = fastpad.Packer("cuda:0", pad_token_id=0, ragged_transfer=ragged, stream=stream)
    rows = random_rows(np.random.default_rng(13), 24, 80)
    consumer = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(consumer):
        sleep_on(consumer, SLEEP_CYCLES // 2)
        if packer.stream is not None:
            sleep_on(packer.stream, SLEEP_CYCLES)  # the copy finishes after the consumer's sleep
        copies = cloned(packer(rows))
    consumer.synchronize()  # only the consumer: its clones must have waited for the copy
    assert_equal_to_cpu(copies, expected_pad(rows, pad_token_id=0))
    torch.cuda.synchronize()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_packer_on_a_device_that_is_not_current(ragged: bool) -> None:
    assert torch.cuda.current_device() == 0
    with pytest.raises(ValueError, match="stream is on cuda:0 but the packer copies to cuda:1"):
        fastpad.Packer("cuda:1", stream=torch.cuda.Stream(device=0), pad_token_id=0)
    packer = fastpad.Packer("cuda:1", pad_token_id=0, ragged_transfer=ragged)
    assert packer.stream is not None and packer.stream.device == torch.device("cuda", 1)
    rows = random_rows(np.random.default_rng(14), 32, 100)
    sleep_on(packer.stream)  # the copy queues behind ~0.1 s on device 1
    copies = cloned(packer(rows))  # device 0 stays current; clones run on device 1's stream
    assert torch.cuda.current_device() == 0
    assert all(value.device == torch.device("cuda", 1) for value in copies.values())
    torch.cuda.synchronize(1)
    assert_equal_to_cpu(copies, expected_pad(rows, pad_token_id=0))
    explicit = fastpad.Packer("cuda:1", stream=torch.cuda.Stream(device=1), pad_token_id=0)
    result = explicit(rows)
    torch.cuda.synchronize(1)
    assert_equal_to_cpu(result, expected_pad(rows, pad_token_id=0))


# -- the ring under pressure -----------------------------------------------------------------------


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_no_new_pinned_allocations_in_steady_state(ragged: bool) -> None:
    rng = np.random.default_rng(2)
    packer = fastpad.Packer("cuda", buffers=2, pad_token_id=0, ragged_transfer=ragged)
    largest = [[7] * 128] * 64
    packer(largest)
    packer(largest)  # both slots sized for the largest batch
    warm = packer.stats
    assert warm.pinned_allocations == 2
    assert warm.pinned_bytes == warm.ring_bytes > 0
    assert all(slot.buffer.is_pinned() for slot in packer._ring.slots)
    for _ in range(40):
        packer(random_rows(rng, int(rng.integers(1, 65)), 128))
    steady = packer.stats
    assert steady.pinned_allocations == warm.pinned_allocations
    assert steady.pinned_bytes == warm.pinned_bytes
    assert steady.reuses == warm.reuses + 40
    assert steady.copied_bytes == steady.payload_bytes
    # A larger batch grows one slot (geometrically), once; the old one stays pinned in torch's
    # host cache, so pinned_bytes counts it and ring_bytes does not.
    packer([[7] * 512] * 64)
    grown = packer.stats
    assert grown.pinned_allocations == warm.pinned_allocations + 1
    assert grown.pinned_bytes > grown.ring_bytes > warm.ring_bytes
    torch.cuda.synchronize()


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("buffers", [1, 2, 3])
@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_slow_copy_stream_never_corrupts(ragged: bool, buffers: int, stream: str | None) -> None:
    """Copies held back on the GPU: the packer must wait for a slot, never rewrite it early."""
    packer = fastpad.Packer(
        "cuda:0", buffers=buffers, stream=stream, pad_token_id=0, ragged_transfer=ragged
    )
    copy_stream = packer.stream if packer.stream is not None else torch.cuda.current_stream()
    results = []
    for number in range(buffers + 4):
        sleep_on(copy_stream, SLEEP_CYCLES // 2)  # this batch's copy queues behind the sleep
        # Batch `number` holds only the token number + 1: any mix-up shows in the values.
        rows = [[number + 1] * (20 + row % 7) for row in range(64)]
        results.append((rows, cloned(packer(rows))))
    assert packer.stats.waits > 0  # slots were still being copied from and were waited for
    torch.cuda.synchronize()
    for rows, result in results:
        assert_equal_to_cpu(result, expected_pad(rows, pad_token_id=0))


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_slot_grows_while_its_copy_is_in_flight(ragged: bool) -> None:
    stream = torch.cuda.Stream()
    packer = fastpad.Packer(
        "cuda", buffers=2, stream=stream, pad_token_id=0, ragged_transfer=ragged
    )
    small, other, large = [[1] * 10] * 4, [[2] * 10] * 4, [[3] * 2000] * 64
    packer(small)
    packer(other)  # both slots at their smallest size
    torch.cuda.synchronize()
    before = packer.stats
    sleep_on(stream)  # the next copies queue behind ~0.1 s
    first = cloned(packer(small))  # slot 0, copy pending
    second = cloned(packer(other))  # slot 1, copy pending
    third = cloned(packer(large))  # slot 0 again: waits for the first copy, then grows
    after = packer.stats
    assert after.waits == before.waits + 1
    assert after.pinned_allocations == before.pinned_allocations + 1
    torch.cuda.synchronize()
    assert_equal_to_cpu(first, expected_pad(small, pad_token_id=0))
    assert_equal_to_cpu(second, expected_pad(other, pad_token_id=0))
    assert_equal_to_cpu(third, expected_pad(large, pad_token_id=0))


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_slow_consumer_with_side_stream_never_corrupts(ragged: bool) -> None:
    """The consumer lags behind the copy stream and batches are freed before it reads them.

    The device memory of a freed batch must not be handed to the next copy until the consumer
    stream has read it (`record_stream`); otherwise the sums below see later batches.
    """
    stream = torch.cuda.Stream()
    packer = fastpad.Packer("cuda", stream=stream, pad_token_id=0, ragged_transfer=ragged)
    consumer = torch.cuda.current_stream()
    sums = []
    for number in range(16):
        sleep_on(consumer, SLEEP_CYCLES // 4)
        batch = packer([[number + 1] * 32] * 64)
        sums.append(batch["input_ids"].sum())  # queued on the consumer, after the sleep
        del batch  # freed on the host before the consumer ran
    torch.cuda.synchronize()
    assert [int(total) for total in sums] == [(number + 1) * 32 * 64 for number in range(16)]


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_many_random_batches_with_slow_copies_and_a_slow_consumer(ragged: bool) -> None:
    """~200 random batches, the copy stream and the consumer both held back a little before
    each call, every batch kept and compared at the end."""
    rng = np.random.default_rng(15)
    stream = torch.cuda.Stream()
    packer = fastpad.Packer("cuda", stream=stream, pad_token_id=0, ragged_transfer=ragged)
    consumer = torch.cuda.current_stream()
    kept = []
    for number in range(200):
        sleep_on(stream, 1_000_000)  # ~0.5 ms
        sleep_on(consumer, 1_000_000)
        rows = random_rows(rng, int(rng.integers(1, 48)), int(rng.integers(1, 300)))
        options = {
            "padding_side": "left" if number % 2 else "right",
            "pad_to_multiple_of": 8 if number % 3 == 0 else None,
        }
        kept.append((rows, options, packer(rows, **options)))
    torch.cuda.synchronize()
    for rows, options, result in kept:
        assert_equal_to_cpu(result, expected_pad(rows, pad_token_id=0, **options))
    assert packer.stats.batches == 200


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_steady_state_calls_never_synchronize(ragged: bool, stream: str | None) -> None:
    """Once the ring is warm a call neither waits for the device nor reads from it: torch's sync
    debug mode turns any synchronizing CUDA call into an error."""
    rng = np.random.default_rng(16)
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged, stream=stream)
    batches = [random_rows(rng, 32, 128) for _ in range(20)]
    for _ in range(2):
        packer([[1] * 128] * 32, padding_side="left", pad_to_multiple_of=8)  # slots at full size
    torch.cuda.synchronize()
    results = []
    previous = torch.cuda.get_sync_debug_mode()
    try:
        with warnings.catch_warnings():
            # torch says the mode is a prototype (a UserWarning, an error under our filters)
            # after it has switched the mode on: the finally below must still switch it off.
            warnings.filterwarnings("ignore", "Synchronization debug mode", UserWarning)
            torch.cuda.set_sync_debug_mode("error")
        for number, rows in enumerate(batches):
            options = {"padding_side": "left" if number % 2 else "right", "pad_to_multiple_of": 8}
            results.append((rows, options, packer(rows, **options)))
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Synchronization debug mode", UserWarning)
            torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    for rows, options, result in results:
        assert_equal_to_cpu(result, expected_pad(rows, pad_token_id=0, **options))


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_copies_overlap_packing(ragged: bool) -> None:
    """A call returns before its copy ran, and the next batch is packed meanwhile (no wait)."""
    stream = torch.cuda.Stream()
    packer = fastpad.Packer(
        "cuda", buffers=2, stream=stream, pad_token_id=0, ragged_transfer=ragged
    )
    first_rows = [[1] * 100] * 32
    second_rows = [[2] * 90] * 32
    packer(first_rows)
    packer(second_rows)  # warm: both slots allocated, device memory cached
    torch.cuda.synchronize()
    waits = packer.stats.waits
    sleep_on(stream, SLEEP_CYCLES * 5)  # hold the copy stream for ~0.5 s
    first = packer(first_rows)
    second = packer(second_rows)  # packed while the first copy is still pending
    assert not stream.query()  # neither copy has run: the host did not wait for them
    assert packer.stats.waits == waits
    torch.cuda.synchronize()
    assert_equal_to_cpu(first, expected_pad(first_rows, pad_token_id=0))
    assert_equal_to_cpu(second, expected_pad(second_rows, pad_token_id=0))


def test_ragged_transfer_moves_fewer_bytes() -> None:
    rows = [[5] * 256] + [[5] * 4] * 63
    padded = fastpad.Packer("cuda", pad_token_id=0)
    ragged = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=True)
    auto = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer="auto")
    expected = expected_pad(rows, pad_token_id=0)
    ragged_result, padded_result, auto_result = ragged(rows), padded(rows), auto(rows)
    torch.cuda.synchronize()
    for result in (ragged_result, padded_result, auto_result):
        assert_equal_to_cpu(result, expected)
    assert ragged.stats.copied_bytes * 10 < padded.stats.copied_bytes
    assert ragged.stats.output_bytes == padded.stats.output_bytes
    assert ragged.stats.ragged_batches == 1 and padded.stats.ragged_batches == 0


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("stream", [None, "current"], ids=["side-stream", "current-stream"])
def test_shared_between_threads(ragged: bool, stream: str | None) -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged, stream=stream)
    failures: list[int] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(30):
            rows = random_rows(rng, 16, 40)
            result = cloned(packer(rows))
            torch.cuda.current_stream().synchronize()
            expected = expected_pad(rows, pad_token_id=0)
            if not all(torch.equal(result[key].cpu(), expected[key]) for key in expected):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert packer.stats.batches == 120


# -- per-example scalars on the device -----------------------------------------------------------


@pytest.mark.parametrize("ragged", PATHS, ids=PATH_IDS)
def test_scalars_of_every_kind_match_tokenizer_pad(ragged: bool) -> None:
    """bfloat16 scalars that require grad, scalars already on the GPU, a 1-D tensor field on the
    GPU: fastpad.pad equals tokenizer.pad, the packer equals it moved to the device."""
    from fastpad._bench.workloads import load_tokenizer

    loaded, note = load_tokenizer()
    if loaded is None:
        pytest.skip(note)
    tokenizer = loaded.tokenizer
    rows = [[101, 7, 102], [101, 102], [101, 5, 6, 102]]
    examples = [
        {
            "input_ids": row,
            "label": torch.tensor(index + 0.5, dtype=torch.bfloat16, requires_grad=True),
            "on_gpu": torch.tensor(index, dtype=torch.int32, device="cuda"),
            "weight": torch.tensor(index / 4, device="cuda", requires_grad=True),
        }
        for index, row in enumerate(rows)
    ]
    mapping = {"input_ids": rows, "score": torch.arange(3, dtype=torch.float16, device="cuda")}
    packer = fastpad.Packer("cuda", tokenizer=tokenizer, ragged_transfer=ragged)
    for encoded, keys in ((examples, ("label", "on_gpu", "weight")), (mapping, ("score",))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.tensor on tensors that require grad warns
            expected = tokenizer.pad(encoded, return_tensors="pt")
        padded = fastpad.pad(encoded, tokenizer=tokenizer, pin_memory=False)
        result = packer(encoded)
        torch.cuda.synchronize()
        for key in keys:
            for got in (padded[key], result[key].cpu()):
                assert got.dtype == expected[key].dtype, key
                assert not got.requires_grad, key
                assert torch.equal(got, expected[key].detach().to(got.device)), key
            assert padded[key].device == expected[key].device, key
            assert result[key].device.type == "cuda", key


def test_tokenizer_output_equals_tokenizer_pad(tokenizer: Any, sentences: list[str]) -> None:
    encoded = tokenizer(sentences)
    for ragged in PATHS:
        packer = fastpad.Packer("cuda", tokenizer=tokenizer, ragged_transfer=ragged)
        result = packer(encoded)
        expected = tokenizer.pad(encoded, return_tensors="pt")
        torch.cuda.synchronize()
        for key in expected:
            assert torch.equal(result[key].cpu(), expected[key]), key


# -- the device-side ring and the lean call (issue 20) ------------------------------------------


def test_released_batches_reuse_device_buffers_at_fixed_addresses() -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=2)
    rows = random_rows(np.random.default_rng(17), 32, 64)
    expected = expected_pad(rows, pad_token_id=0)
    addresses = []
    for _ in range(8):
        batch = packer(rows)
        addresses.append(batch["input_ids"].data_ptr())
        assert_equal_to_cpu(batch, expected)  # read (and synchronized) before it is let go of
        del batch
    assert packer.stats.device_allocations == 2
    assert len(set(addresses)) == 2


def test_reuse_after_the_current_stream_changed_waits_for_the_old_one() -> None:
    """stream="current", one slot: batch 1 is read on s1 behind a GPU sleep and let go of; batch
    2, packed while s2 is current, reuses the device buffer: its copy must wait on the device for
    s1's read (the release event recorded on s1), or the sum would see batch 2's tokens."""
    packer = fastpad.Packer("cuda", pad_token_id=0, buffers=1, stream="current")
    first, second = torch.cuda.Stream(), torch.cuda.Stream()
    packer([[9] * 32] * 64)  # the slot and its device buffer allocated
    torch.cuda.synchronize()
    with torch.cuda.stream(first):
        batch = packer([[1] * 32] * 64)
        sleep_on(first)  # the read below queues behind ~0.1 s
        total_first = batch["input_ids"].sum()
        del batch
    with torch.cuda.stream(second):
        batch = packer([[2] * 32] * 64)
        total_second = batch["input_ids"].sum()
    torch.cuda.synchronize()
    assert int(total_first) == 32 * 64 and int(total_second) == 2 * 32 * 64
    assert packer.stats.device_allocations == 1


def test_a_padded_call_of_64_rows_stays_lean_on_the_gpu() -> None:
    """On a real GPU (torch's C entry points): <= 60 Python function calls (about 240 before the
    lean path) and 5 aten ops per padded call of 64 rows, once the ring is warm."""
    import cProfile
    import pstats

    from torch.utils._python_dispatch import TorchDispatchMode

    from fastpad._ring import TorchCudaCalls

    class OpCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            self.ops.append(str(func.overloadpacket.__name__))
            return func(*args, **(kwargs or {}))

    rows = random_rows(np.random.default_rng(18), 64, 120)
    packer = fastpad.Packer("cuda:0", pad_token_id=0)
    assert isinstance(packer._calls, TorchCudaCalls)
    for _ in range(4):
        packer(rows)
    torch.cuda.synchronize()
    profile = cProfile.Profile()
    profile.enable()
    batch = packer(rows)
    profile.disable()
    stats = pstats.Stats(profile)
    with OpCounter() as counter:
        packer(rows)
    torch.cuda.synchronize()
    assert_equal_to_cpu(batch, expected_pad(rows, pad_token_id=0))
    assert stats.total_calls - 1 <= 60, stats.sort_stats("ncalls").print_stats(40)
    assert counter.ops == ["slice", "slice", "copy_", "as_strided", "as_strided"]


@pytest.mark.parametrize("created", ["inside", "outside"])
def test_prefetch_with_a_packer_on_the_gpu(created: str) -> None:
    """Packer calls in prefetch's thread (on the prefetcher's own stream), batches used on the
    stream current where they are taken, the prefetcher created inside or outside that stream's
    context: equal to fastpad.pad, with the consumer and the worker's stream held back, and no
    device allocation after warm-up."""
    rng = np.random.default_rng(19)
    batches = [random_rows(rng, 16, 100) for _ in range(24)]
    packer = fastpad.Packer("cuda", pad_token_id=0)
    consumer = torch.cuda.Stream()
    sums = []
    prefetched = fastpad.prefetch(batches, packer) if created == "outside" else None
    with torch.cuda.stream(consumer):
        if prefetched is None:
            prefetched = fastpad.prefetch(batches, packer)
        sleep_on(prefetched.stream, SLEEP_CYCLES // 4)  # the worker's copies land late
        for rows, batch in zip(batches, prefetched, strict=True):
            sleep_on(consumer, SLEEP_CYCLES // 20)
            sums.append((rows, batch["input_ids"].sum(), batch["attention_mask"].sum()))
    torch.cuda.synchronize()
    for rows, ids, mask in sums:
        assert int(ids) == sum(map(sum, rows)) and int(mask) == sum(map(len, rows))
    assert packer.buffers == 2 + 3
    assert packer.stats.device_allocations == packer.buffers
