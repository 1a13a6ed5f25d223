"""The output cache (fastpad._cache, csrc/buffer_cache.cpp): warm memory, never memory in use.

A block may be handed out again only once nothing can reach it: every test holds some array,
view, tensor or shared/pickled copy of an output, makes many outputs of the same size class
(which would take that block first if it had come back), and checks that the held values are
intact and that no new output overlaps them. Also: the cap, turning the cache off, fork and
threads, and that results (values, dtypes, writability, layout) equal the reference's.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad.reference
from fastpad import _core

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, Dataset  # noqa: E402

# Python >= 3.12 warns when a multi-threaded process forks (torch's thread pool counts).
fork_warning = pytest.mark.filterwarnings(
    r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\):DeprecationWarning"
)

ROWS, WIDTH = 64, 100  # 6400 cells: above _cache.MIN_CELLS


def _rows(seed: int, rows: int = ROWS, width: int = WIDTH) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, rows)
    lengths[0] = width
    return [rng.integers(1000, 30_000, int(n)).tolist() for n in lengths]


def _span(value: Any) -> tuple[int, int]:
    """[first, last) byte addresses of an array's or tensor's data."""
    if isinstance(value, torch.Tensor):
        start = value.data_ptr()
        return start, start + value.numel() * value.element_size()
    start = value.__array_interface__["data"][0]
    return start, start + value.nbytes


def _numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _overlaps(a: Any, b: Any) -> bool:
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 < b1 and b0 < a1


@pytest.fixture(autouse=True)
def default_cache() -> Iterator[None]:
    """Every test starts from an empty cache with the default limit and leaves it that way."""
    limit = fastpad.cache_info().limit
    fastpad.set_cache_limit(limit)
    fastpad.clear_cache()
    yield
    fastpad.set_cache_limit(limit)
    fastpad.clear_cache()


def _churn(count: int = 40, **kwargs: Any) -> list[Any]:
    """Outputs of the held batch's size class, all kept alive (each would reuse a freed block)."""
    return [fastpad.pad(_rows(seed), pad_token_id=0, **kwargs) for seed in range(count)]


def test_outputs_come_from_the_cache_and_go_back() -> None:
    before = fastpad.cache_info()
    batch = fastpad.pad(_rows(0), pad_token_id=0)
    during = fastpad.cache_info()
    assert during.live_blocks == before.live_blocks + 2  # input_ids and attention_mask
    assert during.misses == before.misses + 2
    del batch
    after = fastpad.cache_info()
    assert after.live_blocks == before.live_blocks
    assert after.idle_blocks == before.idle_blocks + 2
    fastpad.pad(_rows(1), pad_token_id=0, return_tensors="np")  # same class: both reused
    assert fastpad.cache_info().hits == after.hits + 2


def test_small_outputs_skip_the_cache() -> None:
    before = fastpad.cache_info()
    batch = fastpad.pad(_rows(0, rows=8, width=40), pad_token_id=0, return_tensors="np")
    assert batch["input_ids"].flags.owndata  # np.empty, as before the cache
    assert fastpad.cache_info() == before


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize(
    "keep",
    [
        "whole",  # the output itself
        "row-slice",  # a view of a few rows, the output dropped
        "column-slice",  # a strided view
        "numpy-of-tensor",  # Tensor.numpy() / np.asarray of the output
        "torch-view",  # torch.from_numpy / a reshaped tensor view
        "memoryview",  # a buffer export only
        "transpose",
    ],
)
def test_a_block_in_use_is_never_handed_out(return_tensors: str, keep: str) -> None:
    batch = fastpad.pad(_rows(0), pad_token_id=0, return_tensors=return_tensors)
    ids = batch["input_ids"]
    expected = _numpy(ids).copy()
    held: Any
    if keep == "whole":
        held = ids
    elif keep == "row-slice":
        held = ids[10:20]
        expected = expected[10:20]
    elif keep == "column-slice":
        held = ids[:, 3::7]
        expected = expected[:, 3::7]
    elif keep == "numpy-of-tensor":
        held = ids.numpy() if return_tensors == "pt" else np.asarray(ids)
    elif keep == "torch-view":
        held = ids.view(-1) if return_tensors == "pt" else torch.from_numpy(ids).view(-1)
        expected = expected.reshape(-1)
    elif keep == "memoryview":
        held = memoryview(ids.numpy() if return_tensors == "pt" else ids)
    else:
        held = ids.t() if return_tensors == "pt" else ids.T
        expected = expected.T
    del batch, ids
    outputs = _churn(return_tensors=return_tensors)
    np.testing.assert_array_equal(_numpy(held), expected)
    for output in outputs:
        for value in output.values():
            assert not _overlaps(value, _numpy(held))


