"""`fastpad.patch_transformers()`: transformers' own padding paths through fastpad, same results.

One call at start-up replaces four methods of transformers' classes with wrappers:

- ``PreTrainedTokenizerBase.pad`` (every tokenizer; ``DataCollatorWithPadding`` and the other
  collators that call ``tokenizer.pad`` benefit through it): the rows are packed by the C++ core
  instead of padded row by row in Python and converted by ``torch.tensor``.
- ``PreTrainedTokenizerBase.__call__`` with ``return_tensors="pt"``/``"np"`` on fast
  (``TokenizersBackend``) tokenizers: the original call runs with ``return_tensors=None`` (same
  tokenization, truncation, padding and ``encodings``), then the C++ core turns its rectangular
  lists of ids into the tensors; any other value is converted by transformers' own code.
- ``DataCollatorForTokenClassification.torch_call`` / ``numpy_call``: the labels are padded by the
  core.
- ``DataCollatorWithFlattening.__call__``: `fastpad.flatten`.

Exact or not at all: every wrapper first checks the call against an allow-list of argument values,
input types and tokenizer classes known to give the same result (type, keys and their order,
dtypes, shapes, values) as transformers. Anything else runs the original method unchanged, and so
does a call whose fast path raises: never a different result, never a new exception. Each entry
point is patched only when the transformers functions it reproduces are ones fastpad recognises
(their source, docstrings aside, equals that of a tested release); otherwise it warns once and
leaves that entry point alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._flatten import flatten
from ._inputs import Field, Inputs
from ._options import resolve_options
from ._pad import _alloc_np, _torch, pad_inputs
from ._ragged import Ragged

__all__ = [
    "FALLBACK_REASONS",
    "PatchWarning",
    "patch_transformers",
    "transformers_patched",
    "unpatch_transformers",
]


class PatchWarning(UserWarning):
    """An entry point of `patch_transformers` was left unpatched (unrecognised internals)."""


# Why a call ran transformers' original code; `patch_transformers.stats()` counts them.
FALLBACK_REASONS: dict[str, str] = {
    "arguments": "positional or keyword arguments the wrapper does not bind (unknown keywords, "
    "extra positionals, text_target, tokenizer_kwargs): transformers reports or handles them",
    "return_tensors": "return_tensors other than 'pt' / 'np' (None, 'tf', 'mlx', ...)",
    "padding": "no padding: padding=False / 'do_not_pad' in tokenizer.pad, or 'max_length' "
    "without a usable max_length",
    "option": "an option value outside the tested ones (non-int max_length or "
    "pad_to_multiple_of, padding_side not 'left'/'right', return_attention_mask or verbose not a "
    "bool, label_pad_token_id or separator_id not an int, a collator's internals changed)",
    "warning": "transformers warns here (padding=True with max_length and verbose=True)",
    "single_example": "one example, not a batch (transformers returns 1-D values)",
    "empty_batch": "no example at all",
    "input_type": "inputs outside the allow-list: containers other than list/tuple of dict or "
    "BatchEncoding, non-str keys, rows that are not lists of exact ints or 1-D integer "
    "arrays/tensors, tuples, mappings of arrays (transformers converts them in place), "
    "per-example values that are not Python numbers",
    "unpadded_field": "a field of rows transformers does not pad (it keeps them as they are) "
    "whose rows differ in length or are not lists of exact ints",
    "attention_mask_kept": "return_attention_mask=False with an attention_mask given "
    "(transformers keeps it unpadded)",
    "no_pad_token": "the tokenizer has no pad token (transformers raises)",
    "slow_tokenizer": "the tokenizer call of a tokenizer without the Rust backend",
    "overridden": "the tokenizer's class or instance overrides a method the fast path "
    "reproduces (_pad, _get_padding_truncation_strategies, _encode_plus, _convert_encoding)",
    "ragged": "the tokenizer call's lists are not rectangular rows of ints (padding=False on "
    "rows of different lengths): transformers' own conversion runs on them",
    "error": "the fast path raised (rows longer than max_length, fields of different lengths, "
    "values out of range, ...): the original runs and raises or returns what it does",
}

# Entry points, as `stats()` names them.
PAD = "tokenizer.pad"
CALL = "tokenizer.__call__"
TOKEN_CLASSIFICATION = "DataCollatorForTokenClassification"
FLATTENING = "DataCollatorWithFlattening"
ENTRY_POINTS = (PAD, CALL, TOKEN_CLASSIFICATION, FLATTENING)

# transformers' np.asarray of Python ints is int64 wherever numpy's default integer is.
_NUMPY_INT64 = np.asarray([1]).dtype == np.int64
# Fields `PreTrainedTokenizerBase._pad` pads besides the model's main input.
_PADDED_FIELDS = ("attention_mask", "token_type_ids", "special_tokens_mask")
_NUMBER_TYPES = (int, float, bool)
_PADDINGS = ("longest", "max_length")


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


class _Counters:
    """Fast-path and fallback counts per entry point; safe to update from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, entry: str, outcome: str) -> None:
        with self._lock:
            key = (entry, outcome)
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            counts = dict(self._counts)
        report: dict[str, dict[str, Any]] = {}
        for entry in ENTRY_POINTS:
            fallbacks = {
                outcome: count
                for (name, outcome), count in sorted(counts.items())
                if name == entry and outcome != "fast"
            }
            report[entry] = {
                "fast": counts.get((entry, "fast"), 0),
                "fallback": sum(fallbacks.values()),
                "reasons": fallbacks,
            }
        return report

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


