"""Argument checking and input normalization shared by `fastpad.pad` and `fastpad.reference`.

Both paths resolve their options and inputs here, so they differ only in how they write the
padded cells: C++ into preallocated buffers, or pure Python lists and ``torch.tensor``.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from ._ragged import Ragged

__all__ = [
    "DEFAULT_PAD_VALUES",
    "Field",
    "Inputs",
    "PadOptions",
    "normalize_inputs",
    "python_scalars",
    "resolve_options",
    "stack_scalars",
]

# Pad values transformers uses for the fields it knows (`PreTrainedTokenizerBase._pad`).
DEFAULT_PAD_VALUES: dict[str, int] = {"special_tokens_mask": 1, "attention_mask": 0}
_MASK_DTYPES = ("bool", "int8", "int32", "int64")
_ID_DTYPES = ("int32", "int64")
_PADDING = {"longest": 0, "max_length": 1, "do_not_pad": 2}
# transformers' VERY_LARGE_INTEGER: a tokenizer without a real length limit.
_NO_LIMIT = int(1e29)

RowsKind = Literal["rows", "ragged", "scalars"]


@dataclass(frozen=True)
class PadOptions:
    """Checked options of one `pad` call."""

    padding: int  # 0 longest, 1 max_length, 2 do_not_pad (codes of _core.measure)
    max_length: int  # -1: none
    truncate: bool
    multiple_of: int  # 0: none
    pad_left: bool
    truncate_left: bool
    return_attention_mask: bool
    return_tensors: str  # "pt" or "np"
    dtype: str  # "int64" | "int32"
    mask_dtype: str  # "bool" | "int8" | "int32" | "int64"
    pin_memory: bool
    pad_values: Mapping[str, int]
    main_key: str


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


def _strategy(value: Any, name: str, allowed: dict[str, Any]) -> Any:
    # transformers' PaddingStrategy / TruncationStrategy are str enums.
    key = getattr(value, "value", value)
    if isinstance(key, str) and key in allowed:
        return allowed[key]
    raise ValueError(f"fastpad.pad: unknown {name}={value!r}; expected one of {sorted(allowed)}")


def _side(value: Any, name: str, default: str) -> bool:
    side = default if value is None else value
    if side not in ("left", "right"):
        raise ValueError(f"fastpad.pad: {name} must be 'left' or 'right', got {value!r}")
    return bool(side == "left")


def _int_option(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"fastpad.pad: {name} must be an int, got {type(value).__name__}")
    return int(value)


def _dtype_name(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value is None:
        return "int64"
    if value is bool:
        text = "bool"
    else:
        text = str(value).removeprefix("torch.")
        with contextlib.suppress(TypeError):
            text = np.dtype(text).name
    if text not in allowed:
        raise ValueError(f"fastpad.pad: {name} must be one of {list(allowed)}, got {value!r}")
    return text


@functools.cache
def accelerator_available() -> bool:
    """True when torch sees a CUDA (or other) accelerator whose tensors can use pinned memory."""
    try:
        import torch
    except ImportError:
        return False
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


# Resolved options of tokenizer-free calls, keyed by the (type, value) of every argument: a
# server calling `pad` with the same arguments skips the checks. The types keep `padding=1` from
# hitting the entry of `padding=True`. Only successful resolutions are stored.
_OPTIONS_CACHE: dict[tuple[Any, ...], PadOptions] = {}
_OPTIONS_CACHE_SIZE = 256


def resolve_options(
    *,
    tokenizer: Any,
    padding: Any,
    max_length: Any,
    truncation: Any,
    pad_to_multiple_of: Any,
    padding_side: Any,
    truncation_side: Any,
    return_attention_mask: Any,
    return_tensors: Any,
    pad_token_id: Any,
    pad_values: Any,
    dtype: Any,
    mask_dtype: Any,
    pin_memory: Any,
    fields: Sequence[str],
) -> PadOptions:
    """Check every option of `fastpad.pad` and fill defaults from the tokenizer.

    Calls without a tokenizer and without `pad_values` are cached: their result depends on the
    arguments alone (and on whether torch sees an accelerator, itself cached).
    """
    key: tuple[Any, ...] | None = None
    if tokenizer is None and pad_values is None:
        key = (
            type(padding), padding, type(max_length), max_length, type(truncation), truncation,
            type(pad_to_multiple_of), pad_to_multiple_of, padding_side, truncation_side,
            type(return_attention_mask), return_attention_mask, return_tensors,
            type(pad_token_id), pad_token_id, type(dtype), dtype, type(mask_dtype), mask_dtype,
            type(pin_memory), pin_memory, *fields,
        )  # fmt: skip
        try:
            cached = _OPTIONS_CACHE.get(key)
        except TypeError:  # an unhashable argument: resolve (and report) it the slow way
            key = None
        else:
            if cached is not None:
                return cached
    options = _resolve_options(
        tokenizer=tokenizer,
        padding=padding,
        max_length=max_length,
        truncation=truncation,
        pad_to_multiple_of=pad_to_multiple_of,
        padding_side=padding_side,
        truncation_side=truncation_side,
        return_attention_mask=return_attention_mask,
        return_tensors=return_tensors,
        pad_token_id=pad_token_id,
        pad_values=pad_values,
        dtype=dtype,
        mask_dtype=mask_dtype,
        pin_memory=pin_memory,
        fields=fields,
    )
    if key is not None:
        if len(_OPTIONS_CACHE) >= _OPTIONS_CACHE_SIZE:
            _OPTIONS_CACHE.clear()
        _OPTIONS_CACHE[key] = options
    return options


def _resolve_options(
    *,
    tokenizer: Any,
    padding: Any,
    max_length: Any,
    truncation: Any,
    pad_to_multiple_of: Any,
    padding_side: Any,
    truncation_side: Any,
    return_attention_mask: Any,
    return_tensors: Any,
    pad_token_id: Any,
    pad_values: Any,
    dtype: Any,
    mask_dtype: Any,
    pin_memory: Any,
    fields: Sequence[str],
) -> PadOptions:
    if padding is True:
        padding_code = _PADDING["longest"]
    elif padding is False:
        padding_code = _PADDING["do_not_pad"]
    else:
        padding_code = _strategy(padding, "padding", _PADDING)
    if truncation is None or truncation is False:
        truncate = False
    elif truncation is True:
        truncate = True
    else:
        truncate = _strategy(
            truncation,
            "truncation",
            {"longest_first": True, "only_first": True, "do_not_truncate": False},
        )
    length = _int_option(max_length, "max_length")
    if length is not None and length < 0:
        raise ValueError(f"fastpad.pad: max_length must be >= 0, got {length}")
    multiple = _int_option(pad_to_multiple_of, "pad_to_multiple_of")
    if multiple is not None and multiple <= 0:
        raise ValueError(f"fastpad.pad: pad_to_multiple_of must be > 0, got {multiple}")
    model_limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if length is None and (truncate or padding_code == _PADDING["max_length"]):
        # Like transformers: the tokenizer's model_max_length stands in for a missing max_length.
        if isinstance(model_limit, int) and 0 < model_limit < _NO_LIMIT:
            length = model_limit
        elif truncate:
            raise ValueError("fastpad.pad: truncation=True needs max_length")
        else:
            raise ValueError("fastpad.pad: padding='max_length' needs max_length")

    pad_left = _side(padding_side, "padding_side", getattr(tokenizer, "padding_side", "right"))
    truncate_left = _side(
        truncation_side, "truncation_side", getattr(tokenizer, "truncation_side", "right")
    )
    if return_tensors not in ("pt", "np"):
        raise ValueError(
            f"fastpad.pad: return_tensors must be 'pt' or 'np', got {return_tensors!r}"
        )
    if return_attention_mask is None:
        names = getattr(tokenizer, "model_input_names", None) if tokenizer is not None else None
        return_attention_mask = names is None or "attention_mask" in names

    main_key = "input_ids"
    if tokenizer is not None:
        main_key = tokenizer.model_input_names[0]
    values: dict[str, int] = dict(DEFAULT_PAD_VALUES)
    if tokenizer is not None:
        values["token_type_ids"] = int(tokenizer.pad_token_type_id)
        if tokenizer.pad_token_id is not None:
            values[main_key] = int(tokenizer.pad_token_id)
    else:
        values["token_type_ids"] = 0
    if pad_values is not None:
        if not isinstance(pad_values, Mapping):
            raise TypeError("fastpad.pad: pad_values must be a mapping of field name to int")
        for key, value in pad_values.items():
            checked = _int_option(value, f"pad_values[{key!r}]")
            if checked is None:
                raise TypeError(f"fastpad.pad: pad_values[{key!r}] must be an int, got None")
            values[str(key)] = checked
    explicit_id = _int_option(pad_token_id, "pad_token_id")
    if explicit_id is not None:
        if (
            pad_values is not None
            and main_key in pad_values
            and pad_values[main_key] != explicit_id
        ):
            raise ValueError(
                f"fastpad.pad: pad_token_id={explicit_id} and pad_values[{main_key!r}]="
                f"{pad_values[main_key]} disagree"
            )
        values[main_key] = explicit_id
    if main_key in fields and main_key not in values:
        if tokenizer is not None:
            raise ValueError(
                "fastpad.pad: the tokenizer has no pad token; set tokenizer.pad_token or pass "
                "pad_token_id"
            )
        raise ValueError(
            "fastpad.pad: pad_token_id is required without a tokenizer (a wrong pad id silently "
            "changes models that derive positions from it)"
        )

    if pin_memory is None:
        pin = return_tensors == "pt" and accelerator_available()
    elif pin_memory:
        if return_tensors != "pt":
            raise ValueError("fastpad.pad: pin_memory=True needs return_tensors='pt'")
        if not accelerator_available():
            raise RuntimeError(
                "fastpad.pad: pin_memory=True but torch sees no accelerator to pin memory for"
            )
        pin = True
    else:
        pin = False

    return PadOptions(
        padding=padding_code,
        max_length=-1 if length is None else length,
        truncate=truncate,
        multiple_of=0 if multiple is None else multiple,
        pad_left=pad_left,
        truncate_left=truncate_left,
        return_attention_mask=bool(return_attention_mask),
        return_tensors=return_tensors,
        dtype=_dtype_name(dtype, "dtype", _ID_DTYPES),
        mask_dtype=_dtype_name(mask_dtype, "mask_dtype", _MASK_DTYPES),
        pin_memory=pin,
        pad_values=MappingProxyType(values),  # read-only: cached instances are shared
        main_key=main_key,
    )


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


def normalize_inputs(encoded_inputs: Any) -> Inputs:
    """Turn every accepted input form into an ordered mapping of field to rows.

    Accepted: a ragged batch (list/tuple of rows), one flat row of ints (a batch of one), a 1-D
    or 2-D integer array/tensor, a `Ragged`, a Mapping of field name to any of those (a single
    example when its first field is one flat row), or a list of per-example Mappings.
    """
    if type(encoded_inputs) is list and encoded_inputs and type(encoded_inputs[0]) is list:
        # The common case (a list of list rows), decided as the general path below would.
        return Inputs(fields={"input_ids": Field("rows", encoded_inputs)}, rows=len(encoded_inputs))
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


def python_scalars(inputs: Inputs, main_key: str) -> bool:
    """Whether transformers' ``pad`` turns every field into Python objects before stacking.

    ``PreTrainedTokenizerBase.pad`` looks at the first token of the main field (of its first
    non-empty row) and, unless it is an int (or the rows are empty), runs ``to_py_obj`` over
    every field: per-example tensors then go through ``tolist()``, so a bfloat16 or float16
    label comes back float32 and an int32 one int64. That happens for rows that are arrays or
    tensors, and for 2-D array inputs.
    """
    field = inputs.fields.get(main_key)
    if field is None or field.kind == "scalars":
        return False
    if field.kind == "ragged":
        return field.from_array
    try:
        rows = field.data
        if len(rows) == 0:
            return False
        first = rows[0]
        if isinstance(first, list | tuple):
            for item in rows:
                if len(item) != 0:
                    first = item[0]
                    break
        return not isinstance(first, int | list | tuple)
    except Exception:  # malformed rows are reported by the padding itself, in its words
        return False


def _to_py_obj(values: Any) -> Any:
    """transformers' ``to_py_obj`` on one field: tensors and arrays become Python lists."""
    if isinstance(values, list | tuple):
        if all(isinstance(value, int | float | np.number) for value in values):
            return list(values)
        return [_to_py_obj(value) for value in values]
    if hasattr(values, "tolist") and (hasattr(values, "detach") or isinstance(values, np.ndarray)):
        return values.tolist()
    if isinstance(values, np.number):
        return values.tolist()
    return values


