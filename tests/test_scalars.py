"""Per-example scalars (a ``label`` per example) of every torch dtype: what ``tokenizer.pad`` gives.

transformers stacks such a field with ``torch.tensor`` (0-d tensors keep their dtype, bfloat16
included; tensors that require grad are read without autograd), returns a 1-D tensor field as it
is, and, when the rows are tensors or arrays, first turns every field into Python objects (so a
bfloat16 label comes back float32). fastpad.pad, fastpad.reference and both Packer paths must
agree with it. The tokenizer is the bundled all-MiniLM-L6-v2 or, without that package, a
built-in word-level one (padding does not depend on the vocabulary).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import fastpad

torch = pytest.importorskip("torch")

DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
]


# (dtype, requires_grad): only floating point and complex tensors can require grad.
CASES = [(dtype, False) for dtype in DTYPES] + [
    (dtype, True) for dtype in DTYPES if dtype.is_floating_point or dtype.is_complex
]
CASE_IDS = [str(dtype).removeprefix("torch.") + ("-grad" if grad else "") for dtype, grad in CASES]


@pytest.fixture(scope="module")
def pad_tokenizer() -> Any:
    from fastpad._bench.workloads import load_tokenizer

    loaded, note = load_tokenizer()
    if loaded is None:
        pytest.skip(note)
    return loaded.tokenizer


def scalar_values(dtype: torch.dtype, count: int, requires_grad: bool) -> list[torch.Tensor]:
    values = [torch.tensor(index % 3, dtype=torch.float64).to(dtype) for index in range(count)]
    return [value.requires_grad_() for value in values] if requires_grad else values


def features(rows_kind: str, labels: Any, form: str) -> Any:
    rows = [[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]][: len(labels)]
    if rows_kind == "tensors":
        rows = [torch.tensor(row) for row in rows]  # type: ignore[misc]
    elif rows_kind == "arrays":
        rows = [np.array(row) for row in rows]  # type: ignore[misc]
    if form == "examples":  # what a DataLoader collator receives
        return [{"input_ids": row, "label": label} for row, label in zip(rows, labels, strict=True)]
    return {"input_ids": rows, "label": labels}  # a BatchEncoding-like mapping


def tokenizer_pad(tokenizer: Any, encoded: Any) -> Any:
    with warnings.catch_warnings():
        # torch.tensor warns when it reads tensors that require grad; that is transformers'.
        warnings.simplefilter("ignore")
        return tokenizer.pad(encoded, return_tensors="pt")


def fastpad_paths(tokenizer: Any) -> dict[str, Any]:
    return {
        "pad": lambda encoded: fastpad.pad(encoded, tokenizer=tokenizer, pin_memory=False),
        "reference": lambda encoded: fastpad.reference.pad(
            encoded, tokenizer=tokenizer, pin_memory=False
        ),
        "Packer": fastpad.Packer("cpu", tokenizer=tokenizer),
        "Packer ragged": fastpad.Packer("cpu", tokenizer=tokenizer, ragged_transfer=True),
    }


def assert_same_scalars(got: torch.Tensor, expected: torch.Tensor, path: str) -> None:
    assert isinstance(got, torch.Tensor), path
    assert got.dtype == expected.dtype, path
    assert got.device == expected.device, path
    assert got.requires_grad == expected.requires_grad, path
    assert torch.equal(got.detach(), expected.detach()), path


@pytest.mark.parametrize(("dtype", "requires_grad"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("rows_kind", ["lists", "tensors", "arrays"])
@pytest.mark.parametrize("form", ["examples", "mapping"])
def test_0d_tensor_labels_match_tokenizer_pad(
    pad_tokenizer: Any, dtype: torch.dtype, requires_grad: bool, rows_kind: str, form: str
) -> None:
    labels = scalar_values(dtype, 3, requires_grad)
    expected = tokenizer_pad(pad_tokenizer, features(rows_kind, labels, form))["label"]
    for path, function in fastpad_paths(pad_tokenizer).items():
        assert_same_scalars(function(features(rows_kind, labels, form))["label"], expected, path)


@pytest.mark.parametrize(("dtype", "requires_grad"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("rows_kind", ["lists", "tensors", "2-d"])
def test_1d_tensor_label_field_matches_tokenizer_pad(
    pad_tokenizer: Any, dtype: torch.dtype, requires_grad: bool, rows_kind: str
) -> None:
    """A mapping with a 1-D tensor field (a BatchEncoding of a dataset's columns)."""
    labels = torch.tensor([1, 0, 2], dtype=torch.float64).to(dtype)
    if requires_grad:
        labels.requires_grad_()
    rows: Any = [[101, 7, 102], [101, 102], [101, 5, 102]]
    if rows_kind == "tensors":
        rows = [torch.tensor(row) for row in rows]
    elif rows_kind == "2-d":
        rows = torch.tensor([[101, 7, 102], [101, 102, 0], [101, 5, 102]])
    expected = tokenizer_pad(pad_tokenizer, {"input_ids": rows, "label": labels})["label"]
    for path, function in fastpad_paths(pad_tokenizer).items():
        got = function({"input_ids": rows, "label": labels})["label"]
        assert_same_scalars(got, expected, path)


def test_numpy_output_of_dtypes_numpy_lacks_is_a_clear_type_error() -> None:
    labels = [torch.tensor(1.0, dtype=torch.bfloat16), torch.tensor(0.0, dtype=torch.bfloat16)]
    encoded = [{"input_ids": [1, 2], "label": labels[0]}, {"input_ids": [3], "label": labels[1]}]
    with pytest.raises(
        TypeError, match=r"'label' holds torch\.bfloat16 values.*return_tensors='pt'"
    ):
        fastpad.pad(encoded, pad_token_id=0, return_tensors="np")
    got = fastpad.pad(
        [{"input_ids": [1], "label": torch.tensor(2.5, requires_grad=True)}],
        pad_token_id=0,
        return_tensors="np",
    )
    assert got["label"].dtype == np.float32 and got["label"].tolist() == [2.5]


def test_mixed_scalars_and_arrays_are_a_type_error() -> None:
    encoded = [
        {"input_ids": [1, 2], "label": torch.tensor(1)},
        {"input_ids": [3], "label": torch.tensor([1, 2])},
    ]
    for path in (fastpad.pad, fastpad.reference.pad):
        with pytest.raises(TypeError, match="'label' holds per-example values that are not"):
            path(encoded, pad_token_id=0, pin_memory=False)