_COUNTERS = _Counters()


# --------------------------------------------------------------------------------------------
# transformers internals the fast paths reproduce
# --------------------------------------------------------------------------------------------


@dataclass
class _Transformers:
    """The transformers objects the wrappers use, captured at patch time."""

    version: str
    BatchEncoding: Any
    TensorType: Any
    PaddingStrategy: Any
    base: Any  # PreTrainedTokenizerBase
    backend: Any  # TokenizersBackend
    data_collator: Any  # the transformers.data.data_collator module
    token_classification: Any
    flattening: Any


_TF: _Transformers | None = None


def _load() -> _Transformers | None:
    """transformers' objects; None when its modules are not laid out as fastpad knows them."""
    global _TF
    if _TF is not None:
        return _TF
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            "fastpad.patch_transformers needs transformers (pip install transformers)"
        ) from error
    try:
        from transformers import tokenization_utils_base, tokenization_utils_tokenizers
        from transformers.data import data_collator

        namespace = vars(tokenization_utils_base)  # the objects its code uses
        _TF = _Transformers(
            version=str(transformers.__version__),
            BatchEncoding=namespace["BatchEncoding"],
            TensorType=namespace["TensorType"],
            PaddingStrategy=namespace["PaddingStrategy"],
            base=tokenization_utils_base.PreTrainedTokenizerBase,
            backend=tokenization_utils_tokenizers.TokenizersBackend,
            data_collator=data_collator,
            token_classification=data_collator.DataCollatorForTokenClassification,
            flattening=data_collator.DataCollatorWithFlattening,
        )
    except (ImportError, AttributeError, KeyError):
        return None
    return _TF


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


def _dependencies(tf: _Transformers) -> dict[str, dict[str, Any]]:
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
    }.items()
}


# name -> (function, fingerprint): reading and parsing sources costs milliseconds; a function
# replaced since (by another patch) is fingerprinted afresh.
_FINGERPRINTS: dict[str, tuple[Any, str | None]] = {}


def _unrecognised(entry: str, tf: _Transformers) -> list[str]:
    """Names of the functions of `entry` whose source fastpad does not recognise."""
    unknown = []
    for name, function in _dependencies(tf)[entry].items():
        cached = _FINGERPRINTS.get(name)
        if cached is None or cached[0] is not function:
            cached = (function, fingerprint(function))
            _FINGERPRINTS[name] = cached
        if cached[1] not in KNOWN_FINGERPRINTS.get(name, frozenset()):
            unknown.append(name)
    return unknown


# --------------------------------------------------------------------------------------------
# Shared checks and conversions
# --------------------------------------------------------------------------------------------


def _tensor_kind(return_tensors: Any) -> str | None:
    """The kind ("pt" or "np") of the return_tensors values the fast paths produce, or None."""
    if type(return_tensors) is str:
        value = return_tensors
    else:
        assert _TF is not None
        if not isinstance(return_tensors, _TF.TensorType):
            return None
        value = return_tensors.value
    if value == "pt" or (value == "np" and _NUMPY_INT64):
        return value
    return None


_CTYPES = {"int64": ctypes.c_int64}


