"""Which transformers functions each entry point reproduces, and the versions fastpad recognises.

An entry point is patched only when every function its fast path reproduces has a fingerprint
(its syntax tree without the docstring) listed in `KNOWN_FINGERPRINTS`: the source of a tested
release.
"""

from __future__ import annotations

from typing import Any

from .common import CALL, FLATTENING, PAD, SEQ2SEQ, TOKEN_CLASSIFICATION, Transformers

__all__ = ["KNOWN_FINGERPRINTS", "dependencies", "fingerprint", "unrecognised"]


def fingerprint(function: Any) -> str | None:
    """A short hash of a function's syntax tree without its docstring; None without source.

    Two functions with the same fingerprint behave alike: only documentation, comments and
    formatting may differ. A wrapper (``__wrapped__``, as another library's patch would leave)
    has none: its source is not what runs.
    """
    if hasattr(function, "__wrapped__"):
        return None
    import ast  # imported here: `import fastpad` stays fast
    import hashlib
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(function))
        node = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:]
    text = ast.dump(node, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dependencies(tf: Transformers) -> dict[str, dict[str, Any]]:
    """Per entry point: the transformers functions whose behaviour its fast path reproduces
    (None where this transformers has no such function)."""
    from transformers import tokenization_utils_base

    namespace = vars(tokenization_utils_base)

    def member(owner: Any, name: str) -> Any:
        return getattr(owner, name, None)

    base, encoding = tf.base, tf.BatchEncoding
    conversion = {
        "BatchEncoding.__init__": member(encoding, "__init__"),
        "BatchEncoding.convert_to_tensors": member(encoding, "convert_to_tensors"),
        "_is_empty": namespace.get("_is_empty"),
    }
    return {
        PAD: {
            "PreTrainedTokenizerBase.pad": member(base, "pad"),
            "PreTrainedTokenizerBase._pad": member(base, "_pad"),
            "PreTrainedTokenizerBase._get_padding_truncation_strategies": member(
                base, "_get_padding_truncation_strategies"
            ),
            "PreTrainedTokenizerBase.__getattr__": member(base, "__getattr__"),
            "to_py_obj": namespace.get("to_py_obj"),
            **conversion,
        },
        CALL: {
            "PreTrainedTokenizerBase.__call__": member(base, "__call__"),
            "TokenizersBackend._encode_plus": member(tf.backend, "_encode_plus"),
            "TokenizersBackend._convert_encoding": member(tf.backend, "_convert_encoding"),
            **conversion,
        },
        TOKEN_CLASSIFICATION: {
            "DataCollatorForTokenClassification.torch_call": member(
                tf.token_classification, "torch_call"
            ),
            "DataCollatorForTokenClassification.numpy_call": member(
                tf.token_classification, "numpy_call"
            ),
            "pad_without_fast_tokenizer_warning": member(
                tf.data_collator, "pad_without_fast_tokenizer_warning"
            ),
        },
        FLATTENING: {
            "DataCollatorWithFlattening.__init__": member(tf.flattening, "__init__"),
            "DataCollatorWithFlattening.__call__": member(tf.flattening, "__call__"),
        },
        # (tokenizer.pad is called as the original calls it, patched or not: not a dependency.)
        SEQ2SEQ: {
            "DataCollatorForSeq2Seq.__call__": member(tf.seq2seq, "__call__"),
            "pad_without_fast_tokenizer_warning": member(
                tf.data_collator, "pad_without_fast_tokenizer_warning"
            ),
        },
    }


# Fingerprints of the functions above in the transformers releases the fast paths were tested
# against (5.24.0). A function whose fingerprint is not listed leaves its entry point unpatched.
# (5.23.0 differs in BatchEncoding.convert_to_tensors, which made empty rows float32 there.)
KNOWN_FINGERPRINTS: dict[str, frozenset[str]] = {
    name: frozenset({value})
    for name, value in {
        "PreTrainedTokenizerBase.pad": "117c99ee8dbe4e23",
        "PreTrainedTokenizerBase._pad": "ed1ce0a7da6b2e87",
        "PreTrainedTokenizerBase._get_padding_truncation_strategies": "c545b7d312994f81",
        "PreTrainedTokenizerBase.__getattr__": "31aeb5a50c47abea",
        "to_py_obj": "d866d624d705231b",
        "BatchEncoding.__init__": "f938dcb77c3f5492",
        "BatchEncoding.convert_to_tensors": "2c8199b671edf277",
        "_is_empty": "f5f1937a8836adbe",
        "PreTrainedTokenizerBase.__call__": "5aa115c59db9ae0b",
        "TokenizersBackend._encode_plus": "7b3eabf843962e23",
        "TokenizersBackend._convert_encoding": "ddfbdbdaffbbb351",
        "DataCollatorForTokenClassification.torch_call": "20c95ee11b930349",
        "DataCollatorForTokenClassification.numpy_call": "271d5e25fd02cc7d",
        "pad_without_fast_tokenizer_warning": "0d0569be47bc353e",
        "DataCollatorWithFlattening.__init__": "6ba66831c93731df",
        "DataCollatorWithFlattening.__call__": "9458742dac36c425",
        # The same from 5.0; other releases' forms: seq2seq.SEQ2SEQ_FINGERPRINTS.
        "DataCollatorForSeq2Seq.__call__": "b1e79b89c50f186f",
    }.items()
}


# name -> (function, fingerprint): reading and parsing sources costs milliseconds; a function
# replaced since (by another patch) is fingerprinted afresh.
_FINGERPRINTS: dict[str, tuple[Any, str | None]] = {}


def unrecognised(entry: str, tf: Transformers) -> list[str]:
    """Names of the functions of `entry` whose source fastpad does not recognise."""
    unknown = []
    for name, function in dependencies(tf)[entry].items():
        cached = _FINGERPRINTS.get(name)
        if cached is None or cached[0] is not function:
            cached = (function, fingerprint(function))
            _FINGERPRINTS[name] = cached
        if cached[1] not in KNOWN_FINGERPRINTS.get(name, frozenset()):
            unknown.append(name)
    return unknown
