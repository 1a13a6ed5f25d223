"""The bench picture: 2 x 2 panels at a page-readable size, 1x marked, slowdowns drawn apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from fastpad._bench import patch
from fastpad._bench.plot import LOSS_COLOR, WIN_COLOR, plot


def _report(train_total: float) -> dict[str, Any]:
    paths = {"fastpad-lists": "fastpad.pad (lists)", "tokenizer-pad": "tokenizer.pad"}
    results = [
        {"workload": workload, "batch_size": size, "path": path, "median_s": seconds * size}
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
            "training_loop": {"prep_speedup": 14.0, "total_speedup": train_total},
        },
    }


def test_patch_panel_draws_slowdowns_apart() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors as colors
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    assert patch.add_to_plot(axis, _report(train_total=0.887))
    bars = axis.patches
    assert [colors.to_hex(bar.get_facecolor()) for bar in bars] == [
        colors.to_hex(WIN_COLOR)
    ] * 4 + [colors.to_hex(LOSS_COLOR)]
    assert [bool(bar.get_hatch()) for bar in bars] == [False] * 4 + [True]
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
    assert not patch.add_to_plot(empty, {"patch_transformers": None})
    plt.close("all")


def test_plot_is_two_by_two_at_page_width(tmp_path: Path) -> None:
    from matplotlib.image import imread

    target = tmp_path / "bench.png"
    plot(_report(train_total=1.02), str(target))
    height, width = imread(target).shape[:2]
    assert width <= 1200 and 0.6 < height / width < 1.0
