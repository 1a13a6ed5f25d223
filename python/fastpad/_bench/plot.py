"""The bench's figure, 2 x 2 panels sized to read at page width.

Top left: fastpad's speed-up against the baseline (``tokenizer.pad``, else fastpad.reference)
by batch size, one line per workload. Top right: time per batch of every path for one workload.
Bottom left: fastpad's speed-up over every other path at one batch size, per workload. Bottom
right: the patch_transformers section, bars against a marked 1x line, slowdowns drawn apart.
Everything is drawn from the report alone, so a saved bench.json can be re-plotted
(`plot_json`).
"""

from __future__ import annotations

import json
from typing import Any

from . import patch
from .report import index_results

__all__ = ["plot", "plot_json"]

# Colour families: fastpad warm, transformers/pure Python cool, torch/numpy green/brown, floor
# black; the slow cluster and the fast cluster of the time panel then read apart.
STYLES: dict[str, dict[str, Any]] = {
    "fastpad-lists": {"color": "#d62728", "linewidth": 2.4, "marker": "o"},
    "fastpad-ragged": {"color": "#ff7f0e", "linewidth": 2.4, "marker": "s"},
    "copy-floor": {"color": "black", "linestyle": ":", "marker": "."},
    "reference": {"color": "#1f77b4", "marker": "<", "linestyle": "--"},
    "tokenizer-pad": {"color": "#9467bd", "marker": ">", "linestyle": "--"},
    "collator": {"color": "#17becf", "marker": "d", "linestyle": "--"},
    "pad-sequence": {"color": "#2ca02c", "marker": "^"},
    "numpy-lists": {"color": "#8c564b", "marker": "v"},
    "numpy-flat": {"color": "#bcbd22", "marker": "P"},
}
# Shorter names than the JSON's labels, so legends and tick labels stay inside the frame.
SHORT_LABELS = {
    "fastpad-lists": "fastpad.pad (lists)",
    "fastpad-ragged": "fastpad.pad (Ragged)",
    "reference": "fastpad.reference",
    "tokenizer-pad": "tokenizer.pad",
    "collator": "DataCollatorWithPadding",
    "pad-sequence": "torch pad_sequence",
    "numpy-lists": "numpy (from lists)",
    "numpy-flat": "numpy (flat arrays)",
    "copy-floor": "copy floor (clone)",
}
WORKLOAD_COLORS = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
FAST = "fastpad-lists"
# Bar colours of the patch panel: a win, and a slowdown (hatched as well, so it reads in grey).
WIN_COLOR = "#d62728"
LOSS_COLOR = "#7f7f7f"