def _alloc_torch(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    """A fresh ``torch.empty`` tensor and a writable numpy view of its memory.

    The tensors are then indistinguishable from those of ``torch.tensor``: memory from torch's
    allocator in a resizable storage. (``Tensor.numpy()`` would mark the storage not resizable
    for good; numpy memory wrapped by torch is not resizable either.) The view borrows the
    memory without owning it: it is used only while the caller holds the tensor.
    """
    torch = _torch()
    tensor = torch.empty((rows, width), dtype=getattr(torch, dtype))
    cells = rows * width
    if cells == 0:
        return tensor, np.empty((rows, width), dtype=dtype)  # nothing is written
    memory = (_CTYPES[dtype] * cells).from_address(tensor.data_ptr())
    return tensor, np.frombuffer(memoryview(memory), dtype=dtype).reshape(rows, width)


def _allocator(kind: str) -> Callable[[int, int, str], tuple[Any, Any]]:
    return _alloc_np if kind == "np" else _alloc_torch


def _is_int_vector(row: Any, allow_tensor: bool = True) -> bool:
    """A 1-D integer (not bool) numpy array, or CPU torch tensor: `tolist()` gives exact ints."""
    kind = type(row)
    if kind is np.ndarray:
        return bool(row.ndim == 1 and row.dtype.kind in "iu")
    torch = sys.modules.get("torch")
    if allow_tensor and torch is not None and kind is torch.Tensor:
        return bool(
            row.ndim == 1
            and row.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
            and row.device.type == "cpu"
        )
    return False


def _vector_rows(column: Any) -> Field | None:
    """A field of 1-D integer arrays, or of tensors, for the core; None for a mix of both.

    Tensors are concatenated by torch first: the core would view each one through
    ``Tensor.numpy()``, which marks the caller's storage as no longer resizable.
    """
    if all(type(row) is np.ndarray for row in column):
        return Field("rows", column)
    torch = sys.modules["torch"]
    if not all(type(row) is torch.Tensor for row in column):
        return None
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum([row.shape[0] for row in column], out=offsets[1:])
    return Field("ragged", Ragged(torch.cat(column).numpy(), offsets))


def _rectangle(rows: Any, kind: str) -> Any | None:
    """``torch.tensor(rows)`` / ``np.asarray(rows)`` for a list of equal-length lists of exact
    ints (int64 [B, L]), written by the core; None for anything else."""
    if type(rows) is not list or not rows or not _core.exact_int_lists(rows):
        return None
    specs = [("rows", 0, rows)]
    try:
        # padding code 2 (do not pad): a ValueError when the rows differ in length.
        lengths, width = _core.measure(specs, 2, -1, False, 0)
    except ValueError:
        return None
    result, view = _allocator(kind)(len(rows), width, "int64")
    _core.pack(specs, [view], [0], lengths, None, width, -1, False, False, 1)
    return result


def _bind(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...], defaults: dict[str, Any]
) -> dict[str, Any] | None:
    """Arguments by name as the original signature binds them; None when it would not bind
    them all by itself (the original then runs and reports them)."""
    if len(args) > len(names):
        return None
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in bound or key not in defaults:
            return None
        bound[key] = value
    for key in names:
        if key not in bound:
            if key not in defaults:
                return None
            bound[key] = defaults[key]
    return bound


def _unchanged(tokenizer: Any, methods: dict[str, Any]) -> bool:
    """Neither the tokenizer's class nor the instance replaces any of `methods`."""
    kind = type(tokenizer)
    own = getattr(tokenizer, "__dict__", {})
    return all(
        getattr(kind, name, None) is function and name not in own
        for name, function in methods.items()
    )


def _strategy(value: Any) -> Any:
    """The string of a PaddingStrategy (a str enum), else the value itself."""
    assert _TF is not None
    return value.value if isinstance(value, _TF.PaddingStrategy) else value


def _is_option(value: Any, minimum: int) -> bool:
    return value is None or (type(value) is int and value >= minimum)


# --------------------------------------------------------------------------------------------
# tokenizer.pad
# --------------------------------------------------------------------------------------------

_PAD_NAMES = (
    "encoded_inputs",
    "padding",
    "max_length",
    "pad_to_multiple_of",
    "padding_side",
    "return_attention_mask",
    "return_tensors",
    "verbose",
)
_PAD_DEFAULTS: dict[str, Any] = {
    "padding": True,
    "max_length": None,
    "pad_to_multiple_of": None,
    "padding_side": None,
    "return_attention_mask": None,
    "return_tensors": None,
    "verbose": True,
}


