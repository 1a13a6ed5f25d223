"""The bench picture: 3 x 2 panels at a page-readable size, 1x marked, slowdowns drawn apart, no
single-run total as a speed-up, noisy points hollow, axes fitted to the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from fastpad._bench import plot as plot_module
from fastpad._bench.plot import LOSS_COLOR, WIN_COLOR, plot


def _report(train_prep: float) -> dict[str, Any]:
    noisy = ("short", 256, "fastpad-lists")
    paths = {"fastpad-lists": "fastpad.pad (lists)", "tokenizer-pad": "tokenizer.pad"}
    results = [
        {
            "workload": workload,
            "batch_size": size,
            "path": path,
            "median_s": seconds * size,
            "q1_s": seconds * size * 0.95,
            # one noisy point: fastpad at short B=256
            "q3_s": seconds * size * (1.5 if (workload, size, path) == noisy else 1.05),
        }
        for workload in ("short", "sentences")
        for size in (1, 256)
        for path, seconds in (("fastpad-lists", 1e-6), ("tokenizer-pad", 1e-4))
    ]
    encode = {"prep_speedup": 1.2, "total_speedup": 1.01}
    return {
        "machine": {
            "fastpad": "0.1.0",
            "cpu": "test CPU",
            "cores": 2,
            "torch": "x",
            "transformers": "y",
        },
        "config": {"batch_sizes": [1, 256], "threads": 1},
        "paths": paths,
        "results": results,
        "patch_transformers": {
            "micro": [{"short": "tokenizer.pad", "speedup": 60.0}],
            "sentence_transformers": encode,
            "training_loop": {"prep_speedup": train_prep, "total_speedup": 1.02},
        },
        "end_to_end": {
            "texts": 512,
            "model_threads": 1,
            "repeats": 3,
            "real_tokens": 30000,
            "count": {
                "batch_size": 32,
                "padded_cells": 130000,
                "seconds": [60.0, 66.0, 63.0],
                "texts_per_s": {"median": 512 / 63, "min": 512 / 66, "max": 512 / 60},
            },
            "tokens": {
                "max_tokens": 2048,
                "padded_cells": 35000,
                "seconds": [20.0, 22.0, 21.0],
                "texts_per_s": {"median": 512 / 21, "min": 512 / 22, "max": 512 / 20},
            },
            "speedup": {"median": 3.0, "min": 2.9, "max": 3.1},
        },
    }


def test_patch_panel_draws_slowdowns_apart_and_no_run_totals() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors as colors
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    assert plot_module._patch(axis, _report(train_prep=0.887))
    bars = axis.patches
    assert [colors.to_hex(bar.get_facecolor()) for bar in bars] == [
        colors.to_hex(WIN_COLOR)
    ] * 2 + [colors.to_hex(LOSS_COLOR)]
    assert [bool(bar.get_hatch()) for bar in bars] == [False] * 2 + [True]
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert labels == ["tokenizer.pad", "encode: host prep / batch", "train: host prep / batch"]
    assert not any("total" in label for label in labels)  # single runs stay in the table
    texts = [text.get_text() for text in axis.texts]
    assert " 0.887x (slower)" in texts and " 1x" in texts
    assert any(line.get_xdata()[0] == 1.0 for line in axis.get_lines())  # the 1x line
    # Every label ends inside the frame.
    figure.canvas.draw()
    frame = axis.get_window_extent()
    for text in axis.texts:
        assert text.get_window_extent().x1 <= frame.x1, text.get_text()
    plt.close(figure)
    _, empty = plt.subplots()
    assert not plot_module._patch(empty, {"patch_transformers": None})
    plt.close("all")


def test_speedups_show_their_spread_noisy_points_hollow_axes_fitted() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = _report(train_prep=14.0)
    index = plot_module.index_results(report)
    figure, (left, right) = plt.subplots(1, 2)
    plot_module._speedup_by_size(
        left, report, index, ["short", "sentences"], [1, 256], "tokenizer-pad"
    )
    assert len(left.containers) == 2  # one errorbar (quartile ratios) per workload
    hollow = [
        line
        for line in left.get_lines()
        if line.get_markerfacecolor() == "white" and len(line.get_xdata())
    ]
    assert [list(line.get_xdata()) for line in hollow] == [[256]]  # the noisy point only
    low, high = left.get_ylim()
    assert 0.3 < low < 1 and high < 1000  # ratios are 100x: no decades of empty axis
    plot_module._times(right, report, index, ["short", "sentences"], [1, 256])
    low, high = right.get_ylim()
    assert high <= 2 * 256e-4 * 1.001 and low >= 1e-6 / 101
    plt.close(figure)


def test_end_to_end_panels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, (rates, cells) = plt.subplots(1, 2)
    assert plot_module._end_to_end(rates, cells, _report(train_prep=14.0))
    # Every repeat is a dot; the bars are the medians.
    dots = [line for line in rates.get_lines() if line.get_marker() == "o"]
    assert [len(line.get_xdata()) for line in dots] == [3, 3]
    heights = [bar.get_height() for bar in rates.patches]
    assert heights == pytest.approx([512 / 63, 512 / 21])
    assert "3.00x (2.90-3.10x)" in rates.get_title()
    # Cells: real tokens plus padding, per pass.
    widths = [bar.get_width() for bar in cells.patches]
    assert widths == pytest.approx([30000, 100000, 30000, 5000])
    _, empty = plt.subplots(1, 2)
    assert not plot_module._end_to_end(*empty, {"end_to_end": None})
    plt.close("all")


def test_plot_is_three_by_two_at_page_width(tmp_path: Path) -> None:
    from matplotlib.image import imread

    target = tmp_path / "bench.png"
    plot(_report(train_prep=14.0), str(target))
    height, width = imread(target).shape[:2]
    assert width <= 1200 and 1.0 < height / width < 1.3
