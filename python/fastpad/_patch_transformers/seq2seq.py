"""The fast path of ``DataCollatorForSeq2Seq.__call__``: the labels packed by the C++ core.

transformers pads each example's ``labels`` in Python (``label + [label_pad_token_id] * n`` or
``np.concatenate``), converts them with ``torch.tensor`` / ``np.array`` and runs the rest through
``tokenizer.pad``. The fast path runs the same steps in the same order (``tokenizer.pad`` through
``pad_without_fast_tokenizer_warning`` exactly as the original calls it, patched or not, then the
model's ``prepare_decoder_input_ids_from_labels``), with the labels written by the core instead.

Every check runs and the labels are packed before ``tokenizer.pad`` is called: a call the fast
path does not reproduce falls back before anything of transformers' has run, so the original
then runs once, unchanged. Past that point the fast path does what the original does: an
exception raised by ``tokenizer.pad`` or by the model is raised as it is, not retried.

The wrapper takes transformers' objects from the original function's own module namespace (what
its code uses), not from `common.Transformers`: it works on every release whose
``__call__`` has one of the forms in `CALL_FORMS`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core
from .._inputs import Field, Inputs
from .._options import resolve_options
from .._pad import pad_inputs
from .common import COUNTERS, SEQ2SEQ
from .convert import allocator, bind, is_int_vector

__all__ = ["CALL_FORMS", "wrap_seq2seq"]

# The forms of ``DataCollatorForSeq2Seq.__call__`` the fast path reproduces, by fingerprint
# (which releases have them, and whether patch_transformers patches there: validated.json,
# written by benchmarks/transformers_matrix.py; 4.40's form pads the caller's features in
# place and lets tokenizer.pad convert them, another algorithm, left to the original):
# whether it reproduces labels given as arrays or tensors. 4.41 pads arrays with a Python list,
# which turns an unpadded int64 row into float64 before the int64 cast (values past 2**53
# change): only list labels take the fast path there. 4.42 .. 5.24 differ from each other only
# by `"label" in features[0].keys()` against `in features[0]` (alike on dicts and
# BatchEncodings) and a return_tensors="tf" branch (never taken: "pt" and "np" only).
CALL_FORMS: dict[str, bool] = {
    "31aacf29861837b1": False,
    "8614eb8c1f976fd9": True,
    "ec46ae46b600ca53": True,
    "b1e79b89c50f186f": True,
}

_NAMES = ("features", "return_tensors")
_DEFAULTS: dict[str, Any] = {"return_tensors": None}
_INT64 = (-(2**63), 2**63 - 1)


class _Raised(Exception):
    """An exception of transformers' own code (tokenizer.pad, the model), raised where the
    original raises it: the original is not run a second time."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


def _padding_mode(padding: Any, strategy: Any) -> str | None:
    """ "longest", "max_length" or "do_not_pad" as the original reads `padding`, else None."""
    if padding is True:
        return "longest"
    if padding is False:
        return "do_not_pad"
    if type(padding) is strategy:
        padding = padding.value
    elif type(padding) is not str:
        return None
    return padding if padding in ("longest", "max_length", "do_not_pad") else None


def _label_rows(labels: list[Any], kind: str, arrays: bool) -> Field | str:
    """The labels as a core field, or the fallback reason: lists of exact ints (when the first
    is a list, as the original decides), else 1-D integer arrays/tensors (when reproduced)."""
    if type(labels[0]) is list:
        return Field("rows", labels) if _core.exact_int_lists(labels) else "input_type"
    # torch.tensor of a list of arrays warns once per process ("extremely slow"): not
    # reproducible, so "pt" keeps the original. uint64 rows would go through float64.
    if not arrays or kind != "np":
        return "input_type"
    if not all(is_int_vector(row) and row.dtype != np.uint64 for row in labels):
        return "input_type"
    # np.concatenate views a tensor through Tensor.numpy(), which marks the caller's storage
    # as no longer resizable: np.asarray does the same.
    return Field("rows", [np.asarray(row) for row in labels])


def _width(lengths: list[int], target: int) -> int | None:
    """The labels' width after the original's padding to `target` (longer rows are kept as they
    are); None when the rows then differ in length (its tensor conversion raises)."""
    longest = max(lengths)
    if longest <= target:
        return target
    return longest if min(lengths) == longest else None