def _has_pad_token(tokenizer: Any) -> bool:
    # Read without the `pad_token` attribute, which logs an error when the token is missing
    # (the original then logs it once, not twice).
    tokens = getattr(tokenizer, "__dict__", {}).get("_special_tokens_map")
    return isinstance(tokens, dict) and tokens.get("pad_token") is not None


def _fast_pad(tokenizer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The result of ``tokenizer.pad(*args, **kwargs)``, or the fallback reason (a str)."""
    tf = _TF
    assert tf is not None
    bound = _bind(args, kwargs, _PAD_NAMES, _PAD_DEFAULTS)
    if bound is None:
        return "arguments"
    kind = _tensor_kind(bound["return_tensors"])
    if kind is None:
        return "return_tensors"
    padding = bound["padding"]
    strategy = _strategy(padding)
    if padding is False or strategy == "do_not_pad":
        return "padding"
    max_length = bound["max_length"]
    multiple = bound["pad_to_multiple_of"]
    side = bound["padding_side"]
    mask = bound["return_attention_mask"]
    verbose = bound["verbose"]
    if (
        (padding is not True and (type(strategy) is not str or strategy not in _PADDINGS))
        or not _is_option(max_length, 0)
        or not _is_option(multiple, 1)
        or (side is not None and side not in ("left", "right"))
        or (side is not None and type(side) is not str)
        or (mask is not None and mask is not True and mask is not False)
        or (verbose is not True and verbose is not False)
    ):
        return "option"
    if padding is True and max_length is not None and verbose:
        return "warning"
    if not _unchanged(tokenizer, _PAD_METHODS):
        return "overridden"
    if not _has_pad_token(tokenizer):
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
    elif _is_int_vector(first):
        if mapping_input:
            return "input_type"  # transformers converts the caller's arrays in place
        arrays = True  # transformers converts every field with to_py_obj first
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
        if type(head) is list or (arrays and _is_int_vector(head)):
            if key not in padded:
                # Kept as they are: one tensor when all rows have one length (as transformers'
                # conversion then gives), else transformers' own result (or error).
                tensor = _rectangle(list(column), kind)
                if tensor is None:
                    return "unpadded_field"
                unpadded[key] = tensor
                continue
            if _core.exact_int_lists(column):
                field: Field | None = Field("rows", column)
            elif arrays and all(_is_int_vector(row) for row in column):
                field = _vector_rows(column)
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
    resolved = _strategy(resolved)
    if resolved not in ("longest", "max_length"):
        return "padding"
    options = resolve_options(
        tokenizer=tokenizer,
        padding=resolved,
        max_length=resolved_length if resolved == "max_length" else None,
        truncation=False,
        pad_to_multiple_of=multiple,
        padding_side=side,
        truncation_side=None,
        return_attention_mask=mask,
        return_tensors=kind,
        pad_token_id=None,
        pad_values=None,
        dtype=None,
        mask_dtype=None,
        pin_memory=False,
        fields=list(fields),
    )
    batch = pad_inputs(Inputs(fields=fields, rows=rows), options, allocate=_allocator(kind))
    if unpadded:
        # Input order, then the attention mask pad_inputs created (as transformers orders them).
        merged = {key: unpadded[key] if key in unpadded else batch[key] for key in columns}
        merged.update((key, value) for key, value in batch.items() if key not in merged)
        return tf.BatchEncoding(merged)
    return tf.BatchEncoding(dict(batch))


_PAD_METHODS: dict[str, Any] = {}


def _wrap_pad(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def pad(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = _fast_pad(self, args, kwargs)
        except Exception:
            result = "error"
        if type(result) is str:
            _COUNTERS.add(PAD, result)
            return original(self, *args, **kwargs)
        _COUNTERS.add(PAD, "fast")
        return result

    return pad


# --------------------------------------------------------------------------------------------
# The tokenizer call
# --------------------------------------------------------------------------------------------

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
_CALL_METHODS: dict[str, Any] = {}


def _call_reason(tokenizer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why ``tokenizer(*args, **kwargs)`` cannot take the fast path; None when it can."""
    tf = _TF
    assert tf is not None
    if _tensor_kind(kwargs.get("return_tensors")) is None:
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
    if not _unchanged(tokenizer, _CALL_METHODS):
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


def _wrap_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            reason = _call_reason(self, args, kwargs)
        except Exception:
            reason = "error"
        if reason is not None:
            _COUNTERS.add(CALL, reason)
            return original(self, *args, **kwargs)
        return_tensors = kwargs["return_tensors"]
        # The original call itself, without tensors: it reads return_tensors only to build its
        # final BatchEncoding, so everything before (tokenization, truncation, padding, the
        # backend's state, warnings, the encodings) is what the call with tensors does, and an
        # exception it raises is the one that call raises.
        try:
            encoding = original(self, *args, **{**kwargs, "return_tensors": None})
        except Exception:
            _COUNTERS.add(CALL, "error")
            raise
        tf = _TF
        assert tf is not None
        if type(encoding) is not tf.BatchEncoding:  # pragma: no cover - guarded by fingerprints
            _COUNTERS.add(CALL, "error")
            return original(self, *args, **kwargs)
        kind = _tensor_kind(return_tensors)
        assert kind is not None
        try:
            converted = {
                key: tensor
                for key, value in encoding.items()
                if (tensor := _rectangle(value, kind)) is not None
            }
        except Exception:
            converted = {}
        for key, tensor in converted.items():
            encoding[key] = tensor  # in place, keys keep their order
        if len(converted) < len(encoding):
            # Values the core does not convert (offsets, lengths, ragged rows): transformers'
            # own conversion, which skips the tensors already there.
            _COUNTERS.add(CALL, "fast" if converted else "ragged")
            return encoding.convert_to_tensors(tensor_type=return_tensors)
        _COUNTERS.add(CALL, "fast")
        return encoding

    return __call__


# --------------------------------------------------------------------------------------------
# DataCollatorForTokenClassification
# --------------------------------------------------------------------------------------------


def _token_classification_reason(collator: Any, features: Any, kind: str) -> str | None:
    tf = _TF
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
    if label_name in first:
        labels = [feature[label_name] for feature in features]
        if not (
            _core.exact_int_lists(labels)
            or all(_is_int_vector(label, allow_tensor=kind == "pt") for label in labels)
        ):
            return "input_type"
    return None


def _token_classification(collator: Any, features: Any, kind: str) -> Any:
    """`torch_call` / `numpy_call` with the labels packed by the core (checked inputs)."""
    tf = _TF
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
        tokenizer=None,
        padding="max_length",
        max_length=int(sequence_length),
        truncation=False,
        pad_to_multiple_of=None,
        padding_side=side,
        truncation_side=None,
        return_attention_mask=False,
        return_tensors=kind,
        pad_token_id=None,
        pad_values={label_name: collator.label_pad_token_id},
        dtype=None,
        mask_dtype=None,
        pin_memory=False,
        fields=[label_name],
    )
    # A label longer than the batch raises here (transformers then decides what it does).
    field = Field("rows", labels) if _core.exact_int_lists(labels) else _vector_rows(labels)
    if field is None:
        raise TypeError("labels mix arrays and tensors")  # checked before: not reached
    padded = pad_inputs(
        Inputs(fields={label_name: field}, rows=len(labels)),
        options,
        allocate=_allocator(kind),
    )
    batch[label_name] = padded[label_name]
    return batch


