"""fastpad.pad against the pure-Python reference, over every input form and option."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad.reference

torch = pytest.importorskip("torch")

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def both(encoded: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Run fastpad.pad and the reference; both must raise the same exception type or agree."""
    try:
        expected = fastpad.reference.pad(encoded, **kwargs)
    except (TypeError, ValueError, OverflowError) as error:
        with pytest.raises(type(error)):
            fastpad.pad(encoded, **kwargs)
        return None, error
    actual = fastpad.pad(encoded, **kwargs)
    assert_batches_equal(actual, expected)
    return actual, expected


# Rows of token ids; values span the int32 boundary so dtype=int32 overflows are exercised.
token = st.one_of(
    st.integers(0, 30_000),
    st.integers(-(2**31) - 2, 2**31 + 1),
    st.integers(INT64_MIN, INT64_MAX),
)
rows_strategy = st.lists(st.lists(token, max_size=40), max_size=12)

options_strategy = st.fixed_dictionaries(
    {},
    optional={
        "padding": st.sampled_from([True, "longest", "max_length", False, "do_not_pad"]),
        "max_length": st.integers(0, 48),
        "truncation": st.booleans(),
        "pad_to_multiple_of": st.sampled_from([None, 1, 3, 8]),
        "padding_side": st.sampled_from(["left", "right"]),
        "truncation_side": st.sampled_from(["left", "right"]),
        "return_attention_mask": st.booleans(),
        "return_tensors": st.sampled_from(["pt", "np"]),
        "dtype": st.sampled_from([None, "int64", "int32", torch.int32, np.int64]),
        "mask_dtype": st.sampled_from([None, "int64", "int32", "int8", "bool", torch.bool]),
    },
)


def as_form(rows: list[list[int]], form: str) -> Any:
    """The same batch in one of the input forms fastpad.pad accepts."""
    if form == "lists":
        return rows
    if form == "tuples":
        return tuple(tuple(row) for row in rows)
    if form == "numpy":
        return [np.array(row, dtype=np.int64) for row in rows]
    if form == "torch":
        return [torch.tensor(row, dtype=torch.int64) for row in rows]
    if form == "ragged":
        return fastpad.Ragged.from_rows(rows)
    if form == "ragged_torch":
        ragged = fastpad.Ragged.from_rows(rows)
        return fastpad.Ragged(torch.from_numpy(ragged.values), torch.from_numpy(ragged.offsets))
    if form == "ragged_int32_offsets":
        ragged = fastpad.Ragged.from_rows(rows)
        return fastpad.Ragged(ragged.values, ragged.offsets.astype(np.int32))
    if form == "mapping":
        return {"input_ids": rows}
    raise AssertionError(form)


FORMS = [
    "lists",
    "tuples",
    "numpy",
    "torch",
    "ragged",
    "ragged_torch",
    "ragged_int32_offsets",
    "mapping",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=rows_strategy,
    options=options_strategy,
    form=st.sampled_from(FORMS),
    pad_token_id=st.integers(-5, 5),
)
def test_matches_reference(
    rows: list[list[int]], options: dict[str, Any], form: str, pad_token_id: int
) -> None:
    both(as_form(rows, form), pad_token_id=pad_token_id, **options)


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), max_size=10),
    options=options_strategy,
    data=st.data(),
)
def test_several_fields_match_reference(
    lengths: list[int], options: dict[str, Any], data: st.DataObject
) -> None:
    def field(values: st.SearchStrategy[int]) -> list[list[int]]:
        return [data.draw(st.lists(values, min_size=n, max_size=n)) for n in lengths]

    batch = {
        "input_ids": field(st.integers(0, 30_000)),
        "token_type_ids": field(st.integers(0, 1)),
        "special_tokens_mask": field(st.integers(0, 1)),
        "labels": field(st.integers(-100, 9)),
    }
    if data.draw(st.booleans()):
        batch["attention_mask"] = field(st.integers(0, 1))
    examples = data.draw(st.booleans())
    encoded: Any = batch
    if examples:
        encoded = [
            {key: batch[key][row] for key in batch} | {"label": row % 3}
            for row in range(len(lengths))
        ]
    both(encoded, pad_token_id=0, pad_values={"labels": -100}, **options)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(0, 6), width=st.integers(0, 9), options=options_strategy)
def test_two_d_arrays_match_reference(rows: int, width: int, options: dict[str, Any]) -> None:
    array = np.arange(rows * width, dtype=np.int32).reshape(rows, width)
    both(array, pad_token_id=0, **options)
    both(torch.from_numpy(array), pad_token_id=0, **options)