def test_share_memory_moves_the_tensor_out_and_frees_the_block() -> None:
    batch = fastpad.pad(_rows(0), pad_token_id=0)
    ids = batch["input_ids"]
    expected = ids.clone()
    live = fastpad.cache_info().live_blocks
    ids.share_memory_()  # torch copies into shared memory and drops the array: the block is free
    assert ids.is_shared()
    assert fastpad.cache_info().live_blocks == live - 1
    outputs = _churn()
    assert torch.equal(ids, expected)
    assert not any(_overlaps(value, ids) for output in outputs for value in output.values())


def _sum_in_child(tensor: torch.Tensor) -> int:
    return int(tensor.sum())


@fork_warning
def test_tensors_pickled_and_sent_to_a_worker_keep_their_values() -> None:
    batch = fastpad.pad(_rows(0), pad_token_id=0)
    ids = batch["input_ids"]
    expected = ids.clone()
    restored = pickle.loads(pickle.dumps(ids))
    del batch, ids
    _churn()
    assert torch.equal(restored, expected)
    # torch.multiprocessing moves the tensor into shared memory for the worker.
    context = torch.multiprocessing.get_context("fork")
    sent = fastpad.pad(_rows(0), pad_token_id=0)["input_ids"]
    with context.Pool(1) as pool:
        total = pool.apply(_sum_in_child, (sent,))
    _churn()
    assert total == int(expected.sum())
    assert torch.equal(sent, expected)


class RowsDataset(Dataset[dict[str, Any]]):
    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.rows[index]}


@fork_warning
@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches_stay_intact(workers: int, tokenizer: Any) -> None:
    rows = _rows(3, rows=ROWS * 8)
    collate = fastpad.DataCollatorWithPadding(tokenizer)
    loader = DataLoader(RowsDataset(rows), batch_size=ROWS, num_workers=workers, collate_fn=collate)
    batches = list(loader)  # all held: a reused block would overwrite an earlier batch
    for number, batch in enumerate(batches):
        chunk = rows[number * ROWS : (number + 1) * ROWS]
        expected = fastpad.reference.pad(chunk, pad_token_id=0)
        assert torch.equal(batch["input_ids"], expected["input_ids"])
        assert torch.equal(batch["attention_mask"], expected["attention_mask"])


def test_the_cap_holds_and_evicts_least_recently_released() -> None:
    block = _core.cached_empty(64, 512, np.dtype(np.int64))  # 256 KiB: exactly a size class
    size = block.nbytes
    del block
    fastpad.set_cache_limit(3 * size)
    arrays = [_core.cached_empty(64, 512, np.dtype(np.int64)) for _ in range(5)]
    first = arrays[0].__array_interface__["data"][0]
    last = arrays[-1].__array_interface__["data"][0]
    for array in arrays:
        array[...] = 1
    info = fastpad.cache_info()
    assert info.live_blocks == 5
    evictions = info.evictions
    del array
    while arrays:
        arrays.pop(0)  # released oldest first, so `last` is the most recent
    info = fastpad.cache_info()
    assert info.idle_blocks == 3
    assert info.idle_bytes == 3 * size <= info.limit
    assert info.evictions == evictions + 2
    again = _core.cached_empty(64, 512, np.dtype(np.int64))
    assert again.__array_interface__["data"][0] == last  # the warmest block first
    assert first != last
    # A block larger than the whole limit is freed on release, never kept.
    huge = _core.cached_empty(4 * 64, 512, np.dtype(np.int64))
    del huge
    assert fastpad.cache_info().idle_bytes <= 3 * size
    # Lowering the limit frees idle blocks at once.
    fastpad.set_cache_limit(size)
    assert fastpad.cache_info().idle_bytes <= size