def _wrap_token_classification(original: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        result: Any = "arguments"
        try:
            bound = _bind(args, kwargs, ("features",), {})
            if bound is not None:
                features = bound["features"]
                result = _token_classification_reason(self, features, kind)
                if result is None:
                    result = _token_classification(self, features, kind)
        except Exception:
            result = "error"
        if type(result) is str:
            _COUNTERS.add(TOKEN_CLASSIFICATION, result)
            return original(self, *args, **kwargs)
        _COUNTERS.add(TOKEN_CLASSIFICATION, "fast")
        return result

    return call


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


def _rows(column: list[Any]) -> Any:
    """Lists of exact ints (transformers concatenates them with `+`), or 1-D integer
    arrays/tensors (it calls `tolist()` on them), as `flatten` takes them; else None."""
    if _core.exact_int_lists(column):
        return column
    if all(_is_int_vector(row) for row in column):
        field = _vector_rows(column)
        if field is not None:
            return field.data
    return None


def _flattening(collator: Any, features: Any, return_tensors: Any, separator_id: Any) -> Any:
    """The collator's result, or the fallback reason (a str)."""
    tf = _TF
    assert tf is not None
    if return_tensors is None:
        return_tensors = collator.return_tensors
    if separator_id is None:
        separator_id = collator.separator_id
    kind = return_tensors if type(return_tensors) is str else None
    if kind not in ("pt", "np"):
        return "return_tensors"
    flags = (
        collator.return_position_ids,
        collator.return_flash_attn_kwargs,
        collator.return_seq_idx,
    )
    if (
        type(separator_id) is not int
        or type(collator.position_ids_start) is not int
        or any(flag is not True and flag is not False for flag in flags)
        or any(getattr(collator, name, None) != keys for name, keys in _FLATTENING_KEYS)
    ):
        return "option"
    if type(features) not in (list, tuple):
        return "input_type"
    if any(type(feature) not in (dict, tf.BatchEncoding) for feature in features):
        return "input_type"
    ids = [feature["input_ids"] for feature in features]
    if _rows(ids) is None:
        return "input_type"
    # transformers drops the examples without tokens first, labels and all.
    kept = [feature for feature, row in zip(features, ids, strict=True) if len(row) > 0]
    if not kept:
        return "empty_batch"  # transformers raises its ValueError
    columns: dict[str, Any] = {"input_ids": _rows([feature["input_ids"] for feature in kept])}
    if "labels" in kept[0]:
        columns["labels"] = _rows([feature["labels"] for feature in kept])
        if columns["labels"] is None:
            return "input_type"
    batch = flatten(
        columns,
        return_position_ids=collator.return_position_ids,
        return_flash_attn_kwargs=collator.return_flash_attn_kwargs,
        return_seq_idx=collator.return_seq_idx,
        separator_id=separator_id,
        position_ids_start=collator.position_ids_start,
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


def _wrap_flattening(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        result: Any = "arguments"
        try:
            bound = _bind(args, kwargs, _FLATTENING_NAMES, _FLATTENING_DEFAULTS)
            if bound is not None:
                result = _flattening(self, **bound)
        except Exception:
            result = "error"
        if type(result) is str:
            _COUNTERS.add(FLATTENING, result)
            return original(self, *args, **kwargs)
        _COUNTERS.add(FLATTENING, "fast")
        return result

    return __call__


# --------------------------------------------------------------------------------------------
# Patching
# --------------------------------------------------------------------------------------------


@dataclass
class _Installed:
    owner: type
    name: str
    original: Any  # the owner's own attribute before patching
    wrapper: Any


_LOCK = threading.RLock()
_INSTALLED: dict[str, list[_Installed]] = {}
_WARNED: set[str] = set()
_GLOBAL = False  # patch_transformers() was called (and no unpatch_transformers() since)
_SCOPES = 0  # transformers_patched() blocks currently open


def _targets(entry: str, tf: _Transformers) -> list[tuple[type, str, Callable[[Any], Any]]]:
    if entry == PAD:
        return [(tf.base, "pad", _wrap_pad)]
    if entry == CALL:
        return [(tf.base, "__call__", _wrap_call)]
    if entry == TOKEN_CLASSIFICATION:
        return [
            (tf.token_classification, "torch_call", lambda f: _wrap_token_classification(f, "pt")),
            (tf.token_classification, "numpy_call", lambda f: _wrap_token_classification(f, "np")),
        ]
    return [(tf.flattening, "__call__", _wrap_flattening)]


def _warn_once(entry: str, message: str) -> None:
    if entry not in _WARNED:
        _WARNED.add(entry)
        warnings.warn(
            f"fastpad.patch_transformers: {entry} left unpatched: {message}",
            PatchWarning,
            stacklevel=4,
        )


def _install() -> dict[str, bool]:
    tf = _load()
    if tf is None:
        import transformers

        for entry in ENTRY_POINTS:
            _warn_once(
                entry,
                f"transformers {transformers.__version__} is not laid out as the versions "
                "fastpad was tested with (5.24.0)",
            )
        return dict.fromkeys(ENTRY_POINTS, False)
    status: dict[str, bool] = {}
    for entry in ENTRY_POINTS:
        if entry in _INSTALLED:
            status[entry] = True
            continue
        unknown = _unrecognised(entry, tf)
        if unknown:
            _warn_once(
                entry,
                f"transformers {tf.version}'s {', '.join(unknown)} differ from the versions "
                "fastpad was tested with (5.24.0)",
            )
            status[entry] = False
            continue
        # The methods a tokenizer must not override for the fast path (recognised: present).
        if entry == PAD and not _PAD_METHODS:
            for name in ("_pad", "_get_padding_truncation_strategies"):
                _PAD_METHODS[name] = tf.base.__dict__[name]
        if entry == CALL and not _CALL_METHODS:
            for name in ("_encode_plus", "_convert_encoding"):
                _CALL_METHODS[name] = tf.backend.__dict__[name]
        installed = []
        for owner, name, wrap in _targets(entry, tf):
            original = owner.__dict__[name]
            wrapper = wrap(original)
            setattr(owner, name, wrapper)
            installed.append(_Installed(owner, name, original, wrapper))
        _INSTALLED[entry] = installed
        status[entry] = True
    return status


def _uninstall() -> None:
    for entry in list(_INSTALLED):
        for item in _INSTALLED.pop(entry):
            # Restore only our own wrapper: a later patch by someone else stays in place.
            if item.owner.__dict__.get(item.name) is item.wrapper:
                setattr(item.owner, item.name, item.original)


class _PatchTransformers:
    """The `fastpad.patch_transformers` callable, with its statistics."""

    #: Why a call ran transformers' original code: reason -> explanation (as `stats` counts).
    REASONS = FALLBACK_REASONS

    def __call__(self) -> dict[str, bool]:
        """Route transformers' padding paths through fastpad, with the same results.

        Patches ``PreTrainedTokenizerBase.pad`` (so also ``DataCollatorWithPadding``), the
        tokenizer call with ``return_tensors="pt"``/``"np"``,
        ``DataCollatorForTokenClassification`` and ``DataCollatorWithFlattening``. Calls the
        fast paths do not reproduce exactly run transformers' original code. Idempotent and
        thread-safe; undone by `unpatch_transformers`.

        Returns
        -------
        dict of str to bool
            Per entry point, whether it is patched. An entry point whose transformers code
            fastpad does not recognise stays unpatched (with one `PatchWarning`).

        Raises
        ------
        ImportError
            transformers is not installed.

        Examples
        --------
        >>> import fastpad
        >>> fastpad.patch_transformers()  # doctest: +SKIP
        {'tokenizer.pad': True, 'tokenizer.__call__': True, ...}
        >>> fastpad.patch_transformers.stats()["tokenizer.pad"]  # doctest: +SKIP
        {'fast': 0, 'fallback': 0, 'reasons': {}}
        """
        global _GLOBAL
        with _LOCK:
            status = _install()
            _GLOBAL = True
            return status

    def stats(self) -> dict[str, dict[str, Any]]:
        """Calls that took the fast path and calls that fell back, by reason.

        Returns
        -------
        dict
            ``{entry point: {"fast": n, "fallback": n, "reasons": {reason: n}}}`` for
            ``tokenizer.pad``, ``tokenizer.__call__``, ``DataCollatorForTokenClassification``
            and ``DataCollatorWithFlattening``; the reasons are those of `FALLBACK_REASONS`.
        """
        return _COUNTERS.snapshot()

    def reset_stats(self) -> None:
        """Set every count of `stats` back to zero."""
        _COUNTERS.reset()

    def is_patched(self) -> dict[str, bool]:
        """Per entry point, whether it is patched now."""
        with _LOCK:
            return {entry: entry in _INSTALLED for entry in ENTRY_POINTS}


patch_transformers = _PatchTransformers()


def unpatch_transformers() -> None:
    """Restore every attribute `patch_transformers` replaced to its original object.

    Idempotent and thread-safe; also ends the effect of open `transformers_patched` blocks.
    Does nothing when transformers was never patched.
    """
    global _GLOBAL, _SCOPES
    with _LOCK:
        _GLOBAL = False
        _SCOPES = 0
        _uninstall()


@contextlib.contextmanager
def transformers_patched() -> Iterator[dict[str, bool]]:
    """Patch transformers for the duration of a ``with`` block.

    Blocks nest and may overlap across threads: transformers stays patched while any block is
    open or `patch_transformers` was called.

    Yields
    ------
    dict of str to bool
        Per entry point, whether it is patched (as `patch_transformers` returns).

    Examples
    --------
    >>> with fastpad.transformers_patched():  # doctest: +SKIP
    ...     batch = tokenizer.pad(features, return_tensors="pt")
    """
    global _SCOPES
    with _LOCK:
        status = _install()
        _SCOPES += 1
    try:
        yield status
    finally:
        with _LOCK:
            if _SCOPES > 0:
                _SCOPES -= 1
            if _SCOPES == 0 and not _GLOBAL:
                _uninstall()