def _not_numbers(key: str, detail: str) -> TypeError:
    return TypeError(
        f"fastpad.pad: field {key!r} holds per-example values that are not numbers{detail}"
    )


def stack_scalars(key: str, values: Any, return_tensors: str, python_objects: bool = False) -> Any:
    """Per-example scalars (a ``label`` per example) as one 1-D tensor or array.

    What transformers' ``pad`` gives: with `python_objects` (see `python_scalars`) the field is
    first turned into Python objects. Then a list goes through ``torch.tensor`` (float labels
    become float32; 0-d tensors of any dtype, bfloat16 included, keep theirs; tensors that
    require grad or live on a device are read without autograd into a CPU tensor), and a 1-D
    tensor, which transformers splits into rows and stacks again, comes back as a fresh CPU
    copy without autograd. Values that are not numbers are a TypeError naming the field, never
    an object array.
    """
    if python_objects:
        values = _to_py_obj(values)
    if hasattr(values, "detach"):  # a 1-D tensor field
        if return_tensors == "np":
            return _tensor_numpy(key, values)
        # transformers splits it into rows and stacks them again with torch.tensor: a fresh CPU
        # tensor of the same dtype, without autograd.
        values = values.detach()
        return values.clone() if values.device.type == "cpu" else values.cpu()
    if isinstance(values, list | tuple) and any(hasattr(value, "detach") for value in values):
        return _stack_tensors(key, values, return_tensors)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise _not_numbers(key, f": {error}") from None
    if array.dtype.kind not in "biufc" or array.ndim != 1:
        raise _not_numbers(
            key, f" (got {array.dtype} of shape {array.shape}); drop the field or pass rows"
        )
    if return_tensors == "np":
        return array
    import torch

    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    return torch.tensor(values)


