"""Where a `fastpad.Packer` call's host time goes on a CUDA machine (needs a GPU).

Times, per call and in one process, each torch CUDA call the Packer makes (stream and device
contexts, the device allocation, the copy, events, ``wait_event``, ``record_stream``, views),
then ``fastpad.pad`` (numpy, pinned, pinned + ``.to``) and the Packer itself (side stream,
``stream="current"``, 8 buffers, and synchronized every 8 batches as ``bench_gpu.py`` does), on
64 sentence-length rows; then a cProfile of the Packer, by cumulative time.

Run:  python benchmarks/gpu_packer_overhead.py   (docs/gpu/recheck/packer_overhead.txt: H100)
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import fastpad

CALLS = 2000


def timed(name: str, fn: Callable[[], Any], calls: int = CALLS) -> None:
    """Print the best of 3 mean times per call of `fn` (after 200 warm-up calls)."""
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    torch.cuda.synchronize()
    print(f"{name:50s} {best * 1e6:8.2f} us", flush=True)


def every8(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(8):
            fn()
        torch.cuda.synchronize()

    return run


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_packer_overhead: needs a CUDA device")
    dev = torch.device("cuda", 0)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(4.3, 0.5, 64), 4, 512)
    rows = [rng.integers(1, 30000, size=int(n)).tolist() for n in lengths]
    side = torch.cuda.Stream(device=dev)
    current = torch.cuda.current_stream(dev)
    host = torch.empty(1 << 20, dtype=torch.uint8, pin_memory=True)
    event = torch.cuda.Event(blocking=True)

    def device_context() -> None:
        with torch.cuda.device(dev):
            pass

    def stream_context() -> None:
        with torch.cuda.stream(side):
            pass

    def both_contexts() -> None:
        with torch.cuda.device(dev), torch.cuda.stream(side):
            pass

    def pad_and_copy() -> Any:
        return fastpad.pad(rows, pad_token_id=0).to(dev, non_blocking=True)

    timed("current_stream(dev)", lambda: torch.cuda.current_stream(dev))
    timed("current_stream()", lambda: torch.cuda.current_stream())
    timed("with cuda.device(dev)", device_context)
    timed("with cuda.stream(side)", stream_context)
    timed("with device + stream", both_contexts)
    timed(
        "torch.empty(15000 int64, device)",
        lambda: torch.empty(15000, dtype=torch.int64, device=dev),
    )
    device_buffer = torch.empty(15000, dtype=torch.int64, device=dev)
    source = host[:120000].view(torch.int64)
    timed(
        "copy_ non_blocking 120 KB (current stream)",
        lambda: device_buffer.copy_(source, non_blocking=True),
    )
    timed("event.record(side)", lambda: event.record(side))
    timed("event.query()", lambda: event.query())
    timed("cur.wait_event(ev)", lambda: current.wait_event(event))
    timed("d.record_stream(cur)", lambda: device_buffer.record_stream(current))
    timed("torch.cuda.Event(blocking=True)", lambda: torch.cuda.Event(blocking=True))
    timed("as_strided view", lambda: device_buffer.as_strided((64, 100), (100, 1), 0))
    timed("fastpad.pad np", lambda: fastpad.pad(rows, pad_token_id=0, return_tensors="np"))
    timed("fastpad.pad pt pinned", lambda: fastpad.pad(rows, pad_token_id=0, pin_memory=True))
    timed("fastpad.pad pt pinned + .to x2", pad_and_copy)
    for options in ({}, {"stream": "current"}, {"buffers": 8}):
        packer = fastpad.Packer("cuda", pad_token_id=0, **options)
        timed(f"Packer {options}", lambda packer=packer: packer(rows))
        print("  stats", packer.stats, flush=True)
    packer = fastpad.Packer("cuda", pad_token_id=0)
    timed("Packer, 8/sync (per 8)", every8(lambda: packer(rows)), calls=200)
    timed("pad+to, 8/sync (per 8)", every8(pad_and_copy), calls=200)

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(CALLS):
        packer(rows)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
