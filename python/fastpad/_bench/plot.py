"""The bench's figure: time per batch against batch size, one panel per workload, and the
patch_transformers section's panel."""

from __future__ import annotations

from typing import Any

from . import patch
from .report import index_results

__all__ = ["plot"]


def plot(report: dict[str, Any], filename: str) -> None:
    """Log-log time per batch vs batch size, one line per path, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = index_results(report)
    paths = list(report["paths"])
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    figure, axes = plt.subplots(
        1, len(workloads), figsize=(5.2 * len(workloads), 4.6), squeeze=False, sharey=True
    )
    styles: dict[str, dict[str, Any]] = {
        "fastpad-lists": {"color": "tab:red", "linewidth": 2.6, "marker": "o"},
        "fastpad-ragged": {"color": "tab:orange", "linewidth": 2.6, "marker": "s"},
        "copy-floor": {"color": "black", "linestyle": ":", "marker": "."},
        "reference": {"color": "tab:blue", "marker": "<"},
        "tokenizer-pad": {"color": "tab:purple", "marker": ">"},
        "collator": {"color": "tab:pink", "marker": "d", "linestyle": "--"},
        "pad-sequence": {"color": "tab:green", "marker": "^"},
        "numpy-lists": {"color": "tab:brown", "marker": "v"},
        "numpy-flat": {"color": "tab:olive", "marker": "P"},
    }
    for axis, workload in zip(axes[0], workloads, strict=True):
        for number, path in enumerate(paths):
            points = [
                (size, index[(workload, size, path)]["median_s"])
                for size in sizes
                if (workload, size, path) in index
            ]
            if not points:
                continue
            style = {"linewidth": 1.2, **styles.get(path, {"marker": "^v<>dpPhX*"[number % 10]})}
            axis.plot(
                [size for size, _ in points],
                [seconds for _, seconds in points],
                label=report["paths"][path],
                **style,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(workload)
        axis.set_xlabel("batch size B (rows)")
        axis.grid(True, which="major", alpha=0.4)
        axis.grid(True, which="minor", alpha=0.12)
    axes[0][0].set_ylabel("time per batch (s), median")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    machine = report["machine"]
    figure.suptitle(
        f"fastpad {machine['fastpad']}: input_ids + attention_mask, int64, "
        f"{report['config']['threads']} thread(s); {machine['cpu']}",
        fontsize=10,
    )
    patch.add_to_plot(figure, axes[0], report)
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    figure.savefig(filename, dpi=110)
    plt.close(figure)