def _tensor_numpy(key: str, tensor: Any) -> Any:
    try:
        return tensor.detach().cpu().numpy()
    except TypeError as error:  # bfloat16 and other dtypes numpy lacks
        raise TypeError(
            f"fastpad.pad: field {key!r} holds {tensor.dtype} values, which numpy cannot hold "
            f"({error}); use return_tensors='pt'"
        ) from None


def _stack_tensors(key: str, values: Any, return_tensors: str) -> Any:
    """A list holding 0-d tensors: ``torch.tensor`` of it, as transformers does."""
    import torch

    # detach(): the same values without autograd (torch.tensor would warn, then copy them).
    items = [value.detach() if hasattr(value, "detach") else value for value in values]
    if any(getattr(item, "ndim", 0) != 0 for item in items):
        raise _not_numbers(key, " (a list mixing scalars and arrays); drop the field or pass rows")
    try:
        stacked = torch.tensor(items)
    except (TypeError, ValueError, RuntimeError) as error:
        raise _not_numbers(key, f": {error}") from None
    if stacked.ndim != 1:
        raise _not_numbers(
            key, f" (got {stacked.dtype} of shape {tuple(stacked.shape)}); drop the field"
        )
    return _tensor_numpy(key, stacked) if return_tensors == "np" else stacked
