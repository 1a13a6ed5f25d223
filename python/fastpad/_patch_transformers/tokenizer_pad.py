"""The fast path of ``PreTrainedTokenizerBase.pad`` (and so of ``DataCollatorWithPadding``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sized
from typing import Any

import numpy as np

from .. import _core
from .._inputs import Field, Inputs
from .._options import resolve_options
from .._pad import pad_inputs
from . import common
from .common import PAD, wrap_exact
from .convert import (
    allocator,
    bind,
    is_int_vector,
    is_option,
    padding_strategy,
    rectangle,
    tensor_kind,
    unchanged,
    vector_rows,
)

__all__ = ["PAD_METHODS", "wrap_pad"]

# Fields `PreTrainedTokenizerBase._pad` pads besides the model's main input.
_PADDED_FIELDS = ("attention_mask", "token_type_ids", "special_tokens_mask")
_NUMBER_TYPES = (int, float, bool)
_PADDINGS = ("longest", "max_length")
# The methods a tokenizer must not override for the fast path to run, as transformers defines
# them; filled by `install` when it patches (a recognised transformers has them).
PAD_METHODS: dict[str, Any] = {}
# The names pad binds besides encoded_inputs (4.40-4.44 have no padding_side): read from the
# original's signature at patch time, defaults included.
_PAD_OPTIONS = (
    "padding",
    "max_length",
    "pad_to_multiple_of",
    "padding_side",
    "return_attention_mask",
    "return_tensors",
    "verbose",
)
# transformers 4.x logs this advice on the first pad of a tokenizer whose class name ends in
# "Fast" (then sets the flag); the fast path leaves that call to the original.
_ADVICE = "Asking-to-pad-a-fast-tokenizer"


def signature(original: Callable[..., Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """pad's parameter names after self, and their defaults, as the original declares them."""
    import inspect

    parameters = list(inspect.signature(original).parameters.values())[1:]
    if any(parameter.kind is not parameter.POSITIONAL_OR_KEYWORD for parameter in parameters):
        raise TypeError("pad takes *args or **kwargs here")  # not a validated form
    names = tuple(parameter.name for parameter in parameters)
    if names[0] != "encoded_inputs" or not set(names[1:]) <= set(_PAD_OPTIONS):
        raise TypeError(f"pad's parameters {names} are not the validated ones")
    defaults = {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.default is not parameter.empty
    }
    return names, defaults


def _has_pad_token(tokenizer: Any, family: int) -> bool:
    # Read without the `pad_token` attribute, which logs an error when the token is missing
    # (the original then logs it once, not twice). Older 4.x keep it in SpecialTokensMixin's
    # `_pad_token`, later 4.x and 5.x in `_special_tokens_map`.
    own = getattr(tokenizer, "__dict__", {})
    if family == 4 and "_special_tokens_map" not in own:  # 4.x before its __getattr__ layout
        return own.get("_pad_token") is not None
    tokens = own.get("_special_tokens_map")
    return isinstance(tokens, dict) and tokens.get("pad_token") is not None


