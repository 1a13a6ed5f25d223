"""Measuring one callable: interleaved timing, peak memory, minor page faults; and the unit
in which a time is written."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._cache import clear_cache

__all__ = [
    "NOISY_IQR",
    "faults_per_call",
    "format_seconds",
    "peak_memory",
    "quartiles",
    "time_interleaved",
]

# Timings are noisy when their interquartile range exceeds this share of their median: the bench
# re-measures such a cell once, its table marks what stays noisy with "~" and its figure draws
# it hollow.
NOISY_IQR = 0.3


def _inner_loops(function: Callable[[], Any], sample_seconds: float) -> tuple[int, float]:
    """Calls per sample so that a sample lasts about `sample_seconds`; and one call's time."""
    start = time.perf_counter()
    function()
    once = time.perf_counter() - start
    if once < sample_seconds / 10:
        start = time.perf_counter()
        for _ in range(10):
            function()
        once = (time.perf_counter() - start) / 10
    return max(1, int(sample_seconds / max(once, 1e-9))), once


def time_interleaved(
    functions: Sequence[Callable[[], Any]],
    budget_seconds: float,
    min_rounds: int = 5,
    max_rounds: int = 400,
    sample_seconds: float = 0.001,
) -> list[list[float]]:
    """Per-call seconds of every function: one sample of each per round, rounds interleaved."""
    loops = []
    per_round = 0.0
    for function in functions:
        count, once = _inner_loops(function, sample_seconds)
        loops.append(count)
        per_round += count * once
    rounds = int(min(max_rounds, max(min_rounds, budget_seconds / max(per_round, 1e-9))))
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            count = loops[index]
            start = time.perf_counter()
            for _ in range(count):
                function()
            samples[index].append((time.perf_counter() - start) / count)
    return samples


def _malloc_trim() -> None:
    # fastpad's idle output blocks too, so that a call's peak includes its own output's memory.
    clear_cache()
    with contextlib.suppress(Exception):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(function: Callable[[], Any]) -> dict[str, int | None]:
    """Peak extra bytes of one call (its result included): tracemalloc and resident set size.

    tracemalloc sees Python objects and numpy buffers but not torch's allocator; the RSS peak
    (Linux: VmHWM after resetting it through /proc/self/clear_refs) sees everything the process
    touches, to page granularity.
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    traced = peak - before
    rss: int | None = None
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        base = _rss_kib("VmRSS")
        result = function()
        high = _rss_kib("VmHWM")
        del result
        if base is not None and high is not None:
            rss = max(0, high - base) * 1024
    except OSError:
        rss = None
    return {"tracemalloc": traced, "rss": rss}


def faults_per_call(function: Callable[[], Any], calls: int = 20) -> float | None:
    """Minor page faults per call of `function` after a warm-up call (getrusage; None off POSIX).

    A call that writes its output into freshly mapped memory faults once per output page.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    function()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        function()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def quartiles(values: Sequence[float]) -> tuple[float, float, float, float]:
    array = np.asarray(values)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return float(median), float(array.min()), float(q1), float(q3)


def format_seconds(seconds: float) -> str:
    """Seconds with a unit that keeps three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
