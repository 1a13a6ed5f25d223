"""Many Python threads calling fastpad at once get the same results as serial calls.

Covers the GIL-held list path, the GIL-released buffer paths (`Ragged`, array rows, the mask) and
the internal row-splitting threads (`threads=`), mixed in one pool, plus errors raised on some
threads while others succeed. A `Packer` is checked to be either safe to share or to refuse
concurrent use with a clear error.
"""

from __future__ import annotations

import importlib.util
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import fastpad

THREADS = 8
CALLS = 200
# Torch tensors too where torch is installed (.ci/run tests the other Pythons without it).
TENSORS = ["np", "pt"] if importlib.util.find_spec("torch") else ["np"]


def _batch(seed: int) -> tuple[str, Any, dict[str, Any]]:
    rng = random.Random(seed)
    rows = [
        [rng.randrange(30_000) for _ in range(rng.randrange(0, 40))]
        for _ in range(rng.randrange(1, 24))
    ]
    kind = seed % 5
    kwargs: dict[str, Any] = {
        "pad_token_id": rng.choice([0, 1]),
        "padding_side": rng.choice(["left", "right"]),
        "return_tensors": rng.choice(TENSORS),
    }
    if seed % 3 == 0:
        kwargs.update(truncation=True, max_length=rng.randrange(1, 30))
    if kind == 0:
        return "lists", rows, kwargs
    if kind == 1:
        return "ragged", fastpad.Ragged.from_rows(rows), kwargs
    if kind == 2:
        return "array-rows", [np.asarray(row, dtype=np.int32) for row in rows], kwargs
    if kind == 3:  # the internal thread split, run from many Python threads at once
        return "ragged-threads", fastpad.Ragged.from_rows(rows), {**kwargs, "threads": 4}
    labels = [[rng.choice([-100, 1, 2]) for _ in row] for row in rows]
    return (
        "mapping",
        {"input_ids": rows, "labels": labels},
        {**kwargs, "pad_values": {"labels": -100}},
    )


def _plain(batch: Any) -> dict[str, list[Any]]:
    return {key: np.asarray(value).tolist() for key, value in batch.items()}


def _call(seed: int) -> Any:
    _name, inputs, kwargs = _batch(seed)
    try:
        return _plain(fastpad.pad(inputs, **kwargs))
    except (TypeError, ValueError, OverflowError) as error:
        return type(error).__name__


def test_concurrent_calls_match_serial_calls() -> None:
    seeds = list(range(CALLS))
    serial = [_call(seed) for seed in seeds]
    barrier = threading.Barrier(THREADS)

    def worker(offset: int) -> list[Any]:
        barrier.wait()  # start together so the calls overlap
        return [(seed, _call(seed)) for seed in seeds[offset::THREADS]]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [item for chunk in pool.map(worker, range(THREADS)) for item in chunk]
    assert len(results) == len(seeds)
    for seed, result in results:
        assert result == serial[seed], f"seed {seed} ({_batch(seed)[0]}) differs under threads"


def test_concurrent_errors_do_not_leak_into_other_calls() -> None:
    good = [[1, 2, 3], [4]]
    expected = _plain(fastpad.pad(good, pad_token_id=0, return_tensors="np"))
    bad_inputs = [[[1, None]], [[2**70]], fastpad.Ragged(np.arange(3), np.array([0, 5]))]

    def worker(index: int) -> list[Any]:
        outcomes = []
        for step in range(100):
            if (index + step) % 2:
                with pytest.raises((TypeError, ValueError, OverflowError)):
                    fastpad.pad(bad_inputs[step % 3], pad_token_id=0, return_tensors="np")
            else:
                outcomes.append(_plain(fastpad.pad(good, pad_token_id=0, return_tensors="np")))
        return outcomes

    with ThreadPoolExecutor(THREADS) as pool:
        for outcomes in pool.map(worker, range(THREADS)):
            assert all(outcome == expected for outcome in outcomes)


def test_gil_released_path_runs_alongside_python_threads() -> None:
    """A big Ragged batch packs on several threads while Python threads keep running."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 512, size=2048)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = rng.integers(0, 30_000, size=int(offsets[-1]))
    batch = fastpad.Ragged(values, offsets)
    reference = fastpad.pad(batch, pad_token_id=0, return_tensors="np", threads=1)
    stop = threading.Event()
    ticks = [0]

    def spinner() -> None:
        while not stop.is_set():
            ticks[0] += 1

    spin = threading.Thread(target=spinner)
    spin.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            outs = list(
                pool.map(
                    lambda threads: fastpad.pad(
                        batch, pad_token_id=0, return_tensors="np", threads=threads
                    ),
                    [1, 2, 3, 4, 8, 2, 4, 1],
                )
            )
    finally:
        stop.set()
        spin.join()
    for out in outs:
        assert np.array_equal(out["input_ids"], reference["input_ids"])
        assert np.array_equal(out["attention_mask"], reference["attention_mask"])
    assert ticks[0] > 0


def test_shared_packer_is_safe_or_refuses() -> None:
    """A Packer shared by threads either gives every caller a correct batch or raises clearly."""
    if not hasattr(fastpad, "Packer"):
        pytest.skip("fastpad.Packer does not exist in this build")
    pytest.importorskip("torch")  # a Packer returns torch tensors
    try:
        packer = fastpad.Packer("cpu", buffers=2, pad_token_id=0)
    except (TypeError, ValueError, RuntimeError) as error:
        pytest.skip(f"no CPU Packer: {error}")
    seeds = list(range(40))
    expected = {}
    for seed in seeds:
        _name, inputs, kwargs = _batch(seed * 5)  # plain lists
        kwargs.pop("pad_token_id")
        kwargs["return_tensors"] = "pt"
        expected[seed] = _plain(fastpad.pad(inputs, pad_token_id=0, **kwargs))

    def worker(seed: int) -> Any:
        _name, inputs, kwargs = _batch(seed * 5)
        kwargs.pop("pad_token_id")
        kwargs.pop("return_tensors")  # a Packer returns tensors
        try:
            # Copy at once: a Packer may reuse its buffers on the next call (documented).
            return _plain(packer(inputs, **kwargs))
        except RuntimeError as error:
            assert "thread" in str(error).lower() or "concurrent" in str(error).lower(), error
            return None

    with ThreadPoolExecutor(THREADS) as pool:
        for seed, result in zip(seeds, pool.map(worker, seeds), strict=True):
            if result is not None:
                assert result == expected[seed], f"shared Packer corrupted batch {seed}"


def test_absurd_thread_counts_are_capped() -> None:
    # threads is a hint: 2**31 - 1 used to start one std::thread per row (and std::terminate
    # once the process ran out of threads); it is capped now.
    batch = fastpad.Ragged.from_rows([[1, 2, 3], [4]] * 10_000)
    want = fastpad.pad(batch, pad_token_id=0, return_tensors="np", threads=1)
    got = fastpad.pad(batch, pad_token_id=0, return_tensors="np", threads=2**31 - 1)
    assert np.array_equal(got["input_ids"], want["input_ids"])
    assert np.array_equal(got["attention_mask"], want["attention_mask"])
