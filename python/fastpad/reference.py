"""Pure-Python padding: the test oracle for `fastpad.pad` and the baseline of the benchmarks.

It pads Python lists row by row and builds the mask from the row lengths, then converts with
``torch.tensor``, as in the Hugging Face course chapter "Handling multiple sequences" and as
``tokenizer.pad`` does. Options and inputs go through the same checks as `fastpad.pad`, so the two
differ only in how the cells are written.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np

from ._batch import Batch
from ._inputs import Field, Inputs, normalize_inputs
from ._options import PAD_KEYWORDS, PadOptions, check_keywords, require_torch, resolve_options
from ._scalars import python_scalars, stack_scalars

__all__ = ["pad", "pad_inputs"]

_RANGES = {
    "bool": (0, 1),
    "int8": (-(2**7), 2**7 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def _kept(row: Any, options: PadOptions) -> tuple[Any, int]:
    """The part of a row that truncation keeps, and the position of its first token."""
    length = len(row)
    if options.truncate and length > options.max_length:
        start = length - options.max_length if options.truncate_left else 0
        return row[start : start + options.max_length], start
    return row, 0


def _row_tokens(row: Any, key: str, index: int, options: PadOptions) -> list[int]:
    # Only the tokens that truncation keeps are read, as in the C++ path.
    if isinstance(row, list | tuple):
        tokens = []
        kept, start = _kept(row, options)
        for position, token in enumerate(kept, start):
            if isinstance(token, bool | np.bool_) or not isinstance(token, numbers.Integral):
                # Like the C++ path: anything but a bool, list, tuple or float whose __index__
                # gives an int (numpy/torch integer scalars, 0-d integer arrays) is a token.
                if hasattr(token, "__index__") and not isinstance(
                    token, bool | np.bool_ | list | tuple | float
                ):
                    try:
                        tokens.append(operator.index(token))
                        continue
                    except TypeError:
                        pass
                raise TypeError(
                    f"fastpad: row {index} of {key!r}: token at position {position} is a "
                    f"{type(token).__name__}; token ids must be ints"
                )
            tokens.append(int(token))
        return tokens
    if hasattr(row, "shape") and hasattr(row, "dtype"):
        array = np.asarray(row.detach().cpu() if hasattr(row, "detach") else row)
        if array.ndim != 1:
            raise ValueError(
                f"fastpad: row {index} of {key!r} is a {array.ndim}-D array (nesting too deep)"
            )
        if array.dtype.kind not in "iu":
            raise TypeError(f"fastpad: row {index} of {key!r} has dtype {array.dtype}")
        return [int(value) for value in _kept(array, options)[0].tolist()]
    raise TypeError(
        f"fastpad: row {index} of {key!r} is a {type(row).__name__}; expected a list/tuple of "
        "ints or a 1-D integer array"
    )


def _field_rows(key: str, field: Field, options: PadOptions) -> list[list[int]]:
    if field.kind == "ragged":
        offsets = [int(value) for value in field.data.offsets.tolist()]
        values = field.data.values.tolist()
        rows = []
        for row in range(len(offsets) - 1):
            row_values = _kept(values[offsets[row] : offsets[row + 1]], options)[0]
            rows.append([int(value) for value in row_values])
        return rows
    return [_row_tokens(row, key, index, options) for index, row in enumerate(field.data)]


def _dtype_of(key: str, options: PadOptions) -> str:
    return options.mask_dtype if key == "attention_mask" else options.dtype


def _read_fields(names: list[str], inputs: Inputs, options: PadOptions) -> dict[str, list[Any]]:
    """Read and range-check every field's kept tokens in the order the C++ path does, so that
    a batch with several problems raises the same exception: list fields first (for each field
    its pad value, then its list rows token by token), then `Ragged` fields, then array rows."""
    rows: dict[str, list[Any]] = {}
    deferred: list[tuple[str, int, Any]] = []
    for key in names:
        field = inputs.fields[key]
        if field.kind != "rows":
            continue
        _check_range([[options.pad_values[key]]], key, _dtype_of(key, options))
        rows[key] = []
        for index, row in enumerate(field.data):
            if isinstance(row, list | tuple):
                tokens = _row_tokens(row, key, index, options)
                _check_range([tokens], key, _dtype_of(key, options), first_row=index)
                rows[key].append(tokens)
            else:
                rows[key].append(None)
                deferred.append((key, index, row))
    for key in names:
        field = inputs.fields[key]
        if field.kind == "ragged":
            _check_range([[options.pad_values[key]]], key, _dtype_of(key, options))
            rows[key] = _field_rows(key, field, options)
            _check_range(rows[key], key, _dtype_of(key, options))
    for key, index, row in deferred:
        tokens = _row_tokens(row, key, index, options)
        _check_range([tokens], key, _dtype_of(key, options), first_row=index)
        rows[key][index] = tokens
    return rows


def _width(lengths: list[int], options: PadOptions) -> int:
    limit = options.max_length
    kept = [min(length, limit) if options.truncate else length for length in lengths]
    longest = max(kept, default=0)
    if options.padding == 2:  # do_not_pad
        for row, length in enumerate(kept):
            if length != longest:
                raise ValueError(f"fastpad: padding=False but row {row} has {length} tokens")
        return longest
    width = longest
    if options.padding == 1:  # max_length
        for row, length in enumerate(lengths):
            if length > limit and not options.truncate:
                raise ValueError(
                    f"fastpad: row {row} has {length} tokens, more than max_length={limit}"
                )
        width = limit
    if options.multiple_of and width % options.multiple_of:
        width = (width // options.multiple_of + 1) * options.multiple_of
    return width


def _place(row: list[int], width: int, pad_value: int, options: PadOptions) -> list[int]:
    if options.truncate and len(row) > options.max_length:
        limit = options.max_length
        row = row[len(row) - limit :] if options.truncate_left else row[:limit]
    padding = [pad_value] * (width - len(row))
    return padding + row if options.pad_left else row + padding


def _check_range(rows: list[list[int]], key: str, dtype: str, first_row: int = 0) -> None:
    low, high = _RANGES[dtype]
    for index, row in enumerate(rows, first_row):
        for value in row:
            if not low <= value <= high:
                raise OverflowError(
                    f"fastpad: row {index} of {key!r}: value {value} does not fit {dtype}"
                )


def _to_tensor(rows: list[list[int]], width: int, dtype: str, options: PadOptions) -> Any:
    if options.return_tensors == "np":
        return np.array(rows, dtype=dtype).reshape(len(rows), width)
    require_torch("fastpad.reference.pad")
    import torch

    tensor = torch.tensor(rows, dtype=getattr(torch, dtype)).reshape(len(rows), width)
    return tensor.pin_memory() if options.pin_memory else tensor


def _row_length(row: Any, key: str, index: int) -> int:
    if isinstance(row, list | tuple):
        return len(row)
    if hasattr(row, "shape") and hasattr(row, "dtype"):
        if len(row.shape) != 1:
            raise ValueError(
                f"fastpad: row {index} of {key!r} is a {len(row.shape)}-D array (nesting too deep)"
            )
        kind = getattr(row.dtype, "kind", None)  # numpy: "i"/"u" in either byte order ('>i4')
        if (kind not in ("i", "u")) if isinstance(kind, str) else "int" not in str(row.dtype):
            raise TypeError(f"fastpad: row {index} of {key!r} has dtype {row.dtype}")
        return int(row.shape[0])
    raise TypeError(
        f"fastpad: row {index} of {key!r} is a {type(row).__name__}; expected a list/tuple of "
        "ints or a 1-D integer array"
    )


def _full_lengths(key: str, field: Field) -> list[int]:
    if field.kind == "ragged":
        offsets = [int(value) for value in field.data.offsets.tolist()]
        if offsets[0] != 0:
            raise ValueError(f"fastpad: offsets of {key!r} must start at 0, got {offsets[0]}")
        for row in range(len(offsets) - 1):
            if offsets[row + 1] < offsets[row]:
                raise ValueError(f"fastpad: offsets of {key!r} decrease at row {row}")
            if offsets[row + 1] > field.data.values.size:
                raise ValueError(f"fastpad: offsets of {key!r} run past the values at row {row}")
        return [offsets[row + 1] - offsets[row] for row in range(len(offsets) - 1)]
    return [_row_length(row, key, index) for index, row in enumerate(field.data)]


def pad_inputs(inputs: Inputs, options: PadOptions) -> Batch:
    """Pad normalized inputs with Python lists (the engine behind `pad`).

    Checks run in the order of the C++ path: row types and lengths of every field, lengths
    agreeing across fields, the padded width, then the tokens themselves.
    """
    if options.truncate and (options.template is not None or options.truncation == "only_second"):
        # Rows that carry the tokenizer's template are cut as the tokenizer cuts them (the same
        # code as fastpad.pad: the oracle of that is the tokenizer itself, see
        # tests/test_truncation_parity.py); the plain cut of the other rows is written below.
        from ._truncate import cut_template_rows

        inputs = cut_template_rows(inputs, options)
    names = [key for key, field in inputs.fields.items() if field.kind != "scalars"]
    if not names:
        raise ValueError("fastpad.pad: no field with rows to pad (only per-example scalars)")
    for key in names:
        if key not in options.pad_values:
            raise ValueError(f"fastpad.pad: no pad value for field {key!r}")
    lengths = _full_lengths(names[0], inputs.fields[names[0]])
    for key in names[1:]:
        other_lengths = _full_lengths(key, inputs.fields[key])
        for row, (length, other) in enumerate(zip(lengths, other_lengths, strict=True)):
            if other != length:
                raise ValueError(
                    f"fastpad: row {row} has {length} tokens in {names[0]!r} but {other} in {key!r}"
                )
    width = _width(lengths, options)
    ragged = _read_fields(names, inputs, options)
    batch = Batch()
    for key, field in inputs.fields.items():
        if field.kind == "scalars":
            batch[key] = stack_scalars(
                key, field.data, options.return_tensors, python_scalars(inputs, options.main_key)
            )
            continue
        if key == "attention_mask" and not options.return_attention_mask:
            continue
        dtype = options.mask_dtype if key == "attention_mask" else options.dtype
        pad_value = options.pad_values[key]
        padded = [_place(row, width, pad_value, options) for row in ragged[key]]
        batch[key] = _to_tensor(padded, width, dtype, options)
    if options.return_attention_mask and "attention_mask" not in inputs.fields:
        masks = [_place([1] * length, width, 0, options) for length in lengths]
        batch["attention_mask"] = _to_tensor(masks, width, options.mask_dtype, options)
    return batch


# Every keyword of `fastpad.pad` but threads (the reference writes its cells in one thread).
_KEYWORDS = PAD_KEYWORDS - {"threads"}


def pad(encoded_inputs: Any, **options: Any) -> Batch:
    """Pure-Python `fastpad.pad`: same arguments, same results, about 100x slower.

    The inputs and options are checked by the same code as in `fastpad.pad` (`fastpad._inputs`,
    `fastpad._options`); only the padding itself is written independently, in Python.

    Parameters
    ----------
    encoded_inputs : list, Ragged, array, Mapping or list of Mapping
        As in `fastpad.pad`.
    **options
        The keyword arguments of `fastpad.pad` but `threads`: ``tokenizer``, ``padding``,
        ``max_length``, ``truncation``, ``pad_to_multiple_of``, ``padding_side``,
        ``truncation_side``, ``return_attention_mask``, ``return_tensors``, ``pad_token_id``,
        ``pad_values``, ``dtype``, ``mask_dtype``, ``pin_memory``, with the same defaults.

    Returns
    -------
    Batch
        Equal to what `fastpad.pad` returns for the same call.

    Raises
    ------
    TypeError
        An unknown keyword, and as `fastpad.pad`.
    """
    check_keywords("fastpad.reference.pad", options, _KEYWORDS)
    inputs = normalize_inputs(encoded_inputs)
    return pad_inputs(inputs, resolve_options(**options, fields=list(inputs.fields)))
