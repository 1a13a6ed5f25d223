"""The bad-input table: every bad input gets a clear exception naming the problem and the row.

Each case runs through fastpad.pad and the pure-Python reference, which must agree on the type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastpad
import fastpad.reference

torch = pytest.importorskip("torch")

Ragged = fastpad.Ragged

CASES: list[tuple[str, Any, dict[str, Any], type[Exception], str]] = [
    # (id, encoded_inputs, kwargs, exception, message pattern)
    ("none token", [[1, 2], [3, None]], {}, TypeError, r"row 1 of 'input_ids'.*position 1.*None"),
    ("str token", [[1, "7"]], {}, TypeError, r"row 0 of 'input_ids'.*str"),
    ("float token", [[1], [2.0]], {}, TypeError, r"row 1 of 'input_ids'.*float"),
    ("bool token", [[True, 2]], {}, TypeError, r"row 0 of 'input_ids'.*bool"),
    ("row not a sequence", [[1, 2], 5j], {}, TypeError, r"row 1 of 'input_ids' is a complex"),
    ("row is None", [[1], None], {}, TypeError, r"row 1 of 'input_ids' is a NoneType"),
    ("row is a str", [[1], "hello"], {}, TypeError, r"row 1 of 'input_ids' is a str"),
    ("nesting too deep", [[[1, 2]], [[3]]], {}, TypeError, r"row 0 of 'input_ids'.*nesting"),
    (
        "2-D array row",
        [np.ones((2, 2), dtype=np.int64)],
        {},
        ValueError,
        r"row 0 of 'input_ids'.*2-D.*nesting",
    ),
    ("3-D batch", np.ones((2, 2, 2), dtype=np.int64), {}, ValueError, r"3-D array.*nesting"),
    ("float array row", [np.array([1.0, 2.0])], {}, TypeError, r"row 0 of 'input_ids'"),
    ("bool array row", [np.array([True, False])], {}, TypeError, r"row 0 of 'input_ids'"),
    (
        "float tensor row",
        [torch.tensor([1, 2]), torch.tensor([1.5])],
        {},
        TypeError,
        r"row 1 of 'input_ids'",
    ),
    ("int64 overflow", [[1], [2**63]], {}, OverflowError, r"row 1 of 'input_ids'.*int64"),
    ("negative int64 overflow", [[-(2**63) - 1]], {}, OverflowError, r"row 0.*int64"),
    (
        "int32 overflow",
        [[1], [2, 2**31]],
        {"dtype": "int32"},
        OverflowError,
        r"row 1 of 'input_ids'.*2147483648.*int32",
    ),
    (
        "int32 overflow from array",
        [np.array([2**31], dtype=np.int64)],
        {"dtype": "int32"},
        OverflowError,
        r"row 0 of 'input_ids'.*int32",
    ),
    (
        "int32 overflow from ragged",
        Ragged(np.array([1, -(2**31) - 1]), np.array([0, 1, 2])),
        {"dtype": "int32"},
        OverflowError,
        r"row 1 of 'input_ids'.*int32",
    ),
    (
        "pad id does not fit",
        [[1]],
        {"dtype": "int32", "pad_token_id": 2**40},
        OverflowError,
        r"pad value",
    ),
    (
        "mask values do not fit bool",
        {"input_ids": [[1, 2]], "attention_mask": [[1, 2]]},
        {"mask_dtype": "bool"},
        OverflowError,
        r"row 0 of 'attention_mask'.*bool",
    ),
    ("negative max_length", [[1]], {"max_length": -1}, ValueError, r"max_length must be >= 0"),
    ("max_length not an int", [[1]], {"max_length": 2.5}, TypeError, r"max_length must be an int"),
    (
        "pad_to_multiple_of zero",
        [[1]],
        {"pad_to_multiple_of": 0},
        ValueError,
        r"pad_to_multiple_of must be > 0",
    ),
    (
        "pad_to_multiple_of negative",
        [[1]],
        {"pad_to_multiple_of": -8},
        ValueError,
        r"pad_to_multiple_of must be > 0",
    ),
    ("unknown padding", [[1]], {"padding": "longest_first"}, ValueError, r"unknown padding"),
    ("unknown padding_side", [[1]], {"padding_side": "middle"}, ValueError, r"padding_side"),
    ("unknown truncation_side", [[1]], {"truncation_side": "both"}, ValueError, r"truncation_side"),
    ("unknown return_tensors", [[1]], {"return_tensors": "tf"}, ValueError, r"return_tensors"),
    ("unknown dtype", [[1]], {"dtype": "float32"}, ValueError, r"dtype must be one of"),
    ("unknown mask_dtype", [[1]], {"mask_dtype": "int16"}, ValueError, r"mask_dtype"),
    (
        "max_length padding without max_length",
        [[1]],
        {"padding": "max_length"},
        ValueError,
        r"padding='max_length' needs max_length",
    ),
    (
        "truncation without max_length",
        [[1]],
        {"truncation": True},
        ValueError,
        r"truncation=True needs max_length",
    ),
    (
        "row longer than max_length",
        [[1], [1, 2, 3]],
        {"padding": "max_length", "max_length": 2},
        ValueError,
        r"row 1 has 3 tokens, more than max_length=2",
    ),
    (
        "unequal rows without padding",
        [[1, 2], [3]],
        {"padding": False},
        ValueError,
        r"padding=False but row 1",
    ),
    (
        "fields of different lengths",
        {"input_ids": [[1, 2], [3]], "token_type_ids": [[0, 0], [0, 0]]},
        {},
        ValueError,
        r"row 1 has 1 tokens in 'input_ids' but 2 in 'token_type_ids'",
    ),
    (
        "fields of different row counts",
        {"input_ids": [[1], [3]], "token_type_ids": [[0]]},
        {},
        ValueError,
        r"'token_type_ids' has 1 rows but 'input_ids' has 2",
    ),
    (
        "field without pad value",
        {"input_ids": [[1], [3, 4]], "labels": [[0], [1, 1]]},
        {},
        ValueError,
        r"no pad value for field 'labels'",
    ),
    (
        "offsets decrease",
        Ragged(np.arange(4), np.array([0, 3, 2, 4])),
        {},
        ValueError,
        r"decrease at row 1",
    ),
    (
        "offsets do not start at 0",
        Ragged(np.arange(4), np.array([1, 3, 4])),
        {},
        ValueError,
        r"start at 0",
    ),
    (
        "offsets run past values",
        Ragged(np.arange(4), np.array([0, 2, 5])),
        {},
        ValueError,
        r"run past the values at row 1",
    ),
    ("not a batch", 3.5, {}, TypeError, r"encoded_inputs must be"),
    ("example not a mapping", [{"input_ids": [1]}, [2]], {}, TypeError, r"example 1"),
    (
        "examples with different keys",
        [{"input_ids": [1]}, {"input_ids": [2], "x": [1]}],
        {},
        ValueError,
        r"example 1 has keys",
    ),
    (
        "string field",
        {"input_ids": [[1], [2]], "text": ["a", "b"]},
        {},
        TypeError,
        r"field 'text' holds str",
    ),
]


@pytest.mark.parametrize(
    ("encoded", "kwargs", "error", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_raises_clear_error(
    encoded: Any, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    kwargs = {"pad_token_id": 0, **kwargs}
    with pytest.raises(error, match=pattern):
        fastpad.pad(encoded, **kwargs)
    with pytest.raises(error):
        fastpad.reference.pad(encoded, **kwargs)


def test_pad_token_id_required_without_tokenizer() -> None:
    with pytest.raises(ValueError, match="pad_token_id is required"):
        fastpad.pad([[1, 2], [3]])


def test_pad_token_id_and_pad_values_must_agree() -> None:
    with pytest.raises(ValueError, match="disagree"):
        fastpad.pad([[1]], pad_token_id=0, pad_values={"input_ids": 1})


def test_ragged_constructor_checks() -> None:
    with pytest.raises(ValueError, match="1-D"):
        Ragged(np.ones((2, 2), dtype=np.int64), np.array([0, 4]))
    with pytest.raises(TypeError, match="integers"):
        Ragged(np.ones(2), np.array([0, 2]))
    with pytest.raises(ValueError, match="at least one entry"):
        Ragged(np.ones(2, dtype=np.int64), np.array([], dtype=np.int64))


def test_outputs_untouched_types_on_error() -> None:
    # A failure mid-batch raises; nothing half-written is returned.
    with pytest.raises(OverflowError):
        fastpad.pad([[1, 2]] * 100 + [[2**70]], pad_token_id=0)


class _ShrinkingToken:
    """An int-like token whose __index__ empties the row being packed."""

    def __init__(self, row: list[Any]) -> None:
        self.row = row

    def __index__(self) -> int:
        self.row.clear()
        return 1


def test_row_mutated_while_packing_is_an_error_not_a_crash() -> None:
    row: list[Any] = [1, 2, 3]
    row.append(_ShrinkingToken(row))
    row.append(5)
    with pytest.raises(ValueError, match="row 0 of 'input_ids' changed length"):
        fastpad.pad([row, [1, 2, 3, 4, 5, 6]], pad_token_id=0)


class _ShrinkingTokenOf:
    """An int-like token whose __index__ empties the row being packed and returns `value`."""

    def __init__(self, row: list[Any], value: int) -> None:
        self.row, self.value = row, value

    def __index__(self) -> int:
        self.row.clear()
        return self.value


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_row_emptied_by_its_last_token_packs_as_read(dtype: str) -> None:
    # Every token was read before __index__ emptied the row and nothing more is read from it: the
    # length is re-checked before the next read from the row, not after the token.
    row: list[Any] = [1, 2]
    row.append(_ShrinkingTokenOf(row, 3))
    out = fastpad.pad([row, [7, 8]], pad_token_id=0, return_tensors="np", dtype=dtype)
    assert out["input_ids"].tolist() == [[1, 2, 3], [7, 8, 0]]


def test_token_that_empties_its_row_and_does_not_fit_is_an_overflow() -> None:
    # The value is range-checked before the row's length is re-checked.
    row: list[Any] = [1, 2]
    row.append(_ShrinkingTokenOf(row, 2**40))
    row.append(4)
    with pytest.raises(OverflowError, match="row 0 of 'input_ids': value 1099511627776"):
        fastpad.pad([row, [7, 8]], pad_token_id=0, return_tensors="np", dtype="int32")


@pytest.mark.parametrize(
    "token",
    [np.array([1, 2]), np.bool_(True), np.float32(1.0)],
    ids=["1-D array", "np.bool_", "np.float32"],
)
def test_array_like_tokens_name_the_row(token: Any) -> None:
    with pytest.raises(TypeError, match=r"row 1 of 'input_ids': token at position 0"):
        fastpad.pad([[1], [token]], pad_token_id=0)
    with pytest.raises(TypeError):
        fastpad.reference.pad([[1], [token]], pad_token_id=0)


@pytest.mark.parametrize(
    "value", [{"a": 1}, "x", None, [1, 2]], ids=["dict", "str", "None", "list"]
)
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_per_example_values_that_are_not_numbers(value: Any, return_tensors: str) -> None:
    # Found by fuzz/fuzz_pad.py: these reached torch.tensor (RuntimeError) or became an object
    # array with return_tensors="np".
    examples = [{"input_ids": [1], "label": 1}, {"input_ids": [2], "label": value}]
    with pytest.raises(TypeError, match="field 'label' holds per-example values"):
        fastpad.pad(examples, pad_token_id=0, return_tensors=return_tensors)
    with pytest.raises(TypeError, match="field 'label'"):
        fastpad.reference.pad(examples, pad_token_id=0, return_tensors=return_tensors)


SWAPPED = ">" if np.little_endian else "<"  # the byte order this machine does not use


@pytest.mark.parametrize("code", ["i2", "i4", "i8", "u2", "u4", "u8"])
def test_byte_swapped_integer_arrays_are_read_by_value(code: str) -> None:
    from conftest import assert_batches_equal

    swapped = np.dtype(SWAPPED + code)
    native = swapped.newbyteorder("=")
    assert not swapped.isnative
    top = min(int(np.iinfo(native).max), 2**63 - 1)
    rows = [[1, 258, top], [65535 % (top + 1)], [7, 0x01020304 % (top + 1)]]
    if code[0] == "i":
        rows[1].append(-3)
    options: dict[str, Any] = {"pad_token_id": 0, "return_tensors": "np"}
    expected = fastpad.pad([np.array(row, dtype=native) for row in rows], **options)
    assert expected["input_ids"].tolist()[0] == [1, 258, top]
    forms: dict[str, Any] = {
        "rows": [np.array(row, dtype=swapped) for row in rows],
        "strided rows": [np.array([v for v in row for _ in (0, 1)], swapped)[::2] for row in rows],
        "ragged": Ragged(
            np.array([v for row in rows for v in row], dtype=swapped),
            np.cumsum([0] + [len(row) for row in rows]).astype(SWAPPED + "i8"),
        ),
    }
    for form, inputs in forms.items():
        assert_batches_equal(fastpad.pad(inputs, **options), expected)
        if form != "ragged":
            assert_batches_equal(fastpad.reference.pad(inputs, **options), expected)
    square = np.array([[1, 2, 3], [4, 5, 6]], dtype=swapped)
    assert fastpad.pad(square, **options)["input_ids"].tolist() == square.tolist()
    labels = {"input_ids": [[1, 2], [3]], "labels": [np.array(r, swapped) for r in ([5, 6], [7])]}
    padded = fastpad.pad(labels, pad_values={"labels": 0}, **options)
    assert padded["labels"].tolist() == [[5, 6], [7, 0]]


def test_byte_swapped_values_still_checked() -> None:
    big = np.array([2**40], dtype=SWAPPED + "i8")
    with pytest.raises(OverflowError, match=r"row 0 of 'input_ids'.*does not fit int32"):
        fastpad.pad([big], pad_token_id=0, dtype="int32")
    with pytest.raises(TypeError, match=r"row 0 of 'input_ids'.*float arrays are not token ids"):
        fastpad.pad([np.array([1.0], dtype=SWAPPED + "f8")], pad_token_id=0)
    with pytest.raises(TypeError, match="must hold integers"):
        Ragged(np.array([1.0], dtype=SWAPPED + "f8"), np.array([0, 1]))
