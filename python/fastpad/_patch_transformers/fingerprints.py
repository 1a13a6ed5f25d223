"""Which transformers functions each entry point reproduces, and the forms fastpad validated.

An entry point is patched only when the fingerprints (syntax trees without docstrings) of the
functions its fast path reproduces are, together, one of its validated forms (`validated.json`):
the source of a release on which benchmarks/transformers_matrix.py found the fast path exact.
A function unchanged across twenty releases is one form, not twenty; a new release is
validated by running the matrix tool on it, which adds its forms as data.
"""

from __future__ import annotations

from typing import Any

from .common import CALL, FLATTENING, PAD, SEQ2SEQ, TOKEN_CLASSIFICATION, Transformers

__all__ = [
    "ABSENT",
    "current",
    "dependencies",
    "fingerprint",
    "unrecognised",
    "validated",
    "validated_releases",
]


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
    (None where this transformers has no such function), named as `validated.json` names them.

    The two layout families differ: 4.x tokenizes through ``__call__`` -> ``_call_one`` ->
    ``batch_encode_plus`` -> ``PreTrainedTokenizerFast._batch_encode_plus`` and keeps the special
    tokens in ``SpecialTokensMixin`` properties; 5.x through ``TokenizersBackend._encode_plus``,
    its special tokens behind ``PreTrainedTokenizerBase.__getattr__``.
    """
    from transformers import tokenization_utils_base

    namespace = vars(tokenization_utils_base)

    def member(owner: Any, name: str) -> Any:
        return None if owner is None else getattr(owner, name, None)

    def getter(owner: Any, name: str) -> Any:
        value = None if owner is None else vars(owner).get(name)
        return value.fget if isinstance(value, property) else None

    base, encoding, backend = tf.base, tf.BatchEncoding, tf.backend
    backend_name = backend.__name__
    conversion = {
        "BatchEncoding.__init__": member(encoding, "__init__"),
        "BatchEncoding.convert_to_tensors": member(encoding, "convert_to_tensors"),
        "_is_empty": namespace.get("_is_empty"),
    }
    pad: dict[str, Any] = {
        "PreTrainedTokenizerBase.pad": member(base, "pad"),
        "PreTrainedTokenizerBase._pad": member(base, "_pad"),
        "PreTrainedTokenizerBase._get_padding_truncation_strategies": member(
            base, "_get_padding_truncation_strategies"
        ),
    }
    call: dict[str, Any] = {"PreTrainedTokenizerBase.__call__": member(base, "__call__")}
    if tf.family == 4:
        mixin = namespace.get("SpecialTokensMixin")
        for name in ("pad_token", "pad_token_id", "pad_token_type_id"):
            pad[f"SpecialTokensMixin.{name}"] = getter(mixin, name)
        pad["SpecialTokensMixin.__getattr__"] = (
            None if mixin is None else vars(mixin).get("__getattr__")
        )
        for name in ("_call_one", "batch_encode_plus"):
            call[f"PreTrainedTokenizerBase.{name}"] = member(base, name)
        call[f"{backend_name}._batch_encode_plus"] = member(backend, "_batch_encode_plus")
    else:
        pad["PreTrainedTokenizerBase.__getattr__"] = member(base, "__getattr__")
        call[f"{backend_name}._encode_plus"] = member(backend, "_encode_plus")
    call[f"{backend_name}._convert_encoding"] = member(backend, "_convert_encoding")
    pad["to_py_obj"] = namespace.get("to_py_obj")
    return {
        PAD: {**pad, **conversion},
        CALL: {**call, **conversion},
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
            # What the older collator (4.44-4.51) builds its tensors with.
            **{
                name: member(tf.data_collator, name)
                for name in _default_collators(member(tf.flattening, "__call__"))
            },
        },
        # (tokenizer.pad is called as the original calls it, patched or not: not a dependency.)
        SEQ2SEQ: {
            "DataCollatorForSeq2Seq.__call__": member(tf.seq2seq, "__call__"),
            "pad_without_fast_tokenizer_warning": member(
                tf.data_collator, "pad_without_fast_tokenizer_warning"
            ),
        },
    }


def _default_collators(call: Any) -> tuple[str, ...]:
    names = getattr(getattr(call, "__code__", None), "co_names", ())
    if "default_data_collator" not in names:
        return ()
    return ("default_data_collator", "torch_default_data_collator", "numpy_default_data_collator")


# What `current` records for a function this transformers does not have.
ABSENT = "absent"

# name -> (function, fingerprint): reading and parsing sources costs milliseconds; a function
# replaced since (by another patch) is fingerprinted afresh.
_FINGERPRINTS: dict[str, tuple[Any, str | None]] = {}


def current(entry: str, tf: Transformers) -> dict[str, str | None]:
    """The fingerprints of `entry`'s functions in this transformers: `ABSENT` for a function it
    does not have, None for one whose source cannot be read (or a wrapper): never validated."""
    found: dict[str, str | None] = {}
    for name, function in dependencies(tf)[entry].items():
        if function is None:
            found[name] = ABSENT
            continue
        cached = _FINGERPRINTS.get(name)
        if cached is None or cached[0] is not function:
            cached = (function, fingerprint(function))
            _FINGERPRINTS[name] = cached
        found[name] = cached[1]
    return found


# The validated forms (`validated.json`, written by benchmarks/transformers_matrix.py): per
# entry point, each distinct combination of its functions' fingerprints under which the fast
# path gave transformers' results, with the releases that have it. Loaded on first use.
_VALIDATED: dict[str, list[dict[str, Any]]] | None = None


def validated() -> dict[str, list[dict[str, Any]]]:
    """Per entry point, its validated forms: ``{"fingerprints": {name: fp}, "releases": [...]}``."""
    global _VALIDATED
    if _VALIDATED is None:
        import json
        from pathlib import Path

        data = json.loads((Path(__file__).parent / "validated.json").read_text())
        _VALIDATED = {entry: list(forms) for entry, forms in data["entry_points"].items()}
    return _VALIDATED


def validated_releases(entry: str | None = None) -> str:
    """The releases with a validated form (of `entry`, or of any entry point), for messages:
    "4.47.1, 5.0.0 .. 5.24.0" style, oldest and newest of each major line."""
    forms = validated()
    entries = [entry] if entry is not None else list(forms)
    releases = {
        release for name in entries for form in forms.get(name, []) for release in form["releases"]
    }
    if not releases:
        return "none"

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    spans = []
    for major in sorted({key(release)[:1] for release in releases}):
        line = sorted((r for r in releases if key(r)[:1] == major), key=key)
        spans.append(line[0] if len(line) == 1 else f"{line[0]} .. {line[-1]}")
    return ", ".join(spans)


def unrecognised(entry: str, tf: Transformers) -> list[str]:
    """Why `entry` is not one fastpad validated: the names of its functions whose source
    matches no validated release's, or the combination itself (each function validated, but
    not together); empty when this transformers' functions are one validated form."""
    found = current(entry, tf)
    forms = validated().get(entry, [])
    if any(form["fingerprints"] == found for form in forms):
        return []
    unknown = [
        name
        for name, value in found.items()
        if value is None or not any(form["fingerprints"].get(name) == value for form in forms)
    ]
    return unknown or [f"the combination of {', '.join(found)} (not validated together)"]
