"""The bench's text outputs: the Markdown tables printed by ``python -m fastpad bench`` and the
JSON file, both from the JSON-ready report that `fastpad._bench.run.run` returns."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from . import e2e, patch
from .measure import NOISY_IQR, format_seconds
from .paths import RATIOS
from .workloads import Workload

__all__ = ["index_results", "noisy", "table_lines", "write_json"]


def index_results(report: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {
        (item["workload"], item["batch_size"], item["path"]): item for item in report["results"]
    }


def noisy(item: dict[str, Any]) -> bool:
    """Whether a result's interquartile range exceeds `NOISY_IQR` of its median."""
    if "q1_s" not in item or "q3_s" not in item:
        return False
    return bool(item["q3_s"] - item["q1_s"] > NOISY_IQR * item["median_s"])


def _time_cell(item: dict[str, Any]) -> str:
    return ("~" if noisy(item) else "") + format_seconds(item["median_s"])


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    """Markdown tables: medians per batch size and path, then the ratio columns."""
    index = index_results(report)
    paths = list(report["paths"])
    labels = report["paths"]
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    described = {item["name"]: item for item in report["config"]["workloads"]}
    for workload in workloads:
        spec = described.get(workload, {})
        yield ""
        description = Workload(**spec).describe() if spec else ""
        yield (
            f"**{workload}** ({description}); median time per batch (~: noisy, IQR above "
            f"{100 * NOISY_IQR:.0f}% of the median after one re-measurement)"
        )
        yield ""
        yield "| B | " + " | ".join(labels[path] for path in paths) + " |"
        yield "|---:|" + "---:|" * len(paths)
        for size in sizes:
            cells = [
                _time_cell(index[(workload, size, path)])
                if (workload, size, path) in index
                else "-"
                for path in paths
            ]
            yield f"| {size} | " + " | ".join(cells) + " |"
        ratios = [(a, b) for a, b in RATIOS if a in paths and b in paths]
        if not ratios:
            continue
        yield ""
        yield (
            f"**{workload}**: speed-up (baseline time / fastpad time; "
            "copy floor: fastpad time / floor time)"
        )
        yield ""
        header = []
        for fast, base in ratios:
            if base == "copy-floor":
                header.append(f"{labels[fast]} / copy floor")
            else:
                header.append(f"{labels[fast]} vs {labels[base]}")
        yield "| B | " + " | ".join(header) + " |"
        yield "|---:|" + "---:|" * len(ratios)
        for size in sizes:
            cells = []
            for fast, base in ratios:
                a, b = index.get((workload, size, fast)), index.get((workload, size, base))
                if a is None or b is None:
                    cells.append("-")
                elif base == "copy-floor":
                    cells.append(f"{a['median_s'] / b['median_s']:.2f}x")
                else:
                    cells.append(f"{b['median_s'] / a['median_s']:.1f}x")
            yield f"| {size} | " + " | ".join(cells) + " |"
    memory = [item for item in report["results"] if item.get("peak_rss_bytes") is not None]
    if memory:
        yield ""
        yield "**Peak extra memory** of one call (MiB, result included): tracemalloc / RSS; "
        yield "output = the two int64 [B, L] tensors"
        yield ""
        yield "| workload | B | output | " + " | ".join(labels[path] for path in paths) + " |"
        yield "|---|---:|---:|" + "---:|" * len(paths)
        seen = dict.fromkeys((item["workload"], item["batch_size"]) for item in memory)
        for workload, size in seen:
            row = []
            output = None
            for path in paths:
                item = index.get((workload, size, path))
                if item is None or item.get("peak_rss_bytes") is None:
                    row.append("-")
                    continue
                output = item["output_bytes"]
                row.append(
                    f"{item['peak_tracemalloc_bytes'] / 2**20:.2f} / "
                    f"{item['peak_rss_bytes'] / 2**20:.2f}"
                )
            shown = "-" if output is None else f"{output / 2**20:.2f}"
            yield f"| {workload} | {size} | {shown} | " + " | ".join(row) + " |"
    faulted = [item for item in report["results"] if item.get("faults_per_call") is not None]
    if faulted:
        fast_paths = list(dict.fromkeys(item["path"] for item in faulted))
        yield ""
        yield "**Page faults per call** (fastpad, steady state, minor faults from getrusage)"
        yield ""
        yield (
            "| workload | B | output pages | "
            + " | ".join(labels[path] for path in fast_paths)
            + " |"
        )
        yield "|---|---:|---:|" + "---:|" * len(fast_paths)
        for workload, size in dict.fromkeys(
            (item["workload"], item["batch_size"]) for item in faulted
        ):
            page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
            pages = -(-index[(workload, size, fast_paths[0])]["output_bytes"] // page)
            row = [
                f"{index[(workload, size, path)]['faults_per_call']:.1f}"
                if (workload, size, path) in index
                else "-"
                for path in fast_paths
            ]
            yield f"| {workload} | {size} | {pages} | " + " | ".join(row) + " |"
    if report.get("thread_scaling"):
        yield ""
        yield "**Threads** (fastpad.pad from Ragged, GIL released): median time and speed-up"
        yield ""
        yield "| workload | B | threads | time | speed-up |"
        yield "|---|---:|---:|---:|---:|"
        for item in report["thread_scaling"]:
            yield (
                f"| {item['workload']} | {item['batch_size']} | {item['threads']} | "
                f"{format_seconds(item['median_s'])} | {item['speedup']:.2f}x |"
            )
    if report.get("encode"):
        yield ""
        yield "**fastpad.encode** vs the tokenizer (texts, truncation=True, return_tensors='pt')"
        yield ""
        yield (
            "| B | tokenizer padded | tokenizer unpadded (lists) | fastpad.encode | "
            "speed-up vs padded | encode / unpadded |"
        )
        yield "|---:|---:|---:|---:|---:|---:|"
        for item in report["encode"]:
            yield (
                f"| {item['batch_size']} | {format_seconds(item['tokenizer_padded_s'])} | "
                f"{format_seconds(item['tokenizer_unpadded_s'])} | "
                f"{format_seconds(item['encode_s'])} | {item['speedup_vs_padded']:.2f}x | "
                f"{item['ratio_to_unpadded']:.2f}x |"
            )
    yield from patch.table_lines(report)
    yield from e2e.table_lines(report)


def write_json(report: dict[str, Any], filename: str) -> None:
    with open(filename, "w") as handle:
        json.dump(report, handle, indent=1)
        handle.write("\n")
