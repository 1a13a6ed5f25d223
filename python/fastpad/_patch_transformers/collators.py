"""The fast paths of ``DataCollatorForTokenClassification`` and ``DataCollatorWithFlattening``."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from .._flatten import flatten
from .._inputs import Field, Inputs
from .._options import resolve_options
from .._pad import pad_inputs
from . import common
from .common import FLATTENING, TOKEN_CLASSIFICATION, wrap_exact
from .convert import allocator, bind, is_int_vector, vector_rows

__all__ = ["FlatteningForm", "flattening_form", "wrap_flattening", "wrap_token_classification"]


# --------------------------------------------------------------------------------------------
# DataCollatorForTokenClassification
# --------------------------------------------------------------------------------------------


# transformers' model inputs that tokenizer.pad pads (and so gives as int64 arrays).
_PADDED_KEYS = ("attention_mask", "token_type_ids", "special_tokens_mask")


def _pads_labels_itself(method: Any) -> bool:
    """Whether ``numpy_call`` is the older form (4.x and 5.0-5.15): it pads the features with
    their labels, returns a plain dict of ``np.array(value, dtype=np.int64)`` per key, and
    stores the padded labels under "labels" whatever their key (a "label" key then fails)."""
    code = getattr(method, "__code__", None)
    return code is not None and "no_labels_features" not in code.co_varnames


def _token_classification_reason(
    collator: Any, features: Any, kind: str, older: bool
) -> str | None:
    tf = common.TF
    assert tf is not None
    if type(features) not in (list, tuple):
        return "input_type"
    if not features:
        return "empty_batch"
    if any(type(feature) not in (dict, tf.BatchEncoding) for feature in features):
        return "input_type"
    pad_id = collator.label_pad_token_id
    if type(pad_id) is not int:
        return "option"
    first = features[0]
    label_name = "label" if "label" in first else "labels"
    if older and label_name in first:
        main = collator.tokenizer.model_input_names[0]
        if label_name != "labels" or any(
            key not in (main, *_PADDED_KEYS, "labels") for key in first
        ):
            return "input_type"  # the older numpy_call raises, or casts other keys to int64
    if label_name in first:
        labels = [feature[label_name] for feature in features]
        if not (
            _core.exact_int_lists(labels)
            or all(is_int_vector(label, allow_tensor=kind == "pt") for label in labels)
        ):
            return "input_type"
    return None


def _token_classification(collator: Any, features: Any, kind: str, older: bool) -> Any:
    """`torch_call` / `numpy_call` with the labels packed by the core (checked inputs)."""
    tf = common.TF
    assert tf is not None
    # The original's steps, in its order: split the labels off, pad the rest with tokenizer.pad.
    label_name = "label" if "label" in features[0] else "labels"
    labels = [feature[label_name] for feature in features] if label_name in features[0] else None
    no_labels_features = [
        {key: value for key, value in feature.items() if key != label_name} for feature in features
    ]
    batch = tf.data_collator.pad_without_fast_tokenizer_warning(
        collator.tokenizer,
        no_labels_features,
        padding=collator.padding,
        max_length=collator.max_length,
        pad_to_multiple_of=collator.pad_to_multiple_of,
        return_tensors=kind,
    )
    if labels is None:
        return batch
    ids = batch["input_ids"]
    sequence_length = ids.shape[1] if kind == "pt" else np.array(ids).shape[1]
    side = "right" if collator.tokenizer.padding_side == "right" else "left"
    options = resolve_options(
        padding="max_length",
        max_length=int(sequence_length),
        padding_side=side,
        return_attention_mask=False,
        return_tensors=kind,
        pad_values={label_name: collator.label_pad_token_id},
        pin_memory=False,
        fields=[label_name],
    )
    # A label longer than the batch raises here (transformers then decides what it does).
    field = Field("rows", labels) if _core.exact_int_lists(labels) else vector_rows(labels)
    if field is None:
        raise TypeError("labels mix arrays and tensors")  # checked before: not reached
    padded = pad_inputs(
        Inputs(fields={label_name: field}, rows=len(labels)),
        options,
        allocate=allocator(kind),
    )
    if older:
        # The older numpy_call: the keys in the features' order (labels in place), then those
        # pad added; each value np.array(..., dtype=np.int64), in a plain dict.
        order = [*features[0], *(key for key in batch if key not in features[0])]
        return {
            key: padded[key] if key == label_name else np.array(batch[key], dtype=np.int64)
            for key in order
        }
    batch[label_name] = padded[label_name]
    return batch


def _fast_token_classification(
    collator: Any, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str, older: bool
) -> Any:
    """The result of ``torch_call`` / ``numpy_call``, or the fallback reason (a str)."""
    bound = bind(args, kwargs, ("features",), {})
    if bound is None:
        return "arguments"
    features = bound["features"]
    reason = _token_classification_reason(collator, features, kind, older)
    if reason is not None:
        return reason
    return _token_classification(collator, features, kind, older)


def wrap_token_classification(original: Callable[..., Any], kind: str) -> Callable[..., Any]:
    older = kind == "np" and _pads_labels_itself(original)
    fast = functools.partial(_fast_token_classification, kind=kind, older=older)
    return wrap_exact(original, TOKEN_CLASSIFICATION, fast)


# --------------------------------------------------------------------------------------------
# DataCollatorWithFlattening
# --------------------------------------------------------------------------------------------

_FLATTENING_KEYS = (
    ("_int_64_keys", {"labels", "position_ids", "input_ids"}),
    ("_batch_dim_keys", {"labels", "position_ids", "input_ids", "seq_idx"}),
    ("_py_int_keys", {"max_length_q", "max_length_k"}),
)


_FLATTENING_NAMES = ("features", "return_tensors", "separator_id")
_FLATTENING_DEFAULTS: dict[str, Any] = {"return_tensors": None, "separator_id": None}


@dataclass(frozen=True)
class FlatteningForm:
    """What a release's ``DataCollatorWithFlattening.__call__`` does, read from its code object
    (the fingerprints, then the matrix tool, validate the whole): whether it drops the examples
    without tokens (5.24; before, an empty example adds a separator label and no token), reads
    ``position_ids_start`` (5.15; before, positions start at 0), converts arrays and tensors
    with ``tolist()`` (5.0; before, it concatenates the rows with ``+``) and builds its tensors
    itself (4.52; before, through ``default_data_collator``, without flash-attention kwargs)."""

    drops_empty: bool
    position_ids_start: bool
    converts: bool
    # 4.44-4.51: no flash-attention kwargs or seq_idx; the lists go through
    # default_data_collator([batch]) (torch.tensor / np.array of each, in a plain dict).
    through_default_collator: bool
    # 4.44: no separator_id (-100, not a parameter of the call).
    separator: bool
    names: tuple[str, ...]  # the call's parameters after self


def _code_contents(code: Any) -> tuple[set[str], list[Any]]:
    """The names and constants of a code object and of those nested in it (comprehensions)."""
    names, constants = set(code.co_names), list(code.co_consts)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            inner_names, inner_constants = _code_contents(constant)
            names |= inner_names
            constants += inner_constants
    return names, constants


def flattening_form(method: Any) -> FlatteningForm:
    method = inspect.unwrap(method)
    names, constants = _code_contents(method.__code__)
    parameters = tuple(inspect.signature(method).parameters)[1:]
    if parameters[:1] != ("features",) or not set(parameters) <= set(_FLATTENING_NAMES):
        raise TypeError(f"DataCollatorWithFlattening.__call__{parameters}: not a validated form")
    return FlatteningForm(
        drops_empty=any(
            isinstance(constant, str) and "every example is empty" in constant
            for constant in constants
        ),
        position_ids_start="position_ids_start" in names,
        converts="tolist" in names,
        through_default_collator="default_data_collator" in names,
        separator="separator_id" in parameters,
        names=parameters,
    )


def _rows(column: list[Any], converts: bool) -> Any:
    """Lists of exact ints (transformers concatenates them with `+`), or 1-D integer
    arrays/tensors (where it calls `tolist()` on them), as `flatten` takes them; else None."""
    if _core.exact_int_lists(column):
        return column
    if converts and all(is_int_vector(row) for row in column):
        field = vector_rows(column)
        if field is not None:
            return field.data
    return None


def _flattening(
    collator: Any, features: Any, return_tensors: Any, separator_id: Any, form: FlatteningForm
) -> Any:
    """The collator's result, or the fallback reason (a str)."""
    tf = common.TF
    assert tf is not None
    if return_tensors is None:
        return_tensors = collator.return_tensors
    if separator_id is None:
        separator_id = collator.separator_id if form.separator else -100
    kind = return_tensors if type(return_tensors) is str else None
    if kind not in ("pt", "np"):
        return "return_tensors"
    if form.through_default_collator:
        flash, seq_idx = False, False
    else:
        flash, seq_idx = collator.return_flash_attn_kwargs, collator.return_seq_idx
    flags = (collator.return_position_ids, flash, seq_idx)
    start = collator.position_ids_start if form.position_ids_start else 0
    if (
        type(separator_id) is not int
        or type(start) is not int
        or any(flag is not True and flag is not False for flag in flags)
        or (
            not form.through_default_collator
            and any(getattr(collator, name, None) != keys for name, keys in _FLATTENING_KEYS)
        )
    ):
        return "option"
    if type(features) not in (list, tuple):
        return "input_type"
    if any(type(feature) not in (dict, tf.BatchEncoding) for feature in features):
        return "input_type"
    ids = [feature["input_ids"] for feature in features]
    if _rows(ids, form.converts) is None:
        return "input_type"
    # transformers drops the examples without tokens first, labels and all (5.24; before, an
    # empty example adds a label and no token: left to the original).
    kept = [feature for feature, row in zip(features, ids, strict=True) if len(row) > 0]
    if not kept:
        return "empty_batch"  # transformers raises its ValueError (or, before 5.24, pads none)
    if len(kept) < len(features) and not form.drops_empty:
        return "input_type"
    columns: dict[str, Any] = {
        "input_ids": _rows([feature["input_ids"] for feature in kept], form.converts)
    }
    if "labels" in kept[0]:
        columns["labels"] = _rows([feature["labels"] for feature in kept], form.converts)
        if columns["labels"] is None:
            return "input_type"
    batch = flatten(
        columns,
        return_position_ids=collator.return_position_ids,
        return_flash_attn_kwargs=flash,
        return_seq_idx=seq_idx,
        separator_id=separator_id,
        position_ids_start=start,
        return_tensors="pt" if kind == "pt" else "np",
    )
    # A plain dict of arrays that own their memory, as transformers builds them.
    result: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, int):
            result[key] = value
        elif kind == "np":
            result[key] = np.array(value)
        else:
            # torch.tensor's layout: [1, N] with strides (N, 1), fresh resizable storage.
            result[key] = value.clone(memory_format=sys.modules["torch"].contiguous_format)
    return result


def _fast_flattening(
    collator: Any, args: tuple[Any, ...], kwargs: dict[str, Any], form: FlatteningForm
) -> Any:
    """The result of the collator call, or the fallback reason (a str)."""
    defaults = {name: _FLATTENING_DEFAULTS[name] for name in form.names[1:]}
    bound = bind(args, kwargs, form.names, defaults)
    if bound is None:
        return "arguments"
    bound.setdefault("separator_id", None)
    return _flattening(collator, **bound, form=form)


def wrap_flattening(original: Callable[..., Any]) -> Callable[..., Any]:
    fast = functools.partial(_fast_flattening, form=flattening_form(original))
    return wrap_exact(original, FLATTENING, fast)
