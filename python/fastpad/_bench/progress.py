"""The bench's progress display: a tqdm bar on stderr, one step per measured cell.

tqdm is the only progress library (the `bench` and `test` extras install it); without it the bench
runs with no progress display and says so once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar of `total` steps; nothing when `enabled` is false or tqdm is not installed."""

    def __init__(self, total: int, enabled: bool, say: Callable[[str], None]) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            say("tqdm is not installed: no progress display (pip install tqdm)")
            return
        self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)

    def step(self, text: str) -> None:
        """Start the step described by `text`."""
        if self._bar is not None:
            self._bar.set_description_str(text)
            self._bar.update(1)

    def close(self) -> None:
        """End the bar (tqdm leaves the finished bar on stderr)."""
        if self._bar is not None:
            self._bar.close()