def _seq2seq(
    collator: Any, features: Any, return_tensors: Any, arrays: bool, namespace: dict[str, Any]
) -> Any:
    """The collator's result, or the fallback reason (a str)."""
    if return_tensors is None:
        return_tensors = collator.return_tensors
    kind = return_tensors if type(return_tensors) is str else None
    if kind not in ("pt", "np"):
        return "return_tensors"
    base = namespace["PreTrainedTokenizerBase"]
    encoding = vars(sys.modules[base.__module__])["BatchEncoding"]
    if type(features) not in (list, tuple):
        return "input_type"
    if not features:
        return "empty_batch"
    if any(type(feature) not in (dict, encoding) for feature in features):
        return "input_type"
    tokenizer = collator.tokenizer
    # Its pad returns a BatchEncoding, which the original then writes into.
    if not isinstance(tokenizer, base) or "pad" in getattr(tokenizer, "__dict__", {}):
        return "overridden"
    if getattr(type(tokenizer), "pad", None) is not base.pad:
        return "overridden"
    mode = _padding_mode(collator.padding, namespace["PaddingStrategy"])
    max_length = collator.max_length
    multiple = collator.pad_to_multiple_of
    pad_id = collator.label_pad_token_id
    side = tokenizer.padding_side
    if (
        mode is None
        or not (max_length is None or type(max_length) is int)
        or not (multiple is None or (type(multiple) is int and multiple >= 1))
        or type(pad_id) is not int
        or not _INT64[0] <= pad_id <= _INT64[1]
        or type(side) is not str
        or side not in ("left", "right")
    ):
        return "option"

    # The original's steps up to tokenizer.pad.
    label_name = "label" if "label" in features[0] else "labels"
    labels = [feature[label_name] for feature in features] if label_name in features[0] else None
    if labels is not None and all(label is None for label in labels):
        labels = None
    if label_name == "label" and any("labels" in feature for feature in features):
        return "input_type"  # tokenizer.pad would get (and convert) a "labels" key
    non_labels_features = [
        {key: value for key, value in feature.items() if key != label_name} for feature in features
    ]
    padded = None
    if labels is not None:
        field = _label_rows(labels, kind, arrays)
        if isinstance(field, str):
            return field
        lengths = [len(label) for label in labels]
        if mode == "do_not_pad":
            if type(labels[0]) is not list:
                return "padding"  # the original goes through float64 here
            width = _width(lengths, 0)
        else:
            target = max_length if mode == "max_length" and max_length is not None else None
            target = max(lengths) if target is None else target
            if multiple is not None:
                target = (target + multiple - 1) // multiple * multiple
            width = _width(lengths, target)
        if width is None:
            # Rows of different lengths: the original's conversion raises (np.array, and
            # torch.tensor unless the first row is empty: it then makes them all [n, 0]).
            return "error"
        options = resolve_options(
            padding="max_length",
            max_length=width,
            padding_side=side,
            return_attention_mask=False,
            return_tensors=kind,
            pad_values={"labels": pad_id},
            pin_memory=False,
            fields=["labels"],
        )
        # Values outside int64 raise here, where the original's conversion would raise.
        padded = pad_inputs(
            Inputs(fields={"labels": field}, rows=len(labels)), options, allocate=allocator(kind)
        )["labels"]

    # From here on, what the original does.
    try:
        batch = namespace["pad_without_fast_tokenizer_warning"](
            collator.tokenizer,
            non_labels_features,
            padding=collator.padding,
            max_length=collator.max_length,
            pad_to_multiple_of=collator.pad_to_multiple_of,
            return_tensors=return_tensors,
        )
        batch["labels"] = padded
        if (
            labels is not None
            and collator.model is not None
            and hasattr(collator.model, "prepare_decoder_input_ids_from_labels")
        ):
            decoder_input_ids = collator.model.prepare_decoder_input_ids_from_labels(
                labels=batch["labels"]
            )
            batch["decoder_input_ids"] = decoder_input_ids
    except Exception as error:
        raise _Raised(error) from None
    return batch


def _fast_seq2seq(
    collator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    arrays: bool,
    namespace: dict[str, Any],
) -> Any:
    """The result of the collator call, or the fallback reason (a str)."""
    bound = bind(args, kwargs, _NAMES, _DEFAULTS)
    if bound is None:
        return "arguments"
    return _seq2seq(collator, bound["features"], bound["return_tensors"], arrays, namespace)


def wrap_seq2seq(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` (``DataCollatorForSeq2Seq.__call__``) behind the fast path, exact or not at all.

    As `common.wrap_exact`, except that an exception of transformers' own code past the point
    where the fast path has committed to the original's steps is raised as it is (counted as a
    fast call): the original would raise it at the same step, with the same side effects so far.
    A form of the original not in `CALL_FORMS` runs the original on every call.
    """
    from .fingerprints import fingerprint

    form = CALL_FORMS.get(fingerprint(original) or "")
    fast = functools.partial(
        _fast_seq2seq, arrays=bool(form), namespace=getattr(original, "__globals__", {})
    )

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        raised: Exception | None = None
        if form is None:
            result: Any = "option"
        else:
            try:
                result = fast(self, args, kwargs)
            except _Raised as signal:
                raised, result = signal.error, None
            except Exception:
                result = "error"
        if type(result) is str:
            COUNTERS.add(SEQ2SEQ, result)
            return original(self, *args, **kwargs)
        COUNTERS.add(SEQ2SEQ, "fast")
        if raised is not None:
            raise raised
        return result

    return wrapper