def test_size_classes() -> None:
    rows = 8
    for width in (256, 257, 320, 321, 384, 448, 449, 512, 4096, 5000):
        array = _core.cached_empty(rows, width, np.dtype(np.int64))
        info = fastpad.cache_info()
        capacity = info.live_bytes
        assert array.nbytes <= capacity <= max(4096, array.nbytes * 5 // 4)
        del array


def test_off_means_no_cache_at_all() -> None:
    live = fastpad.cache_info().live_blocks
    held = fastpad.pad(_rows(0), pad_token_id=0, return_tensors="np")
    fastpad.pad(_rows(1), pad_token_id=0, return_tensors="np")  # leaves two idle blocks
    assert fastpad.cache_info().idle_blocks == 2
    fastpad.set_cache_limit(0)
    info = fastpad.cache_info()
    assert (info.limit, info.idle_blocks, info.idle_bytes) == (0, 0, 0)
    for return_tensors in ("pt", "np"):
        batch = fastpad.pad(_rows(2), pad_token_id=0, return_tensors=return_tensors)
        array = batch["input_ids"] if return_tensors == "np" else batch["input_ids"].numpy()
        if return_tensors == "np":
            assert array.flags.owndata
        assert fastpad.cache_info().live_blocks == info.live_blocks
    # A block handed out before is freed when it dies, not kept.
    del held
    info = fastpad.cache_info()
    assert info.live_blocks == live
    assert info.idle_blocks == 0
    fastpad.set_cache_limit(128 << 20)
    fastpad.pad(_rows(2), pad_token_id=0)
    assert fastpad.cache_info().misses == info.misses + 2


def test_set_cache_limit_checks_its_argument() -> None:
    with pytest.raises(ValueError, match="limit must be >= 0"):
        fastpad.set_cache_limit(-1)
    with pytest.raises(TypeError, match="limit must be an int"):
        fastpad.set_cache_limit(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limit must be an int"):
        fastpad.set_cache_limit(True)
    fastpad.set_cache_limit(np.int64(1 << 20))
    assert fastpad.cache_info().limit == 1 << 20


@fork_warning
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_other_threads_use_the_cache() -> None:
    """Children forked while threads allocate and release blocks pad correctly (no deadlock)."""
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            fastpad.pad(_rows(5), pad_token_id=0, return_tensors="np")

    held = fastpad.pad(_rows(0), pad_token_id=0, return_tensors="np")
    expected = fastpad.reference.pad(_rows(7), pad_token_id=0, return_tensors="np")
    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        context = multiprocessing.get_context("fork")
        for _ in range(10):
            queue = context.SimpleQueue()
            process = context.Process(target=_child_pads, args=(queue,))
            process.start()
            process.join(timeout=60)
            if process.exitcode is None:
                process.kill()
                process.join()
                pytest.fail("a forked child hung (deadlocked on the cache's mutex?)")
            assert process.exitcode == 0
            got = queue.get()
            np.testing.assert_array_equal(got, expected["input_ids"])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    np.testing.assert_array_equal(
        held["input_ids"],
        fastpad.reference.pad(_rows(0), pad_token_id=0, return_tensors="np")["input_ids"],
    )


def _child_pads(queue: Any) -> None:
    # Inherited idle blocks are reused here (copy-on-write), the parent's never see the writes.
    batches = [fastpad.pad(_rows(7), pad_token_id=0, return_tensors="np") for _ in range(4)]
    queue.put(np.array(batches[-1]["input_ids"]))


def test_threads_never_share_a_block() -> None:
    live = fastpad.cache_info().live_blocks
    results: dict[int, list[Any]] = {}

    def work(seed: int) -> None:
        results[seed] = [fastpad.pad(_rows(seed), pad_token_id=0) for _ in range(30)]

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = [
        value for outputs in results.values() for batch in outputs for value in batch.values()
    ]
    spans = sorted(_span(value) for value in values)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    for seed, outputs in results.items():
        expected = fastpad.reference.pad(_rows(seed), pad_token_id=0)
        for batch in outputs:
            assert_batches_equal(batch, expected)
    results.clear()
    del values, outputs, batch
    assert fastpad.cache_info().live_blocks == live


token = st.integers(-(2**40), 2**40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(0, 120), min_size=20, max_size=60),
    seed=st.integers(0, 2**32 - 1),
    options=st.fixed_dictionaries(
        {
            "return_tensors": st.sampled_from(["pt", "np"]),
            "dtype": st.sampled_from([None, "int64", "int32"]),
            "mask_dtype": st.sampled_from([None, "int64", "int32", "int8", "bool"]),
            "padding_side": st.sampled_from(["left", "right"]),
            "form": st.sampled_from(["lists", "ragged", "mapping"]),
        }
    ),
)
def test_cached_outputs_equal_the_reference(
    lengths: list[int], seed: int, options: dict[str, Any]
) -> None:
    rng = np.random.default_rng(seed)
    low, high = (-(2**31), 2**31) if options["dtype"] == "int32" else (-(2**40), 2**40)
    rows = [rng.integers(low, high, n).tolist() for n in lengths]
    form = options.pop("form")
    encoded: Any = rows
    if form == "ragged":
        encoded = fastpad.Ragged.from_rows(rows)
    elif form == "mapping":
        encoded = {"input_ids": rows, "labels": rows}
        options["pad_values"] = {"labels": -100}
    expected = fastpad.reference.pad(encoded, pad_token_id=7, **options)
    # Stale contents of a reused block must never show through: dirty the idle blocks first.
    for garbage in (_core.cached_empty(len(rows), max(lengths) + 1, np.dtype(np.int64)),):
        garbage[...] = -1
        del garbage
    actual = fastpad.pad(encoded, pad_token_id=7, **options)
    assert_batches_equal(actual, expected)
    for value in actual.values():
        array = value.numpy() if isinstance(value, torch.Tensor) else value
        assert array.flags.writeable and array.flags.c_contiguous and array.flags.aligned


def test_flatten_and_windows_equal_their_uncached_results() -> None:
    rows = _rows(0, rows=64, width=200)

    def run() -> tuple[Any, Any]:
        flat = fastpad.flatten(rows, return_flash_attn_kwargs=True, return_tensors="np")
        windows = fastpad.windows(rows, max_length=64, stride=16, pad_token_id=0)
        return flat, windows

    before = fastpad.cache_info()
    flat, windows = run()
    # flatten: ids, labels, position_ids; windows: ids, mask
    assert fastpad.cache_info().live_blocks == before.live_blocks + 5
    fastpad.set_cache_limit(0)
    flat_uncached, windows_uncached = run()
    assert_batches_equal(flat, flat_uncached)
    assert_batches_equal(windows, windows_uncached)


def test_tracemalloc_sees_cached_outputs_like_numpy_arrays() -> None:
    import tracemalloc

    fastpad.pad(_rows(0), pad_token_id=0, return_tensors="np")  # leaves idle blocks to reuse
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batch = fastpad.pad(_rows(1), pad_token_id=0, return_tensors="np")
        during = tracemalloc.get_traced_memory()[0]
        output = sum(value.nbytes for value in batch.values())
        del batch
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert fastpad.cache_info().hits >= 2  # the blocks came from the cache, yet are traced
    assert output <= during - before < output + 64 * 1024
    assert after - before < 64 * 1024
