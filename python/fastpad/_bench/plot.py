"""The bench's figure, 3 x 2 panels sized to read at page width; all drawing lives here.

Top row, the end-to-end section: texts/s of count batches and token batches (every repeat a
dot, the bar its median), and the padded cells the model computed on against the real tokens.
Middle left: fastpad's speed-up against the baseline (``tokenizer.pad``, else fastpad.reference)
by batch size, one line per workload, bars from the quartiles; points whose timings stayed
noisy after a re-measurement are hollow. Middle right: time per batch of every path for one
workload. Bottom left: fastpad's speed-up over every other path at one batch size, per workload.
Bottom right: the patch_transformers section, medians of interleaved or paired timings (single-run
totals stay in the table), against a marked 1x line, slowdowns drawn apart. Everything is drawn
from the report alone, so a saved bench.json can be re-plotted (`plot_json`).
"""

from __future__ import annotations

import json
from typing import Any

from .patch import MICRO_BATCH
from .report import index_results, noisy

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
    """Write the 3 x 2 bench figure of `report` (the bench's JSON-ready dict) to `filename`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.titlesize": 10, "axes.labelsize": 9})
    figure, axes = plt.subplots(3, 2, figsize=(10.5, 12.6))
    index = index_results(report)
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    baseline = "tokenizer-pad" if any(key[2] == "tokenizer-pad" for key in index) else "reference"
    if not _end_to_end(axes[0][0], axes[0][1], report):
        for axis in axes[0]:
            _not_run(axis, "end-to-end section not run\n(needs transformers and the bundled model)")
    _speedup_by_size(axes[1][0], report, index, workloads, sizes, baseline)
    _times(axes[1][1], report, index, workloads, sizes)
    _speedup_over_paths(axes[2][0], report, index, workloads, sizes)
    if not _patch(axes[2][1], report):
        _not_run(
            axes[2][1],
            "patch_transformers section not run\n(needs transformers and the bundled tokenizer)",
        )
    machine = report["machine"]
    figure.suptitle(
        f"fastpad {machine['fastpad']}: input_ids + attention_mask, int64, "
        f"{report['config']['threads']} thread(s)\n{machine['cpu']} ({machine['cores']} cores), "
        f"torch {machine['torch']}, transformers {machine['transformers']}",
        fontsize=10,
        y=0.995,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(filename, dpi=100)
    plt.close(figure)


def _not_run(axis: Any, text: str) -> None:
    axis.axis("off")
    axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=axis.transAxes)


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
    """fastpad (lists: solid; Ragged: dashed) against `baseline`, one colour per workload; the
    bars span the quartile ratios, hollow markers are points whose timings stayed noisy."""
    values: list[float] = []
    any_noisy = False
    for number, workload in enumerate(workloads):
        color = WORKLOAD_COLORS[number % len(WORKLOAD_COLORS)]
        for path, linestyle, marker in ((FAST, "-", "o"), ("fastpad-ragged", "--", "s")):
            points = []
            for size in sizes:
                fast, base = (
                    index.get((workload, size, path)),
                    index.get((workload, size, baseline)),
                )
                if fast is None or base is None:
                    continue
                ratio = base["median_s"] / fast["median_s"]
                low = base.get("q1_s", base["median_s"]) / fast.get("q3_s", fast["median_s"])
                high = base.get("q3_s", base["median_s"]) / fast.get("q1_s", fast["median_s"])
                points.append((size, ratio, low, high, noisy(fast) or noisy(base)))
            if not points:
                continue
            xs = [point[0] for point in points]
            ys = [point[1] for point in points]
            values += ys + [point[2] for point in points] + [point[3] for point in points]
            axis.errorbar(
                xs,
                ys,
                yerr=[
                    [max(0.0, y - point[2]) for y, point in zip(ys, points, strict=True)],
                    [max(0.0, point[3] - y) for y, point in zip(ys, points, strict=True)],
                ],
                color=color,
                linestyle=linestyle,
                marker=marker,
                linewidth=2 if path == FAST else 1.2,
                capsize=2,
                elinewidth=0.8,
                label=f"{workload}: {_label(report, path)}",
            )
            hollow = [point for point in points if point[4]]
            any_noisy = any_noisy or bool(hollow)
            axis.plot(
                [point[0] for point in hollow],
                [point[1] for point in hollow],
                linestyle="none",
                marker=marker,
                markerfacecolor="white",
                markeredgecolor=color,
                markeredgewidth=1.5,
                markersize=7,
                zorder=5,  # above errorbar's own markers
            )
    axis.axhline(1.0, color="black", linewidth=0.9)
    _log_axes(axis)
    if values:
        axis.set_ylim(min(1.0, min(values)) / 1.5, max(values) * 1.5)
    axis.set_title(f"fastpad.pad speed-up over {_label(report, baseline)}")
    axis.set_xlabel("batch size B (rows)")
    note = "; hollow: noisy (IQR > 30% of median)" if any_noisy else ""
    axis.set_ylabel(f"{baseline} time / fastpad time\n(bars: quartile ratios{note})")
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
    values: list[float] = []
    for number, path in enumerate(report["paths"]):
        points = [
            (size, index[(workload, size, path)]["median_s"])
            for size in sizes
            if (workload, size, path) in index
        ]
        if not points:
            continue
        values += [seconds for _, seconds in points]
        style = {"linewidth": 1.2, **STYLES.get(path, {"marker": "^v<>dpPhX*"[number % 10]})}
        axis.plot(
            [size for size, _ in points],
            [seconds for _, seconds in points],
            label=_label(report, path),
            **style,
        )
    _log_axes(axis)
    if values:
        # Fitted to the data; room below for the legend, which sits in the empty lower right
        # (times grow with B, so large B and short times hold no line).
        axis.set_ylim(min(values) / 100, max(values) * 2)
    axis.set_title(f"time per batch (median), workload {workload!r}")
    axis.set_xlabel("batch size B (rows)")
    axis.set_ylabel("seconds per batch")
    axis.legend(fontsize=6, loc="lower right", ncol=3, columnspacing=0.8, handlelength=1.6)


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


def _patch(axis: Any, report: dict[str, Any]) -> bool:
    """The patch_transformers section's speed-ups as bars; False (nothing drawn) without it.

    Only medians of many timings: the calls (interleaved samples) and the host prep per batch
    (paired timings). The single-run totals, where the model's noise exceeds what the patch
    saves, stay in the table. A log x axis with 1x marked; a slowdown (< 1x) is a grey hatched
    bar labelled "slower", so it never reads as a small win. Labels stay inside the frame.
    """
    section = report.get("patch_transformers")
    if not section:
        return False
    bars: list[tuple[str, float]] = [(item["short"], item["speedup"]) for item in section["micro"]]
    encode, training = section["sentence_transformers"], section["training_loop"]
    if "skipped" not in encode:
        bars.append(("encode: host prep / batch", encode["prep_speedup"]))
    bars.append(("train: host prep / batch", training["prep_speedup"]))
    labels = [label for label, _ in bars]
    values = [value for _, value in bars]
    positions = list(range(len(bars)))
    slower = [value < 1.0 for value in values]
    axis.barh(
        positions,
        values,
        color=[LOSS_COLOR if loss else WIN_COLOR for loss in slower],
    )
    for bar, loss in zip(axis.patches, slower, strict=True):
        if loss:
            bar.set_hatch("///")
            bar.set_edgecolor("black")
    axis.set_yticks(positions, labels, fontsize=7)
    axis.invert_yaxis()
    low, high = min([*values, 1.0]), max([*values, 1.0])
    # Room for the labels: the frame reaches past the longest bar and below the shortest.
    axis.set_xlim(min(0.5, low / 2), high * 4)
    axis.set_xscale("log")
    axis.axvline(1.0, color="black", linewidth=1.2)
    axis.text(1.0, 0.01, " 1x", transform=axis.get_xaxis_transform(), va="bottom", fontsize=8)
    for position, value, loss in zip(positions, values, slower, strict=True):
        text = f" {value:.3g}x (slower)" if loss else f" {value:.3g}x"
        axis.text(max(value, 1.0), position, text, va="center", fontsize=7)
    axis.grid(True, axis="x", which="major", alpha=0.4)
    axis.set_title(
        f"patch_transformers() speed-up: calls at B={MICRO_BATCH},\n"
        "host prep per batch (medians; run totals: table)"
    )
    axis.set_xlabel("unpatched time / patched time (grey hatched: slower)")
    return True


def _end_to_end(rate_axis: Any, cells_axis: Any, report: dict[str, Any]) -> bool:
    """The end-to-end section: texts/s per pass on `rate_axis` (dots: every repeat; bar: their
    median), padded cells against real tokens on `cells_axis`. False without the section."""
    section = report.get("end_to_end")
    if not section:
        return False
    import matplotlib.ticker

    parts = (("count batches", section["count"]), ("token batches", section["tokens"]))
    colors = (LOSS_COLOR, WIN_COLOR)
    labels = [
        f"count: {section['count']['batch_size']} per batch,\narrival order",
        f"tokens: token_batches\n(max_tokens={section['tokens']['max_tokens']})",
    ]
    # Left: texts/s.
    axis = rate_axis
    highest = 0.0
    for position, ((_, part), color) in enumerate(zip(parts, colors, strict=True)):
        rates = [section["texts"] / seconds for seconds in part["seconds"]]
        median = part["texts_per_s"]["median"]
        highest = max(highest, *rates)
        axis.bar(position, median, width=0.6, color=color, alpha=0.75)
        axis.plot([position] * len(rates), rates, "o", color="black", markersize=4)
        spread = part["texts_per_s"]
        text = (
            f"{median:.1f}"
            if len(rates) == 1
            else (f"{median:.1f}\n({spread['min']:.1f}-{spread['max']:.1f})")
        )
        axis.text(position, max(rates) * 1.03, text, ha="center", va="bottom", fontsize=8)
    axis.set_xticks([0, 1], labels, fontsize=8)
    axis.set_ylim(0, highest * 1.35)
    axis.set_xlim(-0.6, 1.6)
    axis.grid(True, axis="y", alpha=0.4)
    speedup = section["speedup"]
    repeats = section["repeats"]
    ratio = (
        f"{speedup['median']:.2f}x"
        if repeats == 1
        else f"{speedup['median']:.2f}x ({speedup['min']:.2f}-{speedup['max']:.2f}x)"
    )
    axis.set_title(
        f"end to end: all-MiniLM-L6-v2, {section['texts']} mixed texts, "
        f"{section['model_threads']} thread(s)\ntoken batches {ratio} the texts/s, "
        f"{repeats} repeat(s)"
    )
    axis.set_ylabel("texts/s (bar: median; dots: repeats)")
    # Right: padded cells, real tokens and padding.
    axis = cells_axis
    real = section["real_tokens"]
    for position, ((_, part), color) in enumerate(zip(parts, colors, strict=True)):
        cells = part["padded_cells"]
        axis.barh(position, real, color=color, alpha=0.75)
        axis.barh(position, cells - real, left=real, color="white", edgecolor=color, hatch="///")
        axis.text(
            cells,
            position,
            f" {cells:,} cells\n ({100 * (cells - real) / cells:.0f}% padding)",
            va="center",
            fontsize=8,
        )
    axis.set_yticks([0, 1], labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, max(part["padded_cells"] for _, part in parts) * 1.45)
    axis.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")
    )
    axis.grid(True, axis="x", alpha=0.4)
    axis.set_title(
        f"cells the model computes on, the same texts:\n{real:,} real tokens (solid) + padding "
        "(hatched)"
    )
    axis.set_xlabel("padded cells (rows x padded length), all batches")
    return True
