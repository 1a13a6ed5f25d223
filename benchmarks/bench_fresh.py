"""One speed in every process: steady-state `fastpad.pad` in several fresh processes.

Each process builds the same [B, 512] batch (lists of ints, lengths uniform in 1..512, one row of
512), first allocates what a real process might have allocated before (its "prelude": nothing,
torch, a tokenizer, arrays of assorted sizes, ...), then calls ``batch = fastpad.pad(rows,
pad_token_id=0, return_tensors=...)`` in a loop, one thread. Reported per process: the median
time per call and the minor page faults per call (``getrusage``), against the output's pages.
Across processes: the spread, slowest median / fastest median.

Without fastpad's output cache, whether glibc hands a process its outputs from warm memory or
from freshly mapped (or freshly trimmed) pages that fault and zero-fill on every call depends on
what that process allocated before: the same call then takes 3-4x as long in some processes as
in others. With the cache (the default) outputs reuse warm blocks in every process.

Run:  python benchmarks/bench_fresh.py                  (cache on and off, 6 processes each)
      python benchmarks/bench_fresh.py --processes 6 --calls 300 --json fresh.json
      python -m pytest benchmarks/bench_fresh.py        (smoke: 2 processes, fault counts only)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

# What each fresh process allocates before it pads, in rotation: the malloc state a real
# process is in after its own imports and work, which decides where glibc places the outputs.
PRELUDES = ("none", "torch", "arrays", "tokenizer", "lists", "half-mib-array")
SIZES = (256, 1024)
WIDTH = 512
PAGE = os.sysconf("SC_PAGE_SIZE")


def _prelude(name: str, seed: int) -> list[Any]:
    """Allocations a process made before padding; returns what it keeps alive."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kept: list[Any] = []
    if name == "torch":
        import torch  # before fastpad imports it (at the first "pt" call)

        kept.append(torch.ones(4))
    elif name == "arrays":
        arrays = [np.ones(int(rng.integers(1, 1 << 19))) for _ in range(12)]
        kept.extend(arrays[::3])  # the others are freed: holes of assorted sizes
    elif name == "tokenizer":
        from fastpad._bench.workloads import load_tokenizer

        kept.append(load_tokenizer()[0])
    elif name == "lists":
        kept.append([list(range(int(n))) for n in rng.integers(1, 2000, 500)])
    elif name == "half-mib-array":
        array = np.ones(1 << 16)  # 512 KiB, freed
        del array
    return kept


def _rows(size: int, seed: int = 0) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng([seed, size])
    lengths = rng.integers(1, WIDTH + 1, size)
    lengths[0] = WIDTH
    return [rng.integers(1000, 30522, int(n)).tolist() for n in lengths]


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Runs in the fresh process: prelude, warm-up, then timed and fault-counted calls."""
    kept = _prelude(config["prelude"], config["index"])
    import fastpad

    if not config["cache"]:
        fastpad.set_cache_limit(0)
    rows = _rows(config["size"])
    return_tensors = config["return_tensors"]
    batch = None
    for _ in range(config["warmup"]):
        batch = fastpad.pad(rows, pad_token_id=0, return_tensors=return_tensors)
    times = []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(config["calls"]):
        start = time.perf_counter()
        batch = fastpad.pad(rows, pad_token_id=0, return_tensors=return_tensors)
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    assert batch is not None
    output_bytes = sum(int(value.nbytes) for value in batch.values())
    del kept
    return {
        **config,
        "median_s": statistics.median(times),
        "faults_per_call": faults / config["calls"],
        "output_pages": output_bytes // PAGE,
    }


def run_process(config: dict[str, Any]) -> dict[str, Any]:
    """One fresh interpreter running `child(config)`; its JSON result."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def measure(
    sizes: tuple[int, ...] = SIZES,
    return_tensors: tuple[str, ...] = ("pt", "np"),
    caches: tuple[bool, ...] = (True, False),
    processes: int = 6,
    calls: int = 200,
    warmup: int = 20,
) -> list[dict[str, Any]]:
    """Per-process results of every configuration; processes of configurations interleaved."""
    results = []
    for index in range(processes):
        for cache in caches:
            for size in sizes:
                for tensors in return_tensors:
                    config = {
                        "size": size,
                        "return_tensors": tensors,
                        "cache": cache,
                        "prelude": PRELUDES[index % len(PRELUDES)],
                        "index": index,
                        "calls": calls,
                        "warmup": warmup,
                    }
                    results.append(run_process(config))
    return results


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: medians of the processes, faults per call, spread."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for item in results:
        groups.setdefault((item["size"], item["return_tensors"], item["cache"]), []).append(item)
    summary = []
    for (size, tensors, cache), items in groups.items():
        medians = [item["median_s"] for item in items]
        faults = [item["faults_per_call"] for item in items]
        pages = items[0]["output_pages"]
        summary.append(
            {
                "size": size,
                "return_tensors": tensors,
                "cache": cache,
                "processes": len(items),
                "fastest_s": min(medians),
                "slowest_s": max(medians),
                "spread": max(medians) / min(medians),
                "max_faults_per_call": max(faults),
                "output_pages": pages,
                "max_fault_fraction": max(faults) / pages,
                "per_process": [
                    (item["prelude"], item["median_s"], item["faults_per_call"]) for item in items
                ],
            }
        )
    return summary


def table(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| batch | outputs | cache | fastest | slowest | spread | faults/call (max) "
        "| output pages | per process (median us / faults per call) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for item in sorted(summary, key=lambda item: (item["size"], item["return_tensors"])):
        per_process = ", ".join(
            f"{median * 1e6:.0f}/{faults:.0f}" for _, median, faults in item["per_process"]
        )
        lines.append(
            f"| {item['size']} x {WIDTH} | {item['return_tensors']} | "
            f"{'on' if item['cache'] else 'off'} | {item['fastest_s'] * 1e6:.0f} us | "
            f"{item['slowest_s'] * 1e6:.0f} us | {item['spread']:.2f}x | "
            f"{item['max_faults_per_call']:.1f} | {item['output_pages']} | {per_process} |"
        )
    return lines


def test_fresh_processes_fault_little_with_the_cache() -> None:
    """Smoke (CI): two fresh processes at B=256 ("np"); fault counts, not times, are checked."""
    results = measure(sizes=(256,), return_tensors=("np",), caches=(True,), processes=2, calls=30)
    for item in summarize(results):
        assert item["max_fault_fraction"] < 0.05, item


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--no-uncached", action="store_true", help="only with the cache on")
    parser.add_argument("--json", default=None, help="also write the per-process results here")
    arguments = parser.parse_args(argv)
    if arguments.child is not None:
        print(json.dumps(child(json.loads(arguments.child))))
        return 0
    sizes = tuple(int(part) for part in arguments.sizes.split(","))
    caches = (True,) if arguments.no_uncached else (True, False)
    results = measure(sizes, caches=caches, processes=arguments.processes, calls=arguments.calls)
    summary = summarize(results)
    print("\n".join(table(summary)))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump({"results": results, "summary": summary}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
