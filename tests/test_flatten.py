"""fastpad.flatten against transformers' DataCollatorWithFlattening, over every input form."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
DataCollatorWithFlattening = transformers.DataCollatorWithFlattening

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def collate(examples: list[dict[str, Any]], return_tensors: str = "pt", **options: Any) -> Any:
    return DataCollatorWithFlattening(return_tensors=return_tensors, **options)(examples)


def forms(rows: list[list[int]], labels: list[list[int]] | None) -> list[Any]:
    """The same batch in every input form fastpad.pad takes."""
    result: list[Any] = [
        rows,
        tuple(tuple(row) for row in rows),
        [np.asarray(row, dtype=np.int64) for row in rows],
        [torch.tensor(row, dtype=torch.int64) for row in rows],
        fastpad.Ragged.from_rows(rows),
        {"input_ids": rows},
        {"input_ids": fastpad.Ragged.from_rows(rows)},
        [{"input_ids": row} for row in rows],
    ]
    if len(rows) == 1 and rows[0]:
        result.append(rows[0])  # one flat row: a batch of one
        result.append({"input_ids": rows[0]})
    if rows and all(len(row) == len(rows[0]) for row in rows) and rows[0]:
        result.append(np.asarray(rows, dtype=np.int64))
        result.append(torch.tensor(rows, dtype=torch.int64))
    if labels is not None:
        result = [
            {"input_ids": rows, "labels": labels},
            {
                "input_ids": fastpad.Ragged.from_rows(rows),
                "labels": fastpad.Ragged.from_rows(labels),
            },
            [
                {"input_ids": row, "labels": np.asarray(label, dtype=np.int64)}
                for row, label in zip(rows, labels, strict=True)
            ],
        ]
    return result


option_sets = st.fixed_dictionaries(
    {},
    optional={
        "return_position_ids": st.booleans(),
        "return_flash_attn_kwargs": st.booleans(),
        "return_seq_idx": st.booleans(),
        "separator_id": st.integers(-1000, 1000),
        "position_ids_start": st.integers(0, 3),
    },
)
token = st.one_of(st.integers(0, 30_000), st.integers(INT64_MIN, INT64_MAX))


@st.composite
def batches(draw: Any) -> tuple[list[list[int]], list[list[int]] | None]:
    rows = draw(st.lists(st.lists(token, max_size=20), min_size=1, max_size=8))
    if not any(rows):
        rows[0].append(draw(token))
    labels = None
    if draw(st.booleans()):
        labels = [draw(st.lists(token, min_size=len(row), max_size=len(row))) for row in rows]
    return rows, labels


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), option_sets, st.sampled_from(["pt", "np"]))
def test_matches_collator_on_every_input_form(
    batch: tuple[list[list[int]], list[list[int]] | None], options: dict[str, Any], tensors: str
) -> None:
    rows, labels = batch
    examples = [
        {"input_ids": row} if labels is None else {"input_ids": row, "labels": labels[index]}
        for index, row in enumerate(rows)
    ]
    expected = collate(examples, tensors, **options)
    for encoded in forms(rows, labels):
        assert_batches_equal(fastpad.flatten(encoded, return_tensors=tensors, **options), expected)


def test_real_tokenizer_output(tokenizer: Any, sentences: list[str]) -> None:
    encoding = tokenizer(sentences)
    examples = [{key: encoding[key][index] for key in encoding} for index in range(len(sentences))]
    options = {"return_flash_attn_kwargs": True, "return_seq_idx": True, "position_ids_start": 2}
    expected = collate(examples, **options)
    assert_batches_equal(fastpad.flatten(examples, **options), expected)
    assert_batches_equal(fastpad.flatten(encoding, **options), expected)
    with_labels = [dict(example, labels=example["input_ids"][::-1]) for example in examples]
    assert_batches_equal(fastpad.flatten(with_labels), collate(with_labels))


def test_other_fields_are_ignored_like_transformers() -> None:
    examples = [
        {"input_ids": [1, 2, 3], "text": "abc", "attention_mask": [1, 1, 1]},
        {"input_ids": [4, 5], "text": "de", "attention_mask": [1, 1]},
    ]
    assert_batches_equal(fastpad.flatten(examples), collate(examples))


def test_empty_rows_are_dropped_and_all_empty_raises() -> None:
    examples = [{"input_ids": []}, {"input_ids": [7, 8]}, {"input_ids": []}, {"input_ids": [9]}]
    options = {"return_seq_idx": True, "return_flash_attn_kwargs": True}
    assert_batches_equal(fastpad.flatten(examples, **options), collate(examples, **options))
    with pytest.raises(ValueError, match="empty"):
        fastpad.flatten([[], []])
    with pytest.raises(ValueError, match="empty"):
        fastpad.flatten([])


def test_position_ids_restart_per_row() -> None:
    batch = fastpad.flatten([[5, 6, 7], [8, 9]], position_ids_start=2, return_tensors="np")
    assert batch["position_ids"].tolist() == [[2, 3, 4, 2, 3]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]


def test_sliced_ragged_input_is_read_from_its_offsets() -> None:
    ragged = fastpad.Ragged(np.arange(10, dtype=np.int32), np.array([0, 2, 2, 5]))
    batch = fastpad.flatten(ragged, return_tensors="np", return_flash_attn_kwargs=True)
    assert batch["input_ids"].tolist() == [[0, 1, 2, 3, 4]]
    assert batch["cu_seq_lens_k"].tolist() == [0, 2, 5]


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        fastpad.flatten({"input_ids": [[1, 2], [3]], "labels": [[1, 2], [3, 4]]})
    with pytest.raises(TypeError, match="row 1"):
        fastpad.flatten([[1, 2], [3, "x"]])
    with pytest.raises(TypeError, match="input_ids"):
        fastpad.flatten({"labels": [[1, 2]]})
    with pytest.raises(ValueError, match="return_tensors"):
        fastpad.flatten([[1]], return_tensors="tf")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="separator_id"):
        fastpad.flatten([[1]], separator_id=1.5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="row 1"):
        fastpad.flatten([[1], np.array([2**64 - 1], dtype=np.uint64)])
    with pytest.raises(TypeError, match="one scalar per example"):
        fastpad.flatten({"input_ids": [[1, 2]], "labels": [3]})


def test_outputs_own_their_memory() -> None:
    ragged = fastpad.Ragged(np.array([1, 2, 3], dtype=np.int64), np.array([0, 3]))
    batch = fastpad.flatten(ragged, return_tensors="np")
    batch["input_ids"][0, 0] = 99
    batch["labels"][0, 1] = 99
    assert ragged.values.tolist() == [1, 2, 3]