def _fast_pad(
    tokenizer: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    names: tuple[str, ...],
    defaults: dict[str, Any],
    tensors_ok: bool,
) -> Any:
    """The result of ``tokenizer.pad(*args, **kwargs)``, or the fallback reason (a str)."""
    tf = common.TF
    assert tf is not None
    bound = bind(args, kwargs, names, defaults)
    if bound is None:
        return "arguments"
    if (
        tf.family == 4
        and tokenizer.__class__.__name__.endswith("Fast")
        and not tokenizer.deprecation_warnings.get(_ADVICE, False)
    ):
        return "warning"
    bound.setdefault("padding_side", None)
    kind = tensor_kind(bound["return_tensors"])
    if kind is None:
        return "return_tensors"
    padding = bound["padding"]
    strategy = padding_strategy(padding)
    if padding is False or strategy == "do_not_pad":
        return "padding"
    max_length = bound["max_length"]
    multiple = bound["pad_to_multiple_of"]
    side = bound["padding_side"]
    mask = bound["return_attention_mask"]
    verbose = bound["verbose"]
    if (
        (padding is not True and (type(strategy) is not str or strategy not in _PADDINGS))
        or not is_option(max_length, 0)
        or not is_option(multiple, 1)
        or (side is not None and side not in ("left", "right"))
        or (side is not None and type(side) is not str)
        or (mask is not None and mask is not True and mask is not False)
        or (verbose is not True and verbose is not False)
    ):
        return "option"
    if padding is True and max_length is not None and verbose:
        return "warning"
    if not unchanged(tokenizer, PAD_METHODS):
        return "overridden"
    if not _has_pad_token(tokenizer, tf.family):
        return "no_pad_token"

    encoded = bound["encoded_inputs"]
    mapping_types = (dict, tf.BatchEncoding)
    mapping_input = type(encoded) in mapping_types
    if type(encoded) in (list, tuple):
        if not encoded:
            return "empty_batch"
        if any(type(example) not in mapping_types for example in encoded):
            return "input_type"
        # As transformers builds it: example 0's keys (a missing one raises, in the original).
        columns = {key: [example[key] for example in encoded] for key in encoded[0]}
    elif mapping_input:
        columns = dict(encoded.items())
    else:
        return "input_type"
    if any(type(key) is not str for key in columns):
        return "input_type"
    main = tokenizer.model_input_names[0]
    if main not in columns:
        return "input_type"
    required = columns[main]
    if required is None or (isinstance(required, Sized) and len(required) == 0):
        return "empty_batch"
    if type(required) not in (list, tuple):
        return "input_type"
    first = required[0]
    if type(first) is list:
        arrays = False
    elif is_int_vector(first):
        if mapping_input:
            return "input_type"  # transformers converts the caller's arrays in place
        arrays = True  # transformers converts every field with to_py_obj first
        if not tensors_ok and any(
            type(row) is not np.ndarray
            for column in columns.values()
            if type(column) in (list, tuple)
            for row in column
            if is_int_vector(row)
        ):
            return "input_type"  # that to_py_obj marks the caller's tensors (see wrap_pad)
    elif type(first) is int:
        return "single_example"
    else:
        return "input_type"

    rows = len(required)
    padded = (main, *_PADDED_FIELDS)
    fields: dict[str, Field] = {}
    unpadded: dict[str, Any] = {}
    for key, column in columns.items():
        if type(column) not in (list, tuple) or len(column) != rows:
            return "input_type"
        head = column[0]
        if type(head) is list or (arrays and is_int_vector(head)):
            if key not in padded:
                # Kept as they are: one tensor when all rows have one length (as transformers'
                # conversion then gives), else transformers' own result (or error).
                tensor = rectangle(list(column), kind)
                if tensor is None:
                    return "unpadded_field"
                unpadded[key] = tensor
                continue
            if _core.exact_int_lists(column):
                field: Field | None = Field("rows", column)
            elif arrays and all(is_int_vector(row) for row in column):
                field = vector_rows(column)
            else:
                field = None
            if field is None:
                return "input_type"
            fields[key] = field
        elif key not in padded and all(type(value) in _NUMBER_TYPES for value in column):
            fields[key] = Field("scalars", column)
        else:
            return "input_type"

    if mask is None:
        mask = "attention_mask" in tokenizer.model_input_names
    if not mask and "attention_mask" in fields:
        return "attention_mask_kept"
    # Raises where the original raises (no usable pad token id); never warns (checked above).
    resolved, _, resolved_length, _ = tokenizer._get_padding_truncation_strategies(
        padding=padding, max_length=max_length, verbose=verbose
    )
    resolved = padding_strategy(resolved)
    if resolved not in ("longest", "max_length"):
        return "padding"
    options = resolve_options(
        tokenizer=tokenizer,
        padding=resolved,
        max_length=resolved_length if resolved == "max_length" else None,
        pad_to_multiple_of=multiple,
        padding_side=side,
        return_attention_mask=mask,
        return_tensors=kind,
        pin_memory=False,
        fields=list(fields),
    )
    batch = pad_inputs(Inputs(fields=fields, rows=rows), options, allocate=allocator(kind))
    if batch[main].shape[1] == 0:
        return "no_tokens"
    if unpadded:
        # Input order, then the attention mask pad_inputs created (as transformers orders them).
        merged = {key: unpadded[key] if key in unpadded else batch[key] for key in columns}
        merged.update((key, value) for key, value in batch.items() if key not in merged)
        return tf.BatchEncoding(merged)
    return tf.BatchEncoding(dict(batch))


def _to_py_obj_takes_arrays() -> bool:
    """Whether transformers' ``to_py_obj`` runs ``np.array`` over a list (4.51-4.57, 5.0): on a
    list of equal-length tensors that calls ``Tensor.numpy()``, which marks the caller's storages
    not resizable for good; tensor rows then run the original (the fast path cannot mark them)."""
    from transformers import tokenization_utils_base

    function = vars(tokenization_utils_base).get("to_py_obj")
    code = getattr(function, "__code__", None)
    return code is None or "array" in code.co_names


def wrap_pad(original: Callable[..., Any]) -> Callable[..., Any]:
    names, defaults = signature(original)
    fast = functools.partial(
        _fast_pad, names=names, defaults=defaults, tensors_ok=not _to_py_obj_takes_arrays()
    )
    return wrap_exact(original, PAD, fast)
