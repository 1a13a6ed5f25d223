"""The fast path of the tokenizer call with ``return_tensors="pt"``/``"np"`` (fast tokenizers)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import common
from .common import CALL, COUNTERS
from .convert import rectangle, tensor_kind, unchanged

__all__ = ["CALL_METHODS", "call_methods", "wrap_call"]

# Keywords of PreTrainedTokenizerBase.__call__ (and split_special_tokens, which it takes from
# **kwargs): the fast path hands them to the original call unchanged. Any other keyword falls
# back; so do text_target, text_pair_target and tokenizer_kwargs when not None.
_CALL_KEYWORDS = frozenset(
    {
        "text",
        "text_pair",
        "text_target",
        "text_pair_target",
        "add_special_tokens",
        "padding",
        "truncation",
        "max_length",
        "stride",
        "is_split_into_words",
        "pad_to_multiple_of",
        "padding_side",
        "return_tensors",
        "return_token_type_ids",
        "return_attention_mask",
        "return_overflowing_tokens",
        "return_special_tokens_mask",
        "return_offsets_mapping",
        "return_length",
        "verbose",
        "tokenizer_kwargs",
        "split_special_tokens",
    }
)
# The methods a tokenizer must not override for the fast path to run, as transformers defines
# them; filled by `install` when it patches (`call_methods`).
CALL_METHODS: dict[str, Any] = {}


def call_methods(tf: common.Transformers) -> dict[str, Any]:
    """The methods between the call and its final BatchEncoding, by layout family: an override
    of any of them could read return_tensors, which the fast path hands over as None."""
    if tf.family == 4:
        names = {"_call_one": tf.base, "batch_encode_plus": tf.base}
        names.update(dict.fromkeys(("_batch_encode_plus", "_convert_encoding"), tf.backend))
    else:
        names = dict.fromkeys(("_encode_plus", "_convert_encoding"), tf.backend)
    return {name: owner.__dict__[name] for name, owner in names.items()}


def _call_reason(tokenizer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why ``tokenizer(*args, **kwargs)`` cannot take the fast path; None when it can."""
    tf = common.TF
    assert tf is not None
    if tensor_kind(kwargs.get("return_tensors")) is None:
        return "return_tensors"
    if (
        len(args) > 2
        or not kwargs.keys() <= _CALL_KEYWORDS
        or ("text" in kwargs and args)
        or ("text_pair" in kwargs and len(args) > 1)
        or kwargs.get("text_target") is not None
        or kwargs.get("text_pair_target") is not None
        or kwargs.get("tokenizer_kwargs") is not None
    ):
        return "arguments"
    if not isinstance(tokenizer, tf.backend):
        return "slow_tokenizer"
    if not unchanged(tokenizer, CALL_METHODS):
        return "overridden"
    text: Any = args[0] if args else kwargs.get("text")
    # Batch detection exactly as TokenizersBackend._encode_plus does it.
    if kwargs.get("is_split_into_words", False):
        batched = isinstance(text, list | tuple) and text and isinstance(text[0], list | tuple)
    else:
        batched = isinstance(text, list | tuple)
    if not batched:
        return "single_example"
    if len(text) == 0:
        return "empty_batch"
    return None


def wrap_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            reason = _call_reason(self, args, kwargs)
        except Exception:
            reason = "error"
        if reason is not None:
            COUNTERS.add(CALL, reason)
            return original(self, *args, **kwargs)
        return_tensors = kwargs["return_tensors"]
        # The original call itself, without tensors: it reads return_tensors only to build its
        # final BatchEncoding, so everything before (tokenization, truncation, padding, the
        # backend's state, warnings, the encodings) is what the call with tensors does, and an
        # exception it raises is the one that call raises.
        try:
            encoding = original(self, *args, **{**kwargs, "return_tensors": None})
        except Exception:
            COUNTERS.add(CALL, "error")
            raise
        tf = common.TF
        assert tf is not None
        if type(encoding) is not tf.BatchEncoding:  # pragma: no cover - guarded by fingerprints
            COUNTERS.add(CALL, "error")
            return original(self, *args, **kwargs)
        kind = tensor_kind(return_tensors)
        assert kind is not None
        try:
            converted = {
                key: tensor
                for key, value in encoding.items()
                if (tensor := rectangle(value, kind)) is not None
            }
        except Exception:
            converted = {}
        for key, tensor in converted.items():
            encoding[key] = tensor  # in place, keys keep their order
        if len(converted) < len(encoding):
            # Values the core does not convert (offsets, lengths, ragged rows): transformers'
            # own conversion, which skips the tensors already there.
            COUNTERS.add(CALL, "fast" if converted else "ragged")
            return encoding.convert_to_tensors(tensor_type=return_tensors)
        COUNTERS.add(CALL, "fast")
        return encoding

    return __call__
