"""The numpy path with nothing but numpy installed: `fastpad.pad(..., return_tensors="np")` equals
`fastpad.reference.pad` on random batches, and bad input raises the same clear exceptions (thrown
in C++, translated by pybind11). .ci/run runs this on every Python's release wheel in an
environment without torch; with torch installed it runs as well."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpad
import fastpad.reference


def _same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert isinstance(actual[key], np.ndarray), key
        assert actual[key].dtype == value.dtype, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


token = st.one_of(st.integers(0, 30_000), st.integers(-(2**63), 2**63 - 1))
rows_strategy = st.lists(st.lists(token, max_size=30), max_size=10)
options_strategy = st.fixed_dictionaries(
    {},
    optional={
        "padding": st.sampled_from([True, "max_length", False]),
        "max_length": st.integers(0, 40),
        "truncation": st.booleans(),
        "pad_to_multiple_of": st.sampled_from([None, 1, 8]),
        "padding_side": st.sampled_from(["left", "right"]),
        "truncation_side": st.sampled_from(["left", "right"]),
        "dtype": st.sampled_from([None, "int64", "int32"]),
        "mask_dtype": st.sampled_from([None, "int64", "int8", "bool"]),
    },
)
FORMS = {
    "lists": lambda rows: rows,
    "numpy rows": lambda rows: [np.array(row, dtype=np.int64) for row in rows],
    "ragged": fastpad.Ragged.from_rows,
    "mapping": lambda rows: {"input_ids": rows, "labels": rows},
    "examples": lambda rows: [{"input_ids": row, "label": len(row)} for row in rows],
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, options=options_strategy, form=st.sampled_from(sorted(FORMS)))
def test_numpy_outputs_match_reference(
    rows: list[list[int]], options: dict[str, Any], form: str
) -> None:
    encoded = FORMS[form](rows)
    kwargs = {"pad_token_id": 0, "pad_values": {"labels": -100}, "return_tensors": "np", **options}
    try:
        expected = fastpad.reference.pad(encoded, **kwargs)
    except (TypeError, ValueError, OverflowError) as error:
        with pytest.raises(type(error)):
            fastpad.pad(encoded, **kwargs)
        return
    _same(fastpad.pad(encoded, **kwargs), expected)


@pytest.mark.parametrize(
    ("encoded", "kwargs", "error", "pattern"),
    [
        ([[1, 2], [3, None]], {}, TypeError, r"row 1 of 'input_ids'.*position 1.*None"),
        ([[1], "hello"], {}, TypeError, r"row 1 of 'input_ids' is a str"),
        ([[1], [2**63]], {}, OverflowError, r"row 1 of 'input_ids'.*int64"),
        ([[1], [2, 2**31]], {"dtype": "int32"}, OverflowError, r"row 1 of 'input_ids'.*int32"),
        ([[1, 2, 3]], {"padding": "max_length", "max_length": 2}, ValueError, r"row 0"),
    ],
    ids=["None token", "str row", "int64 overflow", "int32 overflow", "too long"],
)
def test_bad_input_is_a_clear_exception(
    encoded: Any, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    kwargs = {"pad_token_id": 0, "return_tensors": "np", **kwargs}
    with pytest.raises(error, match=pattern):
        fastpad.pad(encoded, **kwargs)
    with pytest.raises(error):
        fastpad.reference.pad(encoded, **kwargs)