def plot(report: dict[str, Any], filename: str) -> None:
    """Write the 2 x 2 bench figure of `report` (the bench's JSON-ready dict) to `filename`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.titlesize": 10, "axes.labelsize": 9})
    figure, axes = plt.subplots(2, 2, figsize=(10.5, 8.4))
    index = index_results(report)
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    baseline = "tokenizer-pad" if any(key[2] == "tokenizer-pad" for key in index) else "reference"
    _speedup_by_size(axes[0][0], report, index, workloads, sizes, baseline)
    _times(axes[0][1], report, index, workloads, sizes)
    _speedup_over_paths(axes[1][0], report, index, workloads, sizes)
    if not patch.add_to_plot(axes[1][1], report):
        axes[1][1].axis("off")
        axes[1][1].text(
            0.5,
            0.5,
            "patch_transformers section not run\n(needs transformers and the bundled tokenizer)",
            ha="center",
            va="center",
            fontsize=9,
            transform=axes[1][1].transAxes,
        )
    machine = report["machine"]
    figure.suptitle(
        f"fastpad {machine['fastpad']}: input_ids + attention_mask, int64, "
        f"{report['config']['threads']} thread(s)\n{machine['cpu']} ({machine['cores']} cores), "
        f"torch {machine['torch']}, transformers {machine['transformers']}",
        fontsize=10,
        y=0.995,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(filename, dpi=100)
    plt.close(figure)


def plot_json(json_path: str, filename: str) -> None:
    """Re-plot a saved bench.json (e.g. docs/bench.json) into `filename`."""
    with open(json_path) as handle:
        plot(json.load(handle), filename)


def _label(report: dict[str, Any], path: str) -> str:
    return str(SHORT_LABELS.get(path, report["paths"].get(path, path)))


def _log_axes(axis: Any) -> None:
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.grid(True, which="major", alpha=0.4)
    axis.grid(True, which="minor", alpha=0.12)


def _speedup_by_size(
    axis: Any,
    report: dict[str, Any],
    index: dict[tuple[str, int, str], dict[str, Any]],
    workloads: list[str],
    sizes: list[int],
    baseline: str,
) -> None:
    """fastpad (lists: solid; Ragged: dashed) against `baseline`, one colour per workload."""
    for number, workload in enumerate(workloads):
        color = WORKLOAD_COLORS[number % len(WORKLOAD_COLORS)]
        for path, linestyle, marker in ((FAST, "-", "o"), ("fastpad-ragged", "--", "s")):
            points = [
                (size, index[(workload, size, baseline)]["median_s"] / index[key]["median_s"])
                for size in sizes
                if (key := (workload, size, path)) in index and (workload, size, baseline) in index
            ]
            if not points:
                continue
            axis.plot(
                [size for size, _ in points],
                [ratio for _, ratio in points],
                color=color,
                linestyle=linestyle,
                marker=marker,
                linewidth=2 if path == FAST else 1.2,
                label=f"{workload}: {_label(report, path)}",
            )
    axis.axhline(1.0, color="black", linewidth=0.9)
    _log_axes(axis)
    axis.set_title(f"fastpad.pad speed-up over {_label(report, baseline)}")
    axis.set_xlabel("batch size B (rows)")
    axis.set_ylabel(f"{baseline} time / fastpad time")
    axis.legend(fontsize=7, loc="lower right")


def _times(
    axis: Any,
    report: dict[str, Any],
    index: dict[tuple[str, int, str], dict[str, Any]],
    workloads: list[str],
    sizes: list[int],
) -> None:
    """Median time per batch of every path, for the middle workload."""
    workload = "sentences" if "sentences" in workloads else workloads[len(workloads) // 2]
    for number, path in enumerate(report["paths"]):
        points = [
            (size, index[(workload, size, path)]["median_s"])
            for size in sizes
            if (workload, size, path) in index
        ]
        if not points:
            continue
        style = {"linewidth": 1.2, **STYLES.get(path, {"marker": "^v<>dpPhX*"[number % 10]})}
        axis.plot(
            [size for size, _ in points],
            [seconds for _, seconds in points],
            label=_label(report, path),
            **style,
        )
    _log_axes(axis)
    low, high = axis.get_ylim()
    axis.set_ylim(low, high * 300)  # headroom: the legend sits above the lines
    axis.set_title(f"time per batch (median), workload {workload!r}")
    axis.set_xlabel("batch size B (rows)")
    axis.set_ylabel("seconds per batch")
    axis.legend(fontsize=6.5, loc="upper left", ncol=2)


def _speedup_over_paths(
    axis: Any,
    report: dict[str, Any],
    index: dict[tuple[str, int, str], dict[str, Any]],
    workloads: list[str],
    sizes: list[int],
) -> None:
    """fastpad.pad (lists) against every other path at one batch size (256 when measured)."""
    size = 256 if 256 in sizes else sizes[len(sizes) // 2]
    others = [path for path in report["paths"] if path != FAST]
    others = [path for path in others if any((w, size, path) in index for w in workloads)]
    height = 0.8 / max(1, len(workloads))
    ratios: list[float] = []
    for number, workload in enumerate(workloads):
        positions, values = [], []
        for row, path in enumerate(others):
            fast, other = index.get((workload, size, FAST)), index.get((workload, size, path))
            if fast is None or other is None:
                continue
            positions.append(row + (number - (len(workloads) - 1) / 2) * height)
            values.append(other["median_s"] / fast["median_s"])
        ratios += values
        axis.barh(
            positions,
            values,
            height=height,
            color=WORKLOAD_COLORS[number % len(WORKLOAD_COLORS)],
            label=workload,
        )
    axis.set_yticks(range(len(others)), [_label(report, path) for path in others], fontsize=8)
    axis.invert_yaxis()
    if ratios:  # limits first: equal bars would make log autoscaling degenerate
        axis.set_xlim(min(0.5, min(ratios) / 1.5), max(ratios) * 2)
    axis.set_xscale("log")
    axis.axvline(1.0, color="black", linewidth=0.9)
    axis.grid(True, axis="x", which="major", alpha=0.4)
    axis.set_title(f"fastpad.pad (lists) speed-up over each path, B={size}")
    axis.set_xlabel("path time / fastpad.pad (lists) time (> 1: fastpad faster)")
    axis.legend(fontsize=7, loc="lower right", title="workload", title_fontsize=7)
