"""fastpad.Packer on CUDA: equal to the CPU path, pinned ring reused, never corrupts, overlaps.

Every test here needs a CUDA device and is skipped without one (marker `cuda`, see conftest).
`torch.cuda._sleep(cycles)` holds a stream busy on the GPU: it stands in for a slow model step
or a long queue of copies, so the tests can check ordering without timing anything.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import fastpad

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# GPU clock cycles: ~0.1 s at 1.5-2 GHz, far longer than packing the small batches below.
SLEEP_CYCLES = 200_000_000


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


def random_rows(rng: np.random.Generator, rows: int, longest: int) -> list[list[int]]:
    return [
        rng.integers(1, 30_000, size=int(length)).tolist()
        for length in rng.integers(0, longest + 1, size=rows)
    ]


CASES = [
    ([[101, 7592, 102], [101, 102], []], {}),
    ([[101, 7592, 102], [101, 102]], {"padding_side": "left", "pad_to_multiple_of": 8}),
    ([[1, 2, 3, 4, 5], [6, 7]], {"truncation": True, "max_length": 3, "truncation_side": "left"}),
    ([[1, 2, 3], [4]], {"dtype": "int32", "mask_dtype": "bool"}),
    ([[1, 2, 3], [4]], {"padding": "max_length", "max_length": 6, "return_attention_mask": False}),
    ([], {}),
]


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
@pytest.mark.parametrize(("rows", "options"), CASES)
def test_device_results_equal_cpu(
    rows: list[list[int]], options: dict[str, Any], ragged: bool
) -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=ragged)
    assert packer.device.type == "cuda"
    result = packer(rows, **options)
    torch.cuda.synchronize()
    assert_equal_to_cpu(result, fastpad.pad(rows, pad_token_id=0, pin_memory=False, **options))


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
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
    assert_equal_to_cpu(result, fastpad.pad(encoded, pad_token_id=0, pin_memory=False, **options))


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
def test_no_new_pinned_allocations_in_steady_state(ragged: bool) -> None:
    rng = np.random.default_rng(2)
    packer = fastpad.Packer("cuda", buffers=2, pad_token_id=0, ragged_transfer=ragged)
    largest = [[7] * 128] * 64
    packer(largest)
    packer(largest)  # both slots sized for the largest batch
    warm = packer.stats
    assert warm.pinned_allocations == 2
    assert warm.pinned_bytes > 0
    assert all(slot.buffer.is_pinned() for slot in packer._slots)
    for _ in range(40):
        packer(random_rows(rng, int(rng.integers(1, 65)), 128))
    steady = packer.stats
    assert steady.pinned_allocations == warm.pinned_allocations
    assert steady.pinned_bytes == warm.pinned_bytes
    assert steady.reuses == warm.reuses + 40
    assert steady.copied_bytes == steady.payload_bytes
    # A larger batch grows one slot (geometrically), once.
    packer([[7] * 512] * 64)
    assert packer.stats.pinned_allocations == warm.pinned_allocations + 1


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
@pytest.mark.parametrize("side_stream", [False, True], ids=["current-stream", "side-stream"])
def test_slow_copy_stream_never_corrupts(ragged: bool, side_stream: bool) -> None:
    """Copies held back on the GPU: the packer must wait for a slot, never rewrite it early."""
    stream = torch.cuda.Stream() if side_stream else None
    packer = fastpad.Packer(
        "cuda", buffers=2, stream=stream, pad_token_id=0, ragged_transfer=ragged
    )
    copy_stream = stream if stream is not None else torch.cuda.current_stream()
    results = []
    for number in range(8):
        sleep_on(copy_stream)  # this batch's copy queues behind the sleep
        # Batch `number` holds only the token number + 1: any mix-up shows in the values.
        rows = [[number + 1] * (20 + row % 7) for row in range(64)]
        results.append((rows, packer(rows)))
    assert packer.stats.waits > 0  # slots were still being copied from and were waited for
    torch.cuda.synchronize()
    for rows, result in results:
        assert_equal_to_cpu(result, fastpad.pad(rows, pad_token_id=0, pin_memory=False))


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
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


@pytest.mark.parametrize("ragged", [False, True], ids=["padded", "ragged"])
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
    assert_equal_to_cpu(first, fastpad.pad(first_rows, pad_token_id=0, pin_memory=False))
    assert_equal_to_cpu(second, fastpad.pad(second_rows, pad_token_id=0, pin_memory=False))


def test_ragged_transfer_moves_fewer_bytes() -> None:
    rows = [[5] * 256] + [[5] * 4] * 63
    padded = fastpad.Packer("cuda", pad_token_id=0)
    ragged = fastpad.Packer("cuda", pad_token_id=0, ragged_transfer=True)
    expected = fastpad.pad(rows, pad_token_id=0, pin_memory=False)
    ragged_result, padded_result = ragged(rows), padded(rows)
    torch.cuda.synchronize()
    assert_equal_to_cpu(ragged_result, expected)
    assert_equal_to_cpu(padded_result, expected)
    assert ragged.stats.copied_bytes * 10 < padded.stats.copied_bytes
    assert ragged.stats.output_bytes == padded.stats.output_bytes


def test_shared_between_threads() -> None:
    packer = fastpad.Packer("cuda", pad_token_id=0)
    failures: list[int] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(30):
            rows = random_rows(rng, 16, 40)
            result = packer(rows)
            torch.cuda.current_stream().synchronize()
            expected = fastpad.pad(rows, pad_token_id=0, pin_memory=False)
            if not all(torch.equal(result[key].cpu(), expected[key]) for key in expected):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert packer.stats.batches == 120


def test_tokenizer_output_equals_tokenizer_pad(tokenizer: Any, sentences: list[str]) -> None:
    encoded = tokenizer(sentences)
    packer = fastpad.Packer("cuda", tokenizer=tokenizer)
    result = packer(encoded)
    expected = tokenizer.pad(encoded, return_tensors="pt")
    torch.cuda.synchronize()
    for key in expected:
        assert torch.equal(result[key].cpu(), expected[key]), key
