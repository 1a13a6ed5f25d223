"""Ragged token lists to CUDA tensors, end to end: `fastpad.Packer` against what people do today.

Paths, all producing the same int64 ``input_ids`` + ``attention_mask`` on the device (checked
equal before anything is timed):

- ``tokenizer.pad+to``: ``tokenizer.pad(encoding, return_tensors="pt").to(device)`` (pageable,
  synchronous copies; the transformers default). The tokenizer is the bundled all-MiniLM-L6-v2
  or, without it, a built-in word-level one (padding does not depend on the vocabulary).
- ``pad+pin+to``: ``fastpad.pad(...).pin_memory().to(device, non_blocking=True)`` (a fresh
  pinned copy per batch).
- ``Packer``: ``fastpad.Packer(device)``: packed straight into a reused pinned slot, one copy on
  the packer's own side stream (the default).
- ``Packer stream=Stream()``: the same with ``stream=torch.cuda.Stream()`` given by the caller.
- ``Packer stream=current``: ``stream="current"``: the copy on the current stream.
- ``Packer ragged``: ``ragged_transfer=True``: only kept tokens + a row layout cross PCIe, the
  padded tensors are rebuilt on the device (8 torch ops).
- ``Packer auto``: ``ragged_transfer="auto"``: the ragged transfer when it saves enough bytes.

Timings per path: ``latency`` (one batch, then synchronize) and ``pipelined`` (``--pipeline``
batches back to back, one synchronize at the end), median of interleaved rounds. Every path sees
every batch twice before timing (ring slots grown to the largest batch, device memory cached).

Then, on the device asked for (``--device``):

- ``bandwidth``: the Packer's own H2D copy (timed with events behind a GPU sleep that covers the
  host-side packing) against plain pinned / pageable ``copy_`` of the same bytes;
- ``overlap``: a model step stood in for by a GPU sleep on the current stream after each batch,
  side stream (default) against ``stream="current"``: why the side stream is the default;
- ``crossover``: where the ragged transfer starts to pay: a sweep of batches with more and more
  padding (padded against ragged, measured), and the model of ``fastpad._expand`` with its
  terms measured here (host cost of the rebuild's ops, H2D bandwidth, host bytes written per
  second);
- ``pad_pinning``: ``fastpad.pad`` into pinned against pageable outputs, host only (what a
  caller that never copies to the GPU pays for the default ``pin_memory=None`` on a GPU host).

Without a CUDA device the script prints that it skipped and exits 0; ``--device cpu`` runs every
section on the CPU as a dry run of the script (its figures mean nothing). A section that fails is
reported (``errors`` in the JSON) and the others still run; the exit status is then 1.

Run:  python benchmarks/bench_gpu.py [--json out.json] [--quick]      (table)
      python -m pytest benchmarks/bench_gpu.py --benchmark-only       (pytest-benchmark)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import fastpad
from fastpad import _core, _expand

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


def load_tokenizer() -> tuple[Any, str]:
    """The tokenizer of the tokenizer.pad path (never downloads), or None, and what it is."""
    from fastpad._bench.workloads import load_tokenizer as load

    loaded, note = load()
    return (None if loaded is None else loaded.tokenizer), note


class Device:
    """The device asked for, with the few CUDA calls the benchmark needs (no-ops on the CPU)."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._cycles_per_s: float | None = None

    @property
    def name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.cuda else "cpu"

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def new_stream(self) -> Any:
        return torch.cuda.Stream(device=self.device) if self.cuda else None

    def current_stream(self) -> Any:
        return torch.cuda.current_stream(self.device) if self.cuda else None

    @contextlib.contextmanager
    def on(self, stream: Any) -> Iterator[None]:
        if stream is None:
            yield
        else:
            with torch.cuda.device(self.device), torch.cuda.stream(stream):
                yield

    def cycles_per_s(self) -> float:
        """GPU clock, measured once: cycles of torch.cuda._sleep per second."""
        if self._cycles_per_s is None:
            cycles = 20_000_000
            with self.on(self.current_stream()):
                torch.cuda._sleep(cycles // 10)  # warm
                seconds = self.time_on(self.current_stream(), lambda: torch.cuda._sleep(cycles))
            self._cycles_per_s = cycles / seconds
        return self._cycles_per_s

    def sleep(self, stream: Any, seconds: float) -> None:
        """Hold `stream` busy on the device for about `seconds` (a stand-in for model work)."""
        if self.cuda:
            with self.on(stream):
                torch.cuda._sleep(int(seconds * self.cycles_per_s()))

    def time_on(self, stream: Any, work: Callable[[], Any]) -> float:
        """Seconds between events recorded on `stream` before and after `work` (host time on
        the CPU)."""
        if not self.cuda:
            start_time = time.perf_counter()
            work()
            return time.perf_counter() - start_time
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        with self.on(stream):
            start.record(stream)
            work()
            end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3


def make_paths(device: Device, tokenizer: Any) -> dict[str, Callable[[Any], Any]]:
    """Path name -> function of a batch (list of rows) returning input_ids + attention_mask."""
    target = device.device
    paths: dict[str, Callable[[Any], Any]] = {}
    if tokenizer is not None:

        def tokenizer_pad(rows: Any) -> Any:
            return tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(target)

        paths["tokenizer.pad+to"] = tokenizer_pad

    def pad_pin_to(rows: Any) -> Any:
        batch = fastpad.pad(rows, pad_token_id=PAD_ID, pin_memory=False)
        if device.cuda:
            batch = batch.pin_memory()
        return batch.to(target, non_blocking=True)

    paths["pad+pin+to"] = pad_pin_to
    paths["Packer"] = fastpad.Packer(target, pad_token_id=PAD_ID)
    paths["Packer stream=Stream()"] = fastpad.Packer(
        target, pad_token_id=PAD_ID, stream=device.new_stream()
    )
    paths["Packer stream=current"] = fastpad.Packer(target, pad_token_id=PAD_ID, stream="current")
    paths["Packer ragged"] = fastpad.Packer(target, pad_token_id=PAD_ID, ragged_transfer=True)
    paths["Packer auto"] = fastpad.Packer(target, pad_token_id=PAD_ID, ragged_transfer="auto")
    return paths


def check_paths(paths: dict[str, Callable[[Any], Any]], rows: Any, device: Device) -> None:
    expected = fastpad.pad(rows, pad_token_id=PAD_ID, pin_memory=False)
    for name, path in paths.items():
        result = path(rows)
        device.synchronize()
        for key in ("input_ids", "attention_mask"):
            got = result[key]
            if got.device.type != device.device.type or not torch.equal(got.cpu(), expected[key]):
                raise AssertionError(f"{name}: {key} differs from fastpad.pad")


def warm(paths: dict[str, Callable[[Any], Any]], batches: list[Any], device: Device) -> None:
    """Every path sees every batch twice: each ring slot grows to the largest batch before
    anything is timed, and the caching allocators hold every size."""
    for _ in range(2):
        for rows in batches:
            for path in paths.values():
                path(rows)
    device.synchronize()


def time_paths(
    paths: dict[str, Callable[[Any], Any]],
    batches: list[Any],
    device: Device,
    rounds: int,
    pipeline: int,
) -> dict[str, dict[str, float]]:
    """Median seconds per batch of each path: one batch then sync, and `pipeline` then sync."""
    latency: dict[str, list[float]] = {name: [] for name in paths}
    pipelined: dict[str, list[float]] = {name: [] for name in paths}
    for round_number in range(rounds):
        for name, path in paths.items():
            rows = batches[round_number % len(batches)]
            device.synchronize()
            start = time.perf_counter()
            path(rows)
            device.synchronize()
            latency[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            results = [path(batches[(round_number + k) % len(batches)]) for k in range(pipeline)]
            device.synchronize()
            pipelined[name].append((time.perf_counter() - start) / pipeline)
            del results
    return {
        name: {
            "latency_s": statistics.median(latency[name]),
            "pipelined_s": statistics.median(pipelined[name]),
        }
        for name in paths
    }


def copy_seconds(device: Device, nbytes: int, pinned: bool, repeats: int = 20) -> float:
    """Median seconds of one host-to-device copy_ of `nbytes` to `device` (CUDA events)."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned and device.cuda)
    host.fill_(1)
    target = torch.empty(nbytes, dtype=torch.uint8, device=device.device)
    stream = device.current_stream()
    samples = [
        device.time_on(stream, lambda: target.copy_(host, non_blocking=pinned))
        for _ in range(repeats)
    ]
    return statistics.median(samples)


def packer_copy_seconds(
    device: Device, packer: fastpad.Packer, rows: Any, repeats: int = 20
) -> tuple[float, int]:
    """Median seconds of the Packer's own H2D copy, and the bytes it moves per batch.

    The packer copies on its side stream; a GPU sleep queued there first outlasts the host-side
    packing, so the start event fires right before the (already queued) copy. On the CPU this
    times the whole call.
    """
    stream = packer.stream
    samples = []
    before = packer.stats.payload_bytes
    for _ in range(repeats):
        if device.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            device.sleep(stream, 0.02)  # longer than packing one batch
            start.record(stream)
            packer(rows)
            end.record(stream)
            end.synchronize()
            samples.append(float(start.elapsed_time(end)) / 1e3)
        else:
            samples.append(device.time_on(None, lambda: packer(rows)))
    return statistics.median(samples), (packer.stats.payload_bytes - before) // repeats


def bandwidth(device: Device, rows: Any) -> dict[str, float]:
    """GB/s of the Packer's copy (padded and ragged) against plain copies of the same bytes."""
    figures: dict[str, float] = {}
    for label, ragged in (("Packer", False), ("Packer ragged", True)):
        packer = fastpad.Packer(device.device, pad_token_id=PAD_ID, ragged_transfer=ragged)
        packer(rows)
        packer(rows)  # warm: both slots allocated
        seconds, nbytes = packer_copy_seconds(device, packer, rows)
        figures[f"{label} bytes"] = nbytes
        figures[f"{label} copy GB/s"] = nbytes / seconds / 1e9
        figures[f"{label} pinned copy_ GB/s"] = nbytes / copy_seconds(device, nbytes, True) / 1e9
        figures[f"{label} pageable copy_ GB/s"] = nbytes / copy_seconds(device, nbytes, False) / 1e9
    return figures


def overlap(device: Device, batches: list[Any], step_s: float, steps: int) -> dict[str, Any]:
    """Seconds per training/serving step: a batch, then `step_s` of GPU work (a sleep) on the
    current stream, `steps` steps back to back. The side stream's copy runs under the previous
    step's work; on the current stream it queues behind it."""
    packers = {
        "side stream (default)": fastpad.Packer(device.device, pad_token_id=PAD_ID),
        "stream=current": fastpad.Packer(device.device, pad_token_id=PAD_ID, stream="current"),
    }
    warm(dict(packers), batches, device)
    current = device.current_stream()
    per_step: dict[str, list[float]] = {name: [] for name in packers}
    for round_number in range(5):
        for name, packer in packers.items():
            device.synchronize()
            start = time.perf_counter()
            for step in range(steps):
                batch = packer(batches[(round_number + step) % len(batches)])
                device.sleep(current, step_s)
                del batch
            device.synchronize()
            per_step[name].append((time.perf_counter() - start) / steps)
    return {
        "step_s": step_s,
        "steps": steps,
        "seconds_per_step": {name: statistics.median(values) for name, values in per_step.items()},
    }


def _sweep_batch(long_row: int, rows: int = 64, short: int = 8) -> list[list[int]]:
    """One long row and short ones: padded bytes grow with `long_row`, real tokens barely."""
    rng = np.random.default_rng(long_row)
    return [rng.integers(1000, 30522, size=long_row).tolist()] + [
        rng.integers(1000, 30522, size=short).tolist() for _ in range(rows - 1)
    ]


def _host_pack_seconds(rows: list[list[int]], repeats: int = 30) -> tuple[float, float, int, int]:
    """Host seconds (median) to pack a batch padded (ids + mask) and ragged (flat + layout) into
    preallocated buffers with the core, and the bytes each writes."""
    specs = [("input_ids", 0, rows)]
    lengths, width = _core.measure(specs, 0, -1, False, 0)
    count = len(rows)
    ids = np.empty((count, width), np.int64)
    mask = np.empty((count, width), np.int64)
    flat = np.empty(int(lengths.sum()) + count, np.int64)
    meta = np.empty(2 * count, np.int64)
    padded, ragged = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        _core.pack(specs, [ids], [PAD_ID], lengths, mask, width, -1, False, False)
        padded.append(time.perf_counter() - start)
        start = time.perf_counter()
        _core.pack_ragged(specs, [flat], [PAD_ID], lengths, meta, width, -1, False, False)
        ragged.append(time.perf_counter() - start)
    return (
        statistics.median(padded),
        statistics.median(ragged),
        ids.nbytes + mask.nbytes,
        flat.nbytes + meta.nbytes,
    )


def _rebuild_host_seconds(device: Device, rows: list[list[int]], repeats: int = 100) -> float:
    """Host seconds of one ragged rebuild of ids + mask (its 8 ops, no sync) on the device."""
    specs = [("input_ids", 0, rows)]
    lengths, width = _core.measure(specs, 0, -1, False, 0)
    count = len(rows)
    flat = np.empty(int(lengths.sum()) + count, np.int64)
    meta = np.empty(2 * count, np.int64)
    _core.pack_ragged(specs, [flat], [PAD_ID], lengths, meta, width, -1, False, False)
    buffer = torch.from_numpy(np.concatenate([flat, meta])).to(device.device)

    def rebuild() -> Any:
        index, keep = _expand.rebuild_index(buffer, count, width, flat.size, pad_left=False)
        return _expand.gather_field(buffer, index, buffer.dtype, 0), keep.to(torch.int64)

    rebuild()
    device.synchronize()
    start = time.perf_counter()
    results = [rebuild() for _ in range(repeats)]
    seconds = (time.perf_counter() - start) / repeats
    device.synchronize()
    del results
    return seconds


def _views_host_seconds(device: Device, rows: list[list[int]], repeats: int = 100) -> float:
    """Host seconds of the padded path's device side: two views of the copied buffer."""
    width = max(len(row) for row in rows)
    buffer = torch.zeros(2 * len(rows) * width, dtype=torch.int64, device=device.device)
    shape, strides = (len(rows), width), (width, 1)
    start = time.perf_counter()
    for _ in range(repeats):
        buffer.as_strided(shape, strides, 0)
        buffer.as_strided(shape, strides, len(rows) * width)
    return (time.perf_counter() - start) / repeats


def crossover(device: Device, rounds: int, pipeline: int) -> dict[str, Any]:
    """Where the ragged transfer starts to pay: measured on a sweep, and modelled."""
    points = []
    for long_row in (64, 256, 1024, 4096):
        rows = _sweep_batch(long_row)
        paths = {
            "padded": fastpad.Packer(device.device, pad_token_id=PAD_ID),
            "ragged": fastpad.Packer(device.device, pad_token_id=PAD_ID, ragged_transfer=True),
        }
        check_paths(dict(paths), rows, device)
        warm(dict(paths), [rows], device)
        timings = time_paths(dict(paths), [rows], device, rounds, pipeline)
        host_padded, host_ragged, padded_bytes, flat_bytes = _host_pack_seconds(rows)
        points.append(
            {
                "long_row": long_row,
                "padded_bytes": padded_bytes,
                "flat_bytes": flat_bytes,
                "saved_bytes": padded_bytes - flat_bytes,
                "timings": timings,
                "host_pack_s": {"padded": host_padded, "ragged": host_ragged},
            }
        )
    measured: dict[str, int | None] = {}
    for mode in ("latency_s", "pipelined_s"):
        wins = [
            point["saved_bytes"]
            for point in points
            if point["timings"]["ragged"][mode] <= point["timings"]["padded"][mode]
        ]
        measured[mode] = min(wins) if wins else None
    rates = [
        (point["saved_bytes"]) / (point["host_pack_s"]["padded"] - point["host_pack_s"]["ragged"])
        for point in points
        if point["host_pack_s"]["padded"] > point["host_pack_s"]["ragged"]
    ]
    host_rate = statistics.median(rates) if rates else float("nan")
    rebuild_s = _rebuild_host_seconds(device, _sweep_batch(256))
    views_s = _views_host_seconds(device, _sweep_batch(256))
    bandwidth_bps = (1 << 24) / copy_seconds(device, 1 << 24, True) if device.cuda else float("nan")
    extra_s = rebuild_s - views_s
    modelled = extra_s / (1 / host_rate + (1 / bandwidth_bps if device.cuda else 0.0))
    return {
        "points": points,
        "measured_crossover_saved_bytes": measured,
        "model": {
            "rebuild_host_s": rebuild_s,
            "padded_views_host_s": views_s,
            "extra_host_s": extra_s,
            "host_write_bytes_per_s": host_rate,
            "pinned_h2d_bytes_per_s": bandwidth_bps,
            "crossover_saved_bytes": modelled,
            "auto_threshold_in_code": _expand.AUTO_MIN_SAVED_BYTES,
        },
    }


def pad_pinning(device: Device, rounds: int) -> dict[str, dict[str, float]]:
    """Host seconds of fastpad.pad into pinned and into pageable outputs (no copy)."""
    figures = {}
    for workload in WORKLOADS:
        rows = make_rows(workload)
        samples: dict[str, list[float]] = {"pinned": [], "pageable": []}
        for _ in range(max(rounds, 5)):
            for label, pin in (("pinned", device.cuda), ("pageable", False)):
                start = time.perf_counter()
                fastpad.pad(rows, pad_token_id=PAD_ID, pin_memory=pin)
                samples[label].append(time.perf_counter() - start)
        figures[workload.name] = {
            label: statistics.median(values) for label, values in samples.items()
        }
    return figures


def run(device_name: str, rounds: int, pipeline: int, sections: set[str]) -> dict[str, Any]:
    device = Device(device_name)
    tokenizer, tokenizer_note = load_tokenizer()
    report: dict[str, Any] = {
        "device": device.name,
        "device_index": device.device.index,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "fastpad": fastpad.__version__,
        "tokenizer": tokenizer_note,
        "rounds": rounds,
        "pipeline": pipeline,
        "workloads": {},
        "errors": {},
    }

    def section(name: str, work: Callable[[], Any]) -> Any:
        if name.split(":")[0] not in sections:
            return None
        start = time.perf_counter()
        try:
            return work()
        except Exception:  # reported, and the other sections still run
            report["errors"][name] = traceback.format_exc()
            print(f"bench_gpu: section {name} failed:\n{report['errors'][name]}", file=sys.stderr)
            return None
        finally:
            report.setdefault("section_seconds", {})[name] = time.perf_counter() - start

    for workload in WORKLOADS:
        batches = [make_rows(workload, seed) for seed in range(4)]

        def paths_section(
            batches: list[Any] = batches, workload: Workload = workload
        ) -> dict[str, Any]:
            paths = make_paths(device, tokenizer)
            check_paths(paths, batches[0], device)
            warm(paths, batches, device)
            auto = paths["Packer auto"]
            assert isinstance(auto, fastpad.Packer)
            before = auto.stats
            for rows in batches:
                auto(rows)
            chosen = auto.stats.ragged_batches - before.ragged_batches
            return {
                "rows": workload.rows,
                "tokens": sum(len(row) for row in batches[0]),
                "cells": workload.rows * max(len(row) for row in batches[0]),
                "auto_ragged_batches": f"{chosen}/{len(batches)}",
                "timings": time_paths(paths, batches, device, rounds, pipeline),
            }

        entry = section(f"paths:{workload.name}", paths_section) or {}
        figures = section(
            f"bandwidth:{workload.name}", lambda rows=batches[0]: bandwidth(device, rows)
        )
        if figures is not None:
            entry["bandwidth"] = figures
        report["workloads"][workload.name] = entry
    report["overlap"] = section(
        "overlap",
        lambda: overlap(
            device, [make_rows(WORKLOADS[2], seed) for seed in range(4)], 0.0005, 4 * pipeline
        ),
    )
    report["crossover"] = section("crossover", lambda: crossover(device, rounds, pipeline))
    report["pad_pinning"] = section("pad_pinning", lambda: pad_pinning(device, rounds))
    return report


def _us(seconds: Any) -> str:
    return "n/a" if seconds is None else f"{float(seconds) * 1e6:.1f}"


def print_report(report: dict[str, Any]) -> None:
    print(
        f"device: {report['device']}  torch {report['torch']} (CUDA {report['cuda']})  "
        f"fastpad {report['fastpad']}"
    )
    print(f"tokenizer: {report['tokenizer']}")
    print(f"median of {report['rounds']} rounds; pipelined = {report['pipeline']} batches/sync")
    for name, entry in report["workloads"].items():
        if "timings" not in entry:
            print(f"\n{name}: failed (see errors)")
            continue
        print(
            f"\n{name}: {entry['rows']} rows, {entry['tokens']} tokens, {entry['cells']} cells; "
            f"auto chose ragged for {entry['auto_ragged_batches']} batches"
        )
        timings = entry["timings"]
        base = timings.get("tokenizer.pad+to") or next(iter(timings.values()))
        print(f"  {'path':<24}{'latency us':>12}{'pipelined us':>14}{'speedup (pipelined)':>22}")
        for path, figures in timings.items():
            print(
                f"  {path:<24}{_us(figures['latency_s']):>12}{_us(figures['pipelined_s']):>14}"
                f"{base['pipelined_s'] / figures['pipelined_s']:>21.2f}x"
            )
        for key, value in entry.get("bandwidth", {}).items():
            print(f"  {key:<34}{value:>14.2f}" if "GB/s" in key else f"  {key:<34}{value:>14}")
    if report.get("overlap"):
        overlap_figures = report["overlap"]
        print(
            f"\noverlap: a batch + {overlap_figures['step_s'] * 1e6:.0f} us of GPU work per step, "
            f"{overlap_figures['steps']} steps"
        )
        for name, seconds in overlap_figures["seconds_per_step"].items():
            print(f"  {name:<24}{_us(seconds):>12} us/step")
    if report.get("crossover"):
        cross = report["crossover"]
        print("\ncrossover sweep (64 rows: one long row, 63 of 8 tokens):")
        print(f"  {'long row':>9}{'saved kB':>10}{'padded us':>11}{'ragged us':>11}  (pipelined)")
        for point in cross["points"]:
            timings = point["timings"]
            print(
                f"  {point['long_row']:>9}{point['saved_bytes'] / 1e3:>10.1f}"
                f"{_us(timings['padded']['pipelined_s']):>11}"
                f"{_us(timings['ragged']['pipelined_s']):>11}"
            )
        model = cross["model"]
        print(f"  measured crossover (saved bytes): {cross['measured_crossover_saved_bytes']}")
        print(
            f"  model: rebuild {_us(model['rebuild_host_s'])} us vs views "
            f"{_us(model['padded_views_host_s'])} us of host time; host writes "
            f"{model['host_write_bytes_per_s'] / 1e9:.2f} GB/s, pinned H2D "
            f"{model['pinned_h2d_bytes_per_s'] / 1e9:.2f} GB/s -> crossover "
            f"{model['crossover_saved_bytes'] / 1e3:.0f} kB saved "
            f"(in code: {model['auto_threshold_in_code'] / 1e3:.0f} kB)"
        )
    if report.get("pad_pinning"):
        print("\nfastpad.pad host time, pinned vs pageable outputs:")
        for name, figures in report["pad_pinning"].items():
            print(f"  {name:<18}{_us(figures['pinned']):>10} us{_us(figures['pageable']):>10} us")
    for name in report["errors"]:
        print(f"\nFAILED section {name} (traceback in the JSON)")


SECTIONS = ("paths", "bandwidth", "overlap", "crossover", "pad_pinning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda[:N] (default) or cpu (dry run)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pipeline", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 (a smoke run)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; skipped (the GPU benchmark was not run)")
        return 0
    rounds, pipeline = (3, 2) if args.quick else (args.rounds, args.pipeline)
    report = run(args.device, rounds, pipeline, set(args.sections.split(",")))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print_report(report)
    return 1 if report["errors"] else 0


# -- pytest-benchmark suite -------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PATH_NAMES = [
    "tokenizer.pad+to",
    "pad+pin+to",
    "Packer",
    "Packer stream=Stream()",
    "Packer stream=current",
    "Packer ragged",
    "Packer auto",
]


@pytest.fixture(scope="module")
def gpu_paths() -> dict[str, Callable[[Any], Any]]:
    return make_paths(Device("cuda"), load_tokenizer()[0])


@needs_cuda
@pytest.mark.parametrize("workload", WORKLOADS, ids=[workload.name for workload in WORKLOADS])
@pytest.mark.parametrize("path", PATH_NAMES)
def test_to_cuda(benchmark: Any, gpu_paths: Any, workload: Workload, path: str) -> None:
    if path not in gpu_paths:
        pytest.skip("transformers not installed")
    device = Device("cuda")
    rows = make_rows(workload)
    check_paths({path: gpu_paths[path]}, rows, device)
    function = gpu_paths[path]

    def one_batch() -> None:
        function(rows)
        device.synchronize()

    benchmark(one_batch)


def test_dry_run_on_the_cpu(tmp_path: Any) -> None:
    """Every section of the script runs (on the CPU, figures meaningless) and writes its JSON."""
    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert set(report["workloads"]) == {workload.name for workload in WORKLOADS}
    assert report["crossover"]["points"] and report["overlap"] and report["pad_pinning"]


if __name__ == "__main__":
    sys.exit(main())
