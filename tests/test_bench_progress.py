"""The bench's progress display: tqdm or nothing (never a hand-written counter)."""

from __future__ import annotations

import sys

import pytest

from fastpad._bench.progress import Progress


def _steps(progress: Progress) -> None:
    for text in ("short B=1", "short B=8"):
        progress.step(text)
    progress.close()


def test_without_tqdm_there_is_one_note_and_no_display(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # what an absent package looks like
    notes: list[str] = []
    _steps(Progress(2, enabled=True, say=notes.append))
    assert notes == ["tqdm is not installed: no progress display (pip install tqdm)"]
    assert capsys.readouterr() == ("", "")


def test_disabled_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    notes: list[str] = []
    _steps(Progress(2, enabled=False, say=notes.append))
    assert notes == []
    assert capsys.readouterr() == ("", "")


def test_tqdm_bar_counts_the_steps(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    notes: list[str] = []
    _steps(Progress(2, enabled=True, say=notes.append))
    assert notes == []
    err = capsys.readouterr().err
    assert "short B=8" in err and "2/2" in err