def test_known_values_right_and_left() -> None:
    rows = [[5, 6, 7], [8], []]
    right = fastpad.pad(rows, pad_token_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert right["input_ids"].dtype == torch.int64
    left = fastpad.pad(rows, pad_token_id=9, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8], [9, 9, 9]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]


def test_truncation_sides_and_max_length() -> None:
    rows = [[1, 2, 3, 4, 5], [6, 7]]
    head = fastpad.pad(rows, pad_token_id=0, truncation=True, max_length=3)
    assert head["input_ids"].tolist() == [[1, 2, 3], [6, 7, 0]]
    tail = fastpad.pad(rows, pad_token_id=0, truncation=True, max_length=3, truncation_side="left")
    assert tail["input_ids"].tolist() == [[3, 4, 5], [6, 7, 0]]
    fixed = fastpad.pad(
        rows, pad_token_id=0, padding="max_length", max_length=6, pad_to_multiple_of=4
    )
    assert fixed["input_ids"].shape == (2, 8)
    cut_fields = fastpad.pad(
        {"input_ids": rows, "labels": [[11, 12, 13, 14, 15], [16, 17]]},
        pad_token_id=0,
        pad_values={"labels": -100},
        truncation=True,
        max_length=2,
        truncation_side="left",
    )
    assert cut_fields["labels"].tolist() == [[14, 15], [16, 17]]


def test_mask_comes_from_lengths_not_pad_id() -> None:
    # The pad id is also a real token here: a mask inferred from ids != pad would be wrong.
    batch = fastpad.pad([[0, 0, 5], [0]], pad_token_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_empty_batch_and_single_row() -> None:
    empty = fastpad.pad([], pad_token_id=0)
    assert empty["input_ids"].shape == (0, 0)
    assert empty["attention_mask"].shape == (0, 0)
    fixed = fastpad.pad([], pad_token_id=0, padding="max_length", max_length=4)
    assert fixed["input_ids"].shape == (0, 4)
    flat = fastpad.pad([4, 5, 6], pad_token_id=0)
    assert flat["input_ids"].tolist() == [[4, 5, 6]]
    one = fastpad.pad({"input_ids": [4, 5], "token_type_ids": [0, 1]}, pad_token_id=0)
    assert one["token_type_ids"].tolist() == [[0, 1]]
    array_row = fastpad.pad(np.array([1, 2], dtype=np.int16), pad_token_id=0)
    assert array_row["input_ids"].tolist() == [[1, 2]]


def test_long_rows_and_many_rows() -> None:
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50_000, size=int(n)).tolist() for n in rng.integers(0, 5000, 40)]
    both(rows, pad_token_id=0)
    both(
        fastpad.Ragged.from_rows(rows),
        pad_token_id=0,
        truncation=True,
        max_length=512,
        truncation_side="left",
        padding_side="left",
    )


def test_per_example_scalars_are_stacked() -> None:
    batch = fastpad.pad(
        [
            {"input_ids": [1, 2], "label": 1, "score": 0.5},
            {"input_ids": [3], "label": 0, "score": 1.5},
        ],
        pad_token_id=0,
    )
    assert batch["label"].tolist() == [1, 0]
    assert batch["score"].dtype == torch.float32
    assert list(batch) == ["input_ids", "label", "score", "attention_mask"]


def test_dtypes() -> None:
    batch = fastpad.pad([[1, 2], [3]], pad_token_id=0, dtype=torch.int32, mask_dtype=torch.bool)
    assert batch["input_ids"].dtype == torch.int32
    assert batch["attention_mask"].dtype == torch.bool
    assert batch["attention_mask"].tolist() == [[True, True], [True, False]]
    numpy_batch = fastpad.pad([[1, 2], [3]], pad_token_id=0, return_tensors="np", mask_dtype="int8")
    assert isinstance(numpy_batch["input_ids"], np.ndarray)
    assert numpy_batch["attention_mask"].dtype == np.int8


def test_unsigned_and_narrow_array_rows() -> None:
    rows = [
        np.array([1, 2, 255], dtype=np.uint8),
        np.array([7], dtype=np.int16),
        np.array([2**40], dtype=np.uint64),
    ]
    batch = fastpad.pad(rows, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 255], [7, 0, 0], [2**40, 0, 0]]
    with pytest.raises(OverflowError, match="row 0 of 'input_ids'"):
        fastpad.pad([np.array([2**63], dtype=np.uint64)], pad_token_id=0)


