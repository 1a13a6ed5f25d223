"""The speed bars, as ratios within one process: fastpad against its baselines, side by side.

Bars (single thread): from lists >= 150x ``tokenizer.pad`` and >= 8x the vectorised numpy path
at B = 32/256/1024; from a ``Ragged`` within 1.3x of the copy floor at B >= 256; a batch of 8
short rows in <= 5 us per call. Paths are those of ``python -m fastpad bench`` (fastpad/_bench/)
plus a *warm* copy floor: the output copied into tensors allocated once (``Tensor.copy_``), the
cost of writing the output bytes with no allocation at all, where the bench's copy floor
(``clone``) allocates and so page-faults in processes whose malloc returns memory to the OS.

Samples of all paths are interleaved; each ratio is reported from the medians and from the
fastest samples (the minimum is the steadier statistic on a busy machine). Page faults per call
are counted for fastpad's paths and both floors.

Run:  python benchmarks/bench_bars.py [--budget 2] [--sizes 32,256,1024] [--json bars.json]
      python -m pytest benchmarks/bench_bars.py    (smoke: B=32, checks the outputs only)
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from fastpad import pad
from fastpad._bench.measure import faults_per_call, time_interleaved
from fastpad._bench.paths import PATHS, assert_same
from fastpad._bench.workloads import PAD_ID, WORKLOADS, BenchBatch, load_tokenizer, make_batch

NAMES = ("fastpad-lists", "fastpad-ragged", "tokenizer-pad", "numpy-lists", "copy-floor")


def warm_copy_floor(batch: BenchBatch) -> Callable[[], Any]:
    """The finished output copied into tensors allocated once: bytes written, nothing else."""
    import torch

    expected = pad(batch.kept_ragged, pad_token_id=PAD_ID, threads=1)
    ids, mask = expected["input_ids"], expected["attention_mask"]
    out_ids, out_mask = torch.empty_like(ids), torch.empty_like(mask)

    def run() -> dict[str, Any]:
        out_ids.copy_(ids)
        out_mask.copy_(mask)
        return {"input_ids": out_ids, "attention_mask": out_mask}

    return run


def measure_cell(workload: str, size: int, tokenizer: Any, budget: float) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # single thread for every path (as python -m fastpad bench)
    batch = make_batch(WORKLOADS[workload], size)
    names = [name for name in NAMES if tokenizer is not None or name != "tokenizer-pad"]
    functions = [PATHS[name].prepare(batch, tokenizer, 1) for name in names]
    names.append("warm-copy-floor")
    functions.append(warm_copy_floor(batch))
    expected = functions[0]()
    for name, function in zip(names, functions, strict=True):
        assert_same(function(), expected, f"{name} at {workload} B={size}")
    samples = time_interleaved(functions, budget, min_rounds=7)
    cell: dict[str, Any] = {"workload": workload, "size": size, "width": batch.width}
    for name, function, times in zip(names, functions, samples, strict=True):
        cell[name] = {"median_s": float(np.median(times)), "min_s": float(np.min(times))}
        if name.startswith("fastpad") or name.endswith("floor"):
            cell[name]["faults_per_call"] = faults_per_call(function)
    return cell


def ratios(cell: dict[str, Any], statistic: str) -> dict[str, float | None]:
    def time(name: str) -> float | None:
        return cell[name][statistic] if name in cell else None

    lists, ragged = time("fastpad-lists"), time("fastpad-ragged")
    tokenizer, numpy_lists = time("tokenizer-pad"), time("numpy-lists")
    floor, warm = time("copy-floor"), time("warm-copy-floor")
    assert lists is not None and ragged is not None and floor is not None and warm is not None
    return {
        "lists_vs_tokenizer_pad": None if tokenizer is None else tokenizer / lists,
        "lists_vs_numpy": None if numpy_lists is None else numpy_lists / lists,
        "ragged_over_copy_floor": ragged / floor,
        "ragged_over_warm_copy_floor": ragged / warm,
    }


def per_call_b8(repeat: int = 7, number: int = 20000) -> dict[str, float]:
    """`fastpad.pad(rows, pad_token_id=0)` on 8 short rows: timeit minimum, seconds per call."""
    rows = make_batch(WORKLOADS["short"], 8).rows
    calls = {
        "pt": lambda: pad(rows, pad_token_id=0),
        "np": lambda: pad(rows, pad_token_id=0, return_tensors="np"),
        "pt threads=1": lambda: pad(rows, pad_token_id=0, threads=1),
    }
    return {
        name: min(timeit.repeat(call, number=number, repeat=repeat)) / number
        for name, call in calls.items()
    }


def table(cells: list[dict[str, Any]]) -> list[str]:
    def cell_text(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        "| workload | B | lists vs tokenizer.pad (median / min) | lists vs numpy "
        "| Ragged / copy floor | Ragged / warm copy floor | faults/call lists, Ragged, "
        "floor, warm floor |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for cell in cells:
        medians, minimums = ratios(cell, "median_s"), ratios(cell, "min_s")
        parts = []
        for key, spec in (
            ("lists_vs_tokenizer_pad", ".0f"),
            ("lists_vs_numpy", ".1f"),
            ("ragged_over_copy_floor", ".2f"),
            ("ragged_over_warm_copy_floor", ".2f"),
        ):
            parts.append(f"{cell_text(medians[key], spec)} / {cell_text(minimums[key], spec)}")
        faults = ", ".join(
            cell_text(cell[name].get("faults_per_call"), ".0f")
            for name in ("fastpad-lists", "fastpad-ragged", "copy-floor", "warm-copy-floor")
        )
        lines.append(
            f"| {cell['workload']} | {cell['size']} | " + " | ".join(parts) + f" | {faults} |"
        )
    return lines


def test_bars_smoke() -> None:
    """Smoke (CI): every path of one small cell runs and equals fastpad's output."""
    cell = measure_cell("short", 32, None, budget=0.01)
    assert cell["fastpad-lists"]["faults_per_call"] is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per cell")
    parser.add_argument("--sizes", default="32,256,1024")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--json", default=None)
    arguments = parser.parse_args(argv)
    tokenizer, note = load_tokenizer()
    print(note)
    hf = tokenizer.tokenizer if tokenizer is not None else None
    cells = [
        measure_cell(workload, int(size), hf, arguments.budget)
        for workload in arguments.workloads.split(",")
        for size in arguments.sizes.split(",")
    ]
    print("\n".join(table(cells)))
    b8 = per_call_b8()
    print(
        "B=8 short rows, per call (timeit min): "
        + ", ".join(f"{name} {seconds * 1e6:.2f} us" for name, seconds in b8.items())
    )
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump({"cells": cells, "b8_per_call_s": b8}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
