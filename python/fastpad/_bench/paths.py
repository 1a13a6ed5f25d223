"""The competing paths: every way of turning one `BenchBatch` into the padded int64
``input_ids`` + ``attention_mask`` tensors, and the check that two outputs are the same."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._pad import pad
from .workloads import PAD_ID, BenchBatch

__all__ = ["PATHS", "RATIOS", "Path", "assert_same", "available_paths"]


@dataclass(frozen=True)
class Path:
    """One way of producing the padded batch.

    `prepare(batch, tokenizer, threads)` returns the zero-argument callable that is timed; it
    receives inputs already in the form that path starts from.
    """

    name: str
    label: str
    prepare: Callable[[BenchBatch, Any, int], Callable[[], Any]]
    needs_tokenizer: bool = False
    slow: bool = False  # pure Python: B x L work in the interpreter


def truncation_options(batch: BenchBatch) -> dict[str, Any]:
    limit = batch.workload.truncate
    return {} if limit is None else {"truncation": True, "max_length": limit}


def _fastpad_lists(batch: BenchBatch, _tokenizer: Any, threads: int) -> Callable[[], Any]:
    rows, options = batch.rows, truncation_options(batch)
    return lambda: pad(rows, pad_token_id=PAD_ID, threads=threads, **options)


def _fastpad_ragged(batch: BenchBatch, _tokenizer: Any, threads: int) -> Callable[[], Any]:
    ragged, options = batch.ragged, truncation_options(batch)
    return lambda: pad(ragged, pad_token_id=PAD_ID, threads=threads, **options)


def _reference(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    from .. import reference

    rows, options = batch.rows, truncation_options(batch)
    return lambda: reference.pad(rows, pad_token_id=PAD_ID, **options)


def _tokenizer_pad(batch: BenchBatch, tokenizer: Any, _threads: int) -> Callable[[], Any]:
    encoded = {"input_ids": batch.kept_rows}
    return lambda: tokenizer.pad(encoded, padding=True, return_tensors="pt")


def _collator(batch: BenchBatch, tokenizer: Any, _threads: int) -> Callable[[], Any]:
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, padding=True, return_tensors="pt")
    features = batch.features
    return lambda: collate(features)


def _pad_sequence(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    import torch
    from torch.nn.utils.rnn import pad_sequence

    row_tensors = batch.row_tensors

    def run() -> dict[str, Any]:
        ids = pad_sequence(row_tensors, batch_first=True, padding_value=PAD_ID)
        lengths = torch.tensor([len(row) for row in row_tensors])
        mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask}

    return run


def _numpy_fill(values: Any, lengths: Any) -> dict[str, Any]:
    import torch

    width = int(lengths.max()) if lengths.size else 0
    mask = np.arange(width) < lengths[:, None]
    ids = np.full((lengths.size, width), PAD_ID, dtype=np.int64)
    ids[mask] = values
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
    }


def _numpy_lists(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    rows = batch.kept_rows

    def run() -> dict[str, Any]:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        values = np.fromiter(
            itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
        )
        return _numpy_fill(values, lengths)

    return run


def _numpy_flat(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    values, offsets = batch.kept_ragged.values, batch.kept_ragged.offsets
    return lambda: _numpy_fill(values, np.diff(offsets))


def _copy_floor(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    expected = pad(batch.kept_ragged, pad_token_id=PAD_ID, threads=1)
    ids, mask = expected["input_ids"], expected["attention_mask"]
    return lambda: {"input_ids": ids.clone(), "attention_mask": mask.clone()}


PATHS: dict[str, Path] = {
    path.name: path
    for path in (
        Path("fastpad-lists", "fastpad.pad (lists)", _fastpad_lists),
        Path("fastpad-ragged", "fastpad.pad (Ragged)", _fastpad_ragged),
        Path("reference", "fastpad.reference (pure Python)", _reference, slow=True),
        Path("tokenizer-pad", "tokenizer.pad", _tokenizer_pad, needs_tokenizer=True, slow=True),
        Path("collator", "DataCollatorWithPadding", _collator, needs_tokenizer=True, slow=True),
        Path("pad-sequence", "torch pad_sequence + mask (row tensors)", _pad_sequence),
        Path("numpy-lists", "numpy vectorised (from lists)", _numpy_lists),
        Path("numpy-flat", "numpy vectorised (flat arrays)", _numpy_flat),
        Path("copy-floor", "copy floor (tensor clone of the output)", _copy_floor),
    )
}
# Ratio columns of the table: fastpad path / baseline path.
RATIOS = (
    ("fastpad-lists", "reference"),
    ("fastpad-lists", "tokenizer-pad"),
    ("fastpad-lists", "numpy-lists"),
    ("fastpad-ragged", "numpy-flat"),
    ("fastpad-ragged", "copy-floor"),
)


def available_paths(tokenizer: Any, names: Iterable[str] | None = None) -> list[Path]:
    """The paths that can run here, in table order (those needing a tokenizer need one)."""
    chosen = list(PATHS) if names is None else list(names)
    unknown = [name for name in chosen if name not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {unknown}; choose from {list(PATHS)}")
    return [
        PATHS[name] for name in chosen if tokenizer is not None or not PATHS[name].needs_tokenizer
    ]


def assert_same(got: Any, expected: Any, label: str) -> None:
    """`got` has exactly the int64 ``input_ids`` and ``attention_mask`` of `expected`."""
    import torch

    keys = sorted(got.keys())
    if keys != ["attention_mask", "input_ids"]:
        raise AssertionError(f"{label}: keys {keys}, expected attention_mask and input_ids")
    for key in keys:
        value, want = got[key], expected[key]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.int64:
            raise AssertionError(f"{label}: {key} is {type(value).__name__} {value.dtype}")
        if value.shape != want.shape or not torch.equal(value, want):
            raise AssertionError(f"{label}: {key} differs ({tuple(value.shape)} vs {want.shape})")
