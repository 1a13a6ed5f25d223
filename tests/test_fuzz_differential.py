"""Differential fuzzing: every public entry point against its pure-Python reference.

Hypothesis draws batches in every input form (lists, tuples, numpy/torch rows, `Ragged` in any
offsets dtype, 2-D arrays, mappings, lists of examples), every option and dtype, valid or not, and
tokens that are not token ids. The fast path and the reference must return equal batches (keys,
container type, dtype, values) or raise exceptions of the same class.

Entry points without a reference are fuzzed for robustness: any input gives a result or one of
the documented exception classes, never a crash or an internal error.

To add an entry point: append a `Differential` (fast, reference, inputs strategy, kwargs
strategy) to `DIFFERENTIAL`, or a `Robust` to `ROBUST`. Entries whose function does not exist
in this build are skipped, so the table can name entry points that are still being written.

Regression cases found by the atheris harnesses in fuzz/ are at the end of this file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad.reference
from fastpad import _core

torch = pytest.importorskip("torch")

# What fastpad may raise on bad input. Anything else from a public entry point is a bug.
EXPECTED = (TypeError, ValueError, OverflowError, MemoryError)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EDGE_INTS = [0, 1, -1, 127, 128, 255, 256, -129, 2**31 - 1, 2**31, -(2**31) - 1, INT64_MAX, 2**63]
ID_DTYPES = ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64"]
OFFSET_DTYPES = ["int64", "int32", "uint32", "uint64"]

# ---------------------------------------------------------------------------------------------
# strategies

small_ids = st.integers(0, 30_000)
token_values = st.one_of(small_ids, small_ids, small_ids, st.sampled_from(EDGE_INTS))
bad_tokens = st.sampled_from(
    [None, 1.5, "7", True, np.bool_(False), [1], np.float32(3), np.zeros(2, np.int64)]
)


@st.composite
def token_rows(draw: st.DrawFn, max_len: int = 6, invalid: bool = True) -> list[Any]:
    row = draw(st.lists(token_values, max_size=max_len))
    if invalid and row and draw(st.integers(0, 15)) == 0:
        row[draw(st.integers(0, len(row) - 1))] = draw(bad_tokens)
    if row and draw(st.integers(0, 10)) == 0:  # numpy / torch integer scalars as tokens
        row = [
            np.int64(value) if type(value) is int and INT64_MIN <= value <= INT64_MAX else value
            for value in row
        ]
    return row


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _as_array(values: list[int], dtype: str) -> np.ndarray[Any, Any] | None:
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, TypeError, ValueError):
        return None


@st.composite
def row_forms(draw: st.DrawFn, row: list[Any]) -> Any:
    """The same row as a list, tuple, numpy array (any int dtype) or torch tensor."""
    form = draw(st.sampled_from(["list", "list", "tuple", "numpy", "torch"]))
    if form == "tuple":
        return tuple(row)
    if form in ("numpy", "torch") and all(type(value) is int for value in row):
        array = _as_array(row, draw(st.sampled_from(ID_DTYPES)))
        if array is not None and (array.astype(object) == np.array(row, dtype=object)).all():
            if form == "torch" and array.dtype.name in ("int64", "int32", "int16", "int8", "uint8"):
                return torch.from_numpy(array)
            return array
    return row


@st.composite
def batches(draw: st.DrawFn, invalid: bool = True) -> Any:
    """A batch of input_ids in any accepted form (or a broken one when `invalid`)."""
    rows = draw(st.lists(token_rows(invalid=invalid), max_size=6))
    if any(not _is_int(value) for row in rows for value in row):
        # One kind of defect per batch: which of two defects is reported first is not specified
        # (the fast path stops at the first bad token in row order).
        rows = [
            [value if not _is_int(value) or -(2**31) <= value < 2**31 else 0 for value in row]
            for row in rows
        ]
    form = draw(st.sampled_from(["rows", "rows", "ragged", "array2d", "mapping", "examples"]))
    if form == "ragged" and all(type(v) is int for row in rows for v in row):
        flat = [value for row in rows for value in row]
        values = _as_array(flat, draw(st.sampled_from(ID_DTYPES)))
        if values is not None:
            offsets = np.cumsum([0] + [len(row) for row in rows])
            offsets = offsets.astype(draw(st.sampled_from(OFFSET_DTYPES)))
            if invalid and len(offsets) > 1 and draw(st.integers(0, 10)) == 0:
                offsets = offsets.copy()
                offsets[draw(st.integers(0, len(offsets) - 1))] += draw(st.sampled_from([1, 3]))
            return fastpad.Ragged(values, offsets)
    square = rows and len({len(row) for row in rows}) == 1
    if form == "array2d" and square and all(type(v) is int for row in rows for v in row):
        array = _as_array(rows, draw(st.sampled_from(["int64", "int32"])))  # type: ignore[arg-type]
        if array is not None and array.ndim == 2:
            return torch.from_numpy(array) if draw(st.booleans()) else array
    converted = [draw(row_forms(row)) for row in rows]
    if form == "mapping":
        mapping: dict[str, Any] = {"input_ids": converted}
        if draw(st.booleans()):
            mapping["token_type_ids"] = [[draw(st.integers(0, 1))] * len(row) for row in rows]
        if draw(st.booleans()):
            mapping["labels"] = [[draw(st.integers(-100, 5)) for _ in row] for row in rows]
            if invalid and rows and draw(st.integers(0, 8)) == 0:
                mapping["labels"][0] = mapping["labels"][0] + [1]  # length disagrees
        if draw(st.integers(0, 6)) == 0:
            mapping["special_tokens_mask"] = [[0] * len(row) for row in rows]
        if draw(st.integers(0, 6)) == 0:
            mapping["attention_mask"] = [[1] * len(row) for row in rows]
        return mapping
    if form == "examples" and converted:
        return [{"input_ids": row} for row in converted]
    if invalid and draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, 3, "text", {}, [[[1]]], np.zeros((2, 2, 2), np.int64)]))
    return converted


def pad_kwargs(invalid: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Options of `pad`; with `invalid`, now and then a bad value."""

    def _mostly(valid: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
        # Valid nine times in ten, so one bad option does not hide every other check.
        if not invalid:
            return st.sampled_from(valid)
        return st.one_of(*[st.sampled_from(valid)] * 9, st.sampled_from(bad))

    return st.fixed_dictionaries(
        {},
        optional={
            "padding": _mostly([True, False, "longest", "max_length", "do_not_pad"], ["x", 1]),
            "max_length": _mostly([None, 0, 1, 2, 3, 5, 8], [-1, 1.5, True, 2**62, 2**70]),
            "truncation": _mostly([False, True, "longest_first", "do_not_truncate"], ["no", 1]),
            "pad_to_multiple_of": _mostly([None, 1, 2, 3, 8], [0, -2, 2**63, 2.0]),
            "padding_side": _mostly([None, "left", "right"], ["middle", 0]),
            "truncation_side": _mostly([None, "left", "right"], ["up"]),
            "return_attention_mask": st.sampled_from([None, True, False]),
            "pad_token_id": _mostly([0, 3, -1, 127], [2**31, INT64_MAX, 2**64, None, 1.0]),
            "dtype": _mostly([None, "int32", "int64", np.int32, torch.int64], ["float32", "int8"]),
            "mask_dtype": _mostly([None, bool, "int8", "int32", torch.bool], ["uint8", "float32"]),
            "pad_values": _mostly([None, {"labels": -100}, {"x": 1}], [{"labels": 2**64}, [1]]),
            "pin_memory": st.sampled_from([None, False]),
        },
    ).map(lambda kwargs: {"pad_token_id": 0, **kwargs})


# ---------------------------------------------------------------------------------------------
# comparison


def _outcome(function: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return function(args, **kwargs)
    except EXPECTED as error:
        return error


def _plain(value: Any) -> tuple[str, str, Any]:
    """(container, dtype, nested lists) of a tensor or array, for equality with a message."""
    if isinstance(value, torch.Tensor):
        return "torch", str(value.dtype).removeprefix("torch."), value.tolist()
    if isinstance(value, np.ndarray):
        return "numpy", value.dtype.name, value.tolist()
    return type(value).__name__, "", value


def assert_same_outcome(fast: Any, reference: Any, context: Any) -> None:
    if isinstance(reference, BaseException) or isinstance(fast, BaseException):
        if isinstance(fast, MemoryError) and isinstance(reference, OverflowError | MemoryError):
            return  # beyond memory: the list-based reference overflows an index on the way
        assert type(fast) is type(reference), (
            f"fast path gave {fast!r}, reference gave {reference!r} for {context!r}"
        )
        return
    if isinstance(reference, dict):
        assert isinstance(fast, dict) and list(fast) == list(reference), (fast, reference)
        for key in reference:
            assert _plain(fast[key]) == _plain(reference[key]), (key, context)
        return
    if isinstance(reference, list | tuple):
        assert len(fast) == len(reference)
        for one, other in zip(fast, reference, strict=True):
            assert_same_outcome(one, other, context)
        return
    assert _plain(fast) == _plain(reference), context


@dataclass(frozen=True)
class Differential:
    """A public entry point and its pure-Python reference, called as f(inputs, **kwargs)."""

    name: str
    fast: str  # attribute of fastpad
    reference: str  # attribute of fastpad.reference
    inputs: st.SearchStrategy[Any]
    kwargs: st.SearchStrategy[dict[str, Any]]

    def functions(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        fast = getattr(fastpad, self.fast, None)
        reference = getattr(fastpad.reference, self.reference, None)
        if fast is None or reference is None:
            pytest.skip(f"{self.name}: fastpad.{self.fast} or its reference does not exist yet")
        return fast, reference


@dataclass(frozen=True)
class Robust:
    """A public entry point without a reference: any input gives a result or EXPECTED."""

    name: str
    call: Callable[[Any, dict[str, Any]], Any]
    inputs: st.SearchStrategy[Any]
    kwargs: st.SearchStrategy[dict[str, Any]]
    needs: str = ""  # attribute of fastpad that must exist


DIFFERENTIAL = [
    # One kind of defect per call: when a batch has two, which one is reported first is not
    # specified (the fast path checks pad values before tokens and stops at the first bad token).
    Differential("pad/bad-inputs", "pad", "pad", batches(invalid=True), pad_kwargs(False)),
    Differential("pad/bad-options", "pad", "pad", batches(invalid=False), pad_kwargs(True)),
    # Entry points gain a line here once fastpad.reference has their oracle, e.g.
    # Differential("flatten", "flatten", "flatten", batches(), flatten_kwargs),
]


def _packer_call(inputs: Any, kwargs: dict[str, Any]) -> Any:
    packer = fastpad.Packer("cpu", buffers=2)
    kwargs = {
        key: value for key, value in kwargs.items() if key not in ("return_tensors", "pin_memory")
    }
    return packer(inputs, **kwargs)


ROBUST = [
    Robust(
        "flatten",
        lambda inputs, kw: fastpad.flatten(inputs, **kw),
        batches(),
        st.fixed_dictionaries(
            {"return_tensors": st.sampled_from(["np", "pt"])},
            optional={
                "return_position_ids": st.booleans(),
                "return_flash_attn_kwargs": st.booleans(),
                "return_seq_idx": st.booleans(),
                "separator_id": st.sampled_from([-100, 0, 2**40]),
                "position_ids_start": st.sampled_from([0, 1, -1]),
            },
        ),
        needs="flatten",
    ),
    Robust(
        "windows",
        lambda inputs, kw: fastpad.windows(inputs, **kw),
        batches(),
        st.fixed_dictionaries(
            {
                "max_length": st.sampled_from([0, 1, 2, 3, 5, 8, -1]),
                "pad_token_id": st.sampled_from([0, 3]),
                "return_tensors": st.sampled_from(["np", "pt"]),
            },
            optional={
                "stride": st.sampled_from([0, 1, 2, 7, -1]),
                "prefix": st.sampled_from([(), (101,), [101, 5]]),
                "suffix": st.sampled_from([(), (102,)]),
                "truncation_side": st.sampled_from([None, "left", "right"]),
            },
        ),
        needs="windows",
    ),
    Robust(
        "plan_batches",
        lambda inputs, kw: fastpad.plan_batches(inputs, **kw),
        st.one_of(
            st.lists(st.integers(-2, 40), max_size=20),
            st.lists(st.integers(0, 40), max_size=20).map(np.array),
            st.sampled_from([None, "abc", [1.5], np.zeros((2, 2), np.int64)]),
        ),
        st.fixed_dictionaries(
            {"max_tokens": st.sampled_from([1, 8, 64, 0, -1])},
            optional={
                "max_batch_size": st.sampled_from([None, 1, 3, 0]),
                "multiple_of": st.sampled_from([None, 1, 8, 0]),
                "sort": st.booleans(),
                "shuffle": st.booleans(),
                "seed": st.sampled_from([None, 0, 7]),
            },
        ),
        needs="plan_batches",
    ),
    Robust("packer-cpu", _packer_call, batches(), pad_kwargs(True), needs="Packer"),
]


# ---------------------------------------------------------------------------------------------
# tests

_settings = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("entry", DIFFERENTIAL, ids=lambda entry: entry.name)
@_settings
@given(data=st.data())
def test_fast_path_matches_reference(entry: Differential, data: st.DataObject) -> None:
    fast, reference = entry.functions()
    inputs = data.draw(entry.inputs, label="inputs")
    kwargs = data.draw(entry.kwargs, label="kwargs")
    kwargs.setdefault("return_tensors", data.draw(st.sampled_from(["np", "pt"])))
    assert_same_outcome(
        _outcome(fast, inputs, kwargs), _outcome(reference, inputs, kwargs), (inputs, kwargs)
    )


@pytest.mark.parametrize("entry", ROBUST, ids=lambda entry: entry.name)
@_settings
@given(data=st.data())
def test_entry_point_is_robust(entry: Robust, data: st.DataObject) -> None:
    if entry.needs and not hasattr(fastpad, entry.needs):
        pytest.skip(f"fastpad.{entry.needs} does not exist in this build")
    inputs = data.draw(entry.inputs, label="inputs")
    kwargs = data.draw(entry.kwargs, label="kwargs")
    with contextlib.suppress(EXPECTED):
        entry.call(inputs, kwargs)


@_settings
@given(data=st.data())
def test_core_arguments_are_parsed_safely(data: st.DataObject) -> None:
    """`_core.measure` / `_core.pack` with arbitrary specs: a result or EXPECTED, never a crash."""
    rows = data.draw(st.lists(token_rows(), max_size=4))
    spec = data.draw(
        st.sampled_from(
            [
                ("input_ids", 0, rows),
                ("input_ids", 0, tuple(rows)),
                ("input_ids", 1, np.arange(4), np.array([0, 2, 4])),
                ("input_ids", 1, np.arange(4), np.array([0, 5])),
                ("input_ids", 1, np.arange(4), np.array([1, 2])),
                ("input_ids", 1, np.arange(4), np.array([], np.int64)),
                ("input_ids", 1, np.arange(4.0), np.array([0, 4])),
                ("input_ids", 2, rows),
                ("input_ids",),
                (7, 0, rows),
                ["input_ids", 0, rows],
                None,
            ]
        )
    )
    options = data.draw(
        st.tuples(
            st.sampled_from([0, 1, 2, 3]),
            st.sampled_from([-1, 0, 2, INT64_MAX]),
            st.booleans(),
            st.sampled_from([0, 2, 3, INT64_MAX]),
        )
    )
    try:
        lengths, width = _core.measure([spec], *options)
    except EXPECTED:
        return
    assert width >= 0 and (lengths >= 0).all()
    if lengths.size * width > 1 << 16 or width > 1 << 16:
        return
    out = np.full((lengths.size, width), -1, np.int64)
    mask = np.full((lengths.size, width), -1, np.int8)
    keep = options[1] if options[2] else -1
    try:
        _core.pack([spec], [out], [0], lengths, mask, width, keep, data.draw(st.booleans()), False)
    except EXPECTED:
        return
    assert (mask.sum(axis=1) == np.minimum(lengths, keep if keep >= 0 else INT64_MAX)).all()


# ---------------------------------------------------------------------------------------------
# regressions found by fuzz/fuzz_core.py and fuzz/fuzz_pad.py


@pytest.mark.parametrize(
    "spec",
    [
        ("input_ids",),  # was IndexError
        (1, 0, [[1]]),  # was RuntimeError (pybind11 cast_error)
        ("input_ids", "x", [[1]]),  # was RuntimeError
        ["input_ids", 0, [[1]]],  # a list, not a tuple
        5,
    ],
)
def test_regression_malformed_spec_is_a_type_error(spec: Any) -> None:
    with pytest.raises(TypeError, match="field spec"):
        _core.measure([spec], 0, -1, False, 0)


@pytest.mark.parametrize("spec", [("input_ids", 1, [[1]]), ("input_ids", 0, [1], [0, 1])])
def test_regression_spec_kind_disagrees_with_its_size(spec: Any) -> None:
    with pytest.raises(ValueError, match="spec kind"):
        _core.measure([spec], 0, -1, False, 0)


def test_regression_width_rounding_does_not_wrap() -> None:
    # max_length = INT64_MAX rounded up to a multiple of 2 used to wrap to a negative width.
    with pytest.raises(MemoryError, match="9223372036854775807"):
        _core.measure([("input_ids", 0, [[1]])], 1, INT64_MAX, False, 2)
    with pytest.raises(MemoryError):
        fastpad.pad(
            [[1]],
            pad_token_id=0,
            padding="max_length",
            max_length=INT64_MAX,
            pad_to_multiple_of=2,
            return_tensors="np",
        )


# Found by fuzz/fuzz_pad.py: resolve_options asserted on a None pad value.
def test_pad_value_none_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        fastpad.pad([[1]], pad_token_id=0, pad_values={"labels": None}, return_tensors="np")


# Found by fuzz/fuzz_pad.py: the fast path refused strided inputs that the reference reads.
@pytest.mark.parametrize("form", ["ragged", "row"])
def test_strided_inputs_agree_with_reference(form: str) -> None:
    values = np.arange(20, dtype=np.int64)[::2]
    inputs: Any = (
        fastpad.Ragged(values, np.array([0, 4, 10])) if form == "ragged" else [values, [1, 2]]
    )
    want = fastpad.reference.pad(inputs, pad_token_id=0, return_tensors="np")
    got = fastpad.pad(inputs, pad_token_id=0, return_tensors="np")
    assert _plain(got["input_ids"]) == _plain(want["input_ids"])


def test_zero_d_array_token_agrees_with_reference() -> None:
    # fuzz_pad crash-d1be8084: [14, 0, 23, 0, np.array(4)] padded by pad, TypeError in reference.
    rows = [[14, 0, 23, 0, np.array(4)], []]
    got = fastpad.pad(rows, pad_token_id=0, return_tensors="np")
    want = fastpad.reference.pad(rows, pad_token_id=0, return_tensors="np")
    assert _plain(got["input_ids"]) == _plain(want["input_ids"])