def test_numpy_integer_scalars_in_lists() -> None:
    rows = [[np.int64(3), np.int32(4)], [torch.tensor(5)]]
    assert fastpad.pad(rows, pad_token_id=0)["input_ids"].tolist() == [[3, 4], [5, 0]]


def test_ragged_is_read_without_copying_and_offsets_may_end_early() -> None:
    values = np.array([1, 2, 3, 4, 99, 99], dtype=np.int32)
    ragged = fastpad.Ragged(values, np.array([0, 3, 4]))
    assert ragged.values is values or np.shares_memory(ragged.values, values)
    batch = fastpad.pad(ragged, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]


def test_batch_to_and_pin_memory_without_accelerator() -> None:
    batch = fastpad.pad([[1, 2], [3]], pad_token_id=0)
    moved = batch.to("cpu", non_blocking=True)
    assert isinstance(moved, fastpad.Batch)
    assert torch.equal(moved["input_ids"], batch["input_ids"])
    if not torch.cuda.is_available():
        assert not batch["input_ids"].is_pinned()
        with pytest.raises(RuntimeError, match="pin_memory=True"):
            fastpad.pad([[1]], pad_token_id=0, pin_memory=True)


def _batches_from_every_constructor() -> dict[str, Any]:
    rows = [[1, 2, 3], [4]]
    encoded = {"input_ids": rows, "token_type_ids": [[0, 0, 1], [0]]}
    packed = fastpad.Packer("cpu", pad_token_id=0)(encoded)
    batch = fastpad.pad(encoded, pad_token_id=0)
    return {
        "pad": batch,
        "pad_np": fastpad.pad(encoded, pad_token_id=0, return_tensors="np"),
        "pad_ragged": fastpad.pad(
            fastpad.Ragged(np.array([1, 2, 3, 4]), np.array([0, 3, 4])), pad_token_id=0
        ),
        "reference": fastpad.reference.pad(encoded, pad_token_id=0),
        "packer": packed,
        "flatten": fastpad.flatten(rows, return_flash_attn_kwargs=True),
        "to": batch.to("cpu"),
        "pin_memory": batch.pin_memory() if torch.cuda.is_available() else batch,
    }


def test_batch_fields_are_attributes_from_every_constructor() -> None:
    for where, batch in _batches_from_every_constructor().items():
        assert isinstance(batch, fastpad.Batch), where
        assert batch, where
        for key, value in batch.items():
            assert getattr(batch, key) is value, (where, key)
        assert "input_ids" in dir(batch), where
        with pytest.raises(AttributeError, match="no attribute or field 'pixel_values'"):
            batch.pixel_values  # noqa: B018
        assert not hasattr(batch, "missing")


def test_batch_attributes_keep_dict_methods_pickling_and_copies() -> None:
    import copy
    import pickle

    batch = fastpad.pad(
        {"input_ids": [[1, 2], [3]], "items": [[1, 1], [1]]},
        pad_token_id=0,
        pad_values={"items": 0},
    )
    assert callable(batch.items)  # a dict method wins over a field of the same name
    assert batch["items"].tolist() == [[1, 1], [1, 0]]
    assert torch.equal(batch.input_ids, batch["input_ids"])
    for clone in (pickle.loads(pickle.dumps(batch)), copy.copy(batch), copy.deepcopy(batch)):
        assert type(clone) is fastpad.Batch
        assert list(clone) == list(batch)
        assert torch.equal(clone.input_ids, batch.input_ids)
        assert torch.equal(clone.attention_mask, batch.attention_mask)
    batch.extra = 1  # an ordinary attribute, not a field (as in BatchEncoding)
    assert "extra" not in batch and batch.extra == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_outputs_on_cuda_machine() -> None:
    batch = fastpad.pad([[1, 2], [3]], pad_token_id=0, pin_memory=True)
    assert batch["input_ids"].is_pinned()
    assert batch["attention_mask"].is_pinned()
    on_device = batch.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert on_device["input_ids"].cpu().tolist() == [[1, 2], [3, 0]]


def test_existing_attention_mask_is_padded_not_recomputed() -> None:
    batch = fastpad.pad(
        {"input_ids": [[1, 2, 3], [4]], "attention_mask": [[1, 1, 0], [1]]}, pad_token_id=0
    )
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]
    without = fastpad.pad(
        {"input_ids": [[1, 2, 3], [4]], "attention_mask": [[1, 1, 0], [1]]},
        pad_token_id=0,
        return_attention_mask=False,
    )
    assert list(without) == ["input_ids"]
