"""Input normalization shared by `fastpad.pad`, `fastpad.reference` and the other entry points.

Every accepted input form (lists of rows, one flat row, arrays, `Ragged`, mappings of fields,
lists of per-example mappings) becomes one `Inputs`: an ordered mapping of field name to `Field`
(rows, a `Ragged`, or per-example scalars). Both padding paths start from it, so they differ only
in how they write the padded cells.
"""

from __future__ import annotations

import collections
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._ragged import Ragged

__all__ = ["Field", "Inputs", "normalize_inputs"]

RowsKind = Literal["rows", "ragged", "scalars"]


@dataclass(slots=True)
class Field:
    """One input field: a list of rows, a `Ragged`, or per-example scalars."""

    kind: RowsKind
    data: Any  # list/tuple of rows | Ragged | list of scalars
    # A "ragged" field made from a 2-D array or tensor (transformers' pad turns such inputs into
    # Python lists first, per-example scalars included: see python_scalars).
    from_array: bool = False


@dataclass(slots=True)
class Inputs:
    """A batch as an ordered mapping of field name to `Field`."""

    fields: dict[str, Field]
    rows: int


def _is_token(value: Any) -> bool:
    """An int-like scalar (Python int, numpy integer, 0-d integer array/tensor), never a bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Integral):
        return True
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return shape == () and dtype is not None and "int" in str(dtype)


def _is_scalar(value: Any) -> bool:
    return (
        _is_token(value)
        or isinstance(value, numbers.Number)
        or (getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None)
    )


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Ragged)


def _two_d_as_ragged(array: Any, key: str) -> Ragged:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in "iu":
        # Named here: the Ragged this becomes is an implementation detail the user never passed.
        raise TypeError(
            f"fastpad.pad: field {key!r} is a 2-D array of {array.dtype}; token ids must be "
            "integers (convert it, e.g. .long() or .astype(np.int64), if its values are ids)"
        )
    rows, width = array.shape
    return Ragged(array.reshape(-1), np.arange(rows + 1, dtype=np.int64) * width)


def _field(key: str, value: Any) -> Field:
    if isinstance(value, Ragged):
        return Field("ragged", value)
    if _is_array(value):
        ndim = len(value.shape)
        if ndim == 2:
            return Field("ragged", _two_d_as_ragged(value, key), from_array=True)
        if ndim == 1:
            return Field("scalars", value)
        raise ValueError(f"fastpad.pad: field {key!r} is a {ndim}-D array; expected rows")
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(
            f"fastpad.pad: field {key!r} must be a list of rows, a Ragged or an array, "
            f"got {type(value).__name__}"
        )
    if len(value) > 0 and _is_scalar(value[0]) and not _is_array_row(value[0]):
        return Field("scalars", value)
    if len(value) > 0 and isinstance(value[0], str | bytes):
        raise TypeError(
            f"fastpad.pad: field {key!r} holds {type(value[0]).__name__} values, which cannot "
            "become a tensor; drop the field before padding"
        )
    rows = value if isinstance(value, list | tuple) else list(value)
    return Field("rows", rows)


def _is_array_row(value: Any) -> bool:
    return _is_array(value) and len(value.shape) >= 1


# Mapping types whose items are those of their ``data`` dict: `dict` itself (its own data),
# ``collections.UserDict`` subclasses that override no item access, and transformers'
# ``BatchEncoding`` (a UserDict whose ``__getitem__`` returns ``data[key]`` for a str key). Filled
# once per type by `_plain_mapping_data`.
_DICT_DATA: dict[type, bool | None] = {dict: False}
_USERDICT_ACCESS = ("__getitem__", "__iter__", "__len__", "__contains__", "keys", "items", "values")


def _plain_mapping_data(kind: type) -> bool | None:
    """Whether a mapping of type `kind` has its items in ``.data`` (True), is a dict (False), or
    neither (None); decided once per type."""
    plain = _DICT_DATA.get(kind, ...)
    if plain is not ...:
        return plain
    decided: bool | None = None
    if issubclass(kind, collections.UserDict):
        overridden = {
            name
            for name in _USERDICT_ACCESS
            if getattr(kind, name, None) is not getattr(collections.UserDict, name)
        }
        batch_encoding = (
            kind.__name__ == "BatchEncoding"
            and kind.__module__.startswith("transformers.")
            and overridden <= {"__getitem__", "keys", "items", "values"}
        )
        if not overridden or batch_encoding:
            decided = True
    if len(_DICT_DATA) < 64:
        _DICT_DATA[kind] = decided
    return decided


def _list_row_fields(data: dict[Any, Any]) -> Inputs | None:
    """`Inputs` of a dict whose fields are all non-empty lists of list rows, with str keys and
    the same row count (a tokenizer's output), as the general path would build it: type checks
    per field, nothing per row. None for anything else (the general path decides, and reports)."""
    fields: dict[str, Field] = {}
    rows = -1
    for key in data:
        value = data[key]
        if type(key) is not str or type(value) is not list or not value:
            return None
        if type(value[0]) is not list:
            return None
        count = len(value)
        if count != rows and rows >= 0:
            return None
        rows = count
        fields[key] = Field("rows", value)
    if rows < 0:
        return None
    return Inputs(fields=fields, rows=rows)


def normalize_inputs(encoded_inputs: Any) -> Inputs:
    """Turn every accepted input form into an ordered mapping of field to rows.

    Accepted: a ragged batch (list/tuple of rows), one flat row of ints (a batch of one), a 1-D
    or 2-D integer array/tensor, a `Ragged`, a Mapping of field name to any of those (a single
    example when its first field is one flat row), or a list of per-example Mappings.
    """
    kind = type(encoded_inputs)
    if kind is list and encoded_inputs and type(encoded_inputs[0]) is list:
        # The common case (a list of list rows), decided as the general path below would.
        return Inputs(fields={"input_ids": Field("rows", encoded_inputs)}, rows=len(encoded_inputs))
    plain = _DICT_DATA[kind] if kind in _DICT_DATA else _plain_mapping_data(kind)
    if plain is not None:
        # A dict or a tokenizer's BatchEncoding of list rows: no per-field abc checks.
        inputs = _list_row_fields(encoded_inputs.data if plain else encoded_inputs)
        if inputs is not None:
            return inputs
    if isinstance(encoded_inputs, Ragged):
        fields = {"input_ids": Field("ragged", encoded_inputs)}
    elif isinstance(encoded_inputs, Mapping):
        if len(encoded_inputs) == 0:
            raise ValueError("fastpad.pad: the mapping holds no field")
        first = next(iter(encoded_inputs.values()))
        single = (isinstance(first, list | tuple) and len(first) > 0 and _is_token(first[0])) or (
            _is_array(first) and len(first.shape) == 1 and not isinstance(first, Ragged)
        )
        if single:
            # One example: every field is one row (or one scalar).
            fields = {str(key): _field(str(key), [value]) for key, value in encoded_inputs.items()}
        else:
            fields = {str(key): _field(str(key), value) for key, value in encoded_inputs.items()}
    elif _is_array(encoded_inputs):
        ndim = len(encoded_inputs.shape)
        if ndim == 1:
            fields = {"input_ids": Field("rows", [encoded_inputs])}
        elif ndim == 2:
            fields = {
                "input_ids": Field(
                    "ragged", _two_d_as_ragged(encoded_inputs, "input_ids"), from_array=True
                )
            }
        else:
            raise ValueError(
                f"fastpad.pad: a {ndim}-D array is not a batch of rows (nesting too deep)"
            )
    elif isinstance(encoded_inputs, list | tuple):
        if len(encoded_inputs) > 0 and isinstance(encoded_inputs[0], Mapping):
            fields = _from_examples(encoded_inputs)
        elif len(encoded_inputs) > 0 and _is_token(encoded_inputs[0]):
            fields = {"input_ids": Field("rows", [encoded_inputs])}
        else:
            fields = {"input_ids": Field("rows", encoded_inputs)}
    else:
        raise TypeError(
            "fastpad.pad: encoded_inputs must be a list of rows, a Ragged, an array, a mapping of "
            f"fields or a list of mappings, got {type(encoded_inputs).__name__}"
        )
    rows = -1
    for key, field in fields.items():
        count = len(field.data)
        if rows >= 0 and count != rows:
            first_key = next(iter(fields))
            raise ValueError(
                f"fastpad.pad: field {key!r} has {count} rows but {first_key!r} has {rows}"
            )
        rows = count
    return Inputs(fields=fields, rows=max(rows, 0))


def _from_examples(examples: Sequence[Any]) -> dict[str, Field]:
    keys = list(examples[0].keys())
    columns: dict[str, list[Any]] = {key: [] for key in keys}
    for index, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise TypeError(
                f"fastpad.pad: example {index} is a {type(example).__name__}, not a mapping"
            )
        if len(example) != len(keys) or any(key not in example for key in keys):
            raise ValueError(
                f"fastpad.pad: example {index} has keys {sorted(example)}, example 0 has "
                f"{sorted(keys)}"
            )
        for key in keys:
            columns[key].append(example[key])
    return {str(key): _field(str(key), column) for key, column in columns.items()}
