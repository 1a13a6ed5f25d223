"""fastpad.windows against the fast tokenizer's overflow windows and a pure-Python oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpad

torch = pytest.importorskip("torch")

CLS, SEP = 101, 102


def oracle(
    rows: list[list[int]],
    max_length: int,
    stride: int,
    prefix: list[int],
    suffix: list[int],
    left: bool = False,
) -> tuple[list[list[int]], list[int]]:
    """Windows as the tokenizers crate cuts them (Encoding::truncate), in plain Python."""
    content = max_length - len(prefix) - len(suffix)
    step = content - stride
    windows: list[list[int]] = []
    mapping: list[int] = []
    for index, row in enumerate(rows):
        spans = []
        if left:
            stop = len(row)
            while True:
                start = max(stop - content, 0)
                spans.append((start, stop))
                if start == 0:
                    break
                stop -= step
        else:
            start = 0
            while True:
                stop = min(start + content, len(row))
                spans.append((start, stop))
                if stop == len(row):
                    break
                start += step
        for start, stop in spans:
            windows.append(prefix + row[start:stop] + suffix)
            mapping.append(index)
    return windows, mapping


def padded(rows: list[list[int]], pad_id: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    width = max((len(row) for row in rows), default=0)
    ids = [row + [pad_id] * (width - len(row)) for row in rows]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row in rows]
    return ids, mask


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(1000, 30_000), max_size=40), max_size=6),
    st.integers(1, 12),
    st.data(),
    st.sampled_from([([], []), ([CLS], [SEP]), ([CLS, 7], [SEP])]),
    st.booleans(),
)
def test_matches_oracle(
    rows: list[list[int]],
    content: int,
    data: Any,
    around: tuple[list[int], list[int]],
    left: bool,
) -> None:
    prefix, suffix = around
    max_length = content + len(prefix) + len(suffix)
    stride = data.draw(st.integers(0, content - 1))
    expected, mapping = oracle(rows, max_length, stride, prefix, suffix, left)
    side = "left" if left else "right"
    for encoded in (
        rows,
        fastpad.Ragged.from_rows(rows),
        [np.asarray(row, dtype=np.int64) for row in rows],
    ):
        batch = fastpad.windows(
            encoded,
            max_length=max_length,
            stride=stride,
            prefix=prefix,
            suffix=suffix,
            pad_token_id=0,
            truncation_side=side,
            return_tensors="np",
        )
        assert list(batch) == ["input_ids", "attention_mask", "overflow_to_sample_mapping"]
        ids, mask = padded(expected)
        if expected:
            assert batch["input_ids"].tolist() == ids
            assert batch["attention_mask"].tolist() == mask
        else:
            assert batch["input_ids"].shape[0] == 0
        assert batch["overflow_to_sample_mapping"].tolist() == mapping
        assert batch["overflow_to_sample_mapping"].dtype == np.int64


@pytest.mark.parametrize("side", ["right", "left"])
def test_matches_fast_tokenizer_overflow(tokenizer: Any, sentences: list[str], side: str) -> None:
    texts = [*sentences[:8], " ".join(sentences[:8]), "word " * 40]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    original = tokenizer.truncation_side
    tokenizer.truncation_side = side
    try:
        for max_length in (3, 4, 8, 16, 33):
            for stride in sorted({0, 1, (max_length - 2) // 2, max_length - 3}):
                if not 0 <= stride < max_length - 2:
                    continue
                expected = tokenizer(
                    texts,
                    max_length=max_length,
                    truncation=True,
                    stride=stride,
                    return_overflowing_tokens=True,
                    padding=True,
                    return_tensors="pt",
                )
                actual = fastpad.windows(
                    ids,
                    max_length=max_length,
                    stride=stride,
                    prefix=[tokenizer.cls_token_id],
                    suffix=[tokenizer.sep_token_id],
                    tokenizer=tokenizer,
                )
                assert list(actual) == list(expected)
                for key, value in expected.items():
                    assert actual[key].dtype == value.dtype, key
                    assert torch.equal(actual[key], value), (key, max_length, stride)
    finally:
        tokenizer.truncation_side = original


def test_rows_that_fit_give_one_window_and_empty_rows_one_window() -> None:
    batch = fastpad.windows(
        [[1, 2, 3], [], [4, 5, 6, 7, 8, 9, 10]],
        max_length=5,
        stride=1,
        prefix=[CLS],
        suffix=[SEP],
        pad_token_id=0,
        return_tensors="np",
    )
    assert batch["input_ids"].tolist() == [
        [CLS, 1, 2, 3, SEP],
        [CLS, SEP, 0, 0, 0],
        [CLS, 4, 5, 6, SEP],
        [CLS, 6, 7, 8, SEP],
        [CLS, 8, 9, 10, SEP],
    ]
    assert batch["overflow_to_sample_mapping"].tolist() == [0, 1, 2, 2, 2]


def test_pad_options_are_passed_on() -> None:
    batch = fastpad.windows(
        {"input_ids": [[1, 2, 3, 4, 5]], "attention_mask": [[1, 1, 1, 1, 1]]},
        max_length=4,
        stride=0,
        pad_token_id=0,
        padding="max_length",
        padding_side="left",
        return_token_type_ids=True,
        return_tensors="np",
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [0, 0, 0, 5]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("stride", [-1, 3, 4, 10])
def test_invalid_stride_is_a_value_error(stride: int) -> None:
    with pytest.raises(ValueError, match="stride"):
        fastpad.windows(
            [[1, 2]], max_length=5, stride=stride, prefix=[CLS], suffix=[SEP], pad_token_id=0
        )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no room"):
        fastpad.windows([[1]], max_length=2, prefix=[CLS], suffix=[SEP], pad_token_id=0)
    with pytest.raises(TypeError, match="prefix"):
        fastpad.windows([[1]], max_length=4, prefix=["x"], pad_token_id=0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="labels"):
        fastpad.windows({"input_ids": [[1]], "labels": [[1]]}, max_length=4, pad_token_id=0)
    with pytest.raises(TypeError, match="set by windows"):
        fastpad.windows([[1]], max_length=4, pad_token_id=0, truncation=True)
    with pytest.raises(ValueError, match="truncation_side"):
        fastpad.windows([[1]], max_length=4, pad_token_id=0, truncation_side="middle")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="row 0"):
        fastpad.windows([[1, None]], max_length=4, pad_token_id=0)
