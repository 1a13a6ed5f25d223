"""What every patched entry point shares: fallback reasons, statistics, transformers' objects.

`wrap_exact` is the wrapper of ``tokenizer.pad`` and the collators: a fast path that returns the
result or the reason to run transformers' original code, counted per entry point in `COUNTERS`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CALL",
    "COUNTERS",
    "ENTRY_POINTS",
    "FALLBACK_REASONS",
    "FLATTENING",
    "PAD",
    "SEQ2SEQ",
    "TF",
    "TOKEN_CLASSIFICATION",
    "PatchWarning",
    "Transformers",
    "load_transformers",
    "wrap_exact",
]


class PatchWarning(UserWarning):
    """An entry point of `patch_transformers` was left unpatched: its transformers functions match
    no validated form (an unrecognised release, or functions another library wrapped).

    Issued once per entry point, naming it and the functions that differ; transformers' own code
    then runs for that entry point. Public as ``fastpad.PatchWarning`` (also importable from
    ``fastpad._patch_transformers``, its earlier home). Silence it with
    ``warnings.filterwarnings("ignore", category=fastpad.PatchWarning)``.
    """


# Why a call ran transformers' original code; `patch_transformers.stats()` counts them.
FALLBACK_REASONS: dict[str, str] = {
    "arguments": "positional or keyword arguments the wrapper does not bind (unknown keywords, "
    "extra positionals, text_target, tokenizer_kwargs): transformers reports or handles them",
    "return_tensors": "return_tensors other than 'pt' / 'np' (None, 'tf', 'mlx', ...)",
    "padding": "no padding: padding=False / 'do_not_pad' in tokenizer.pad, or 'max_length' "
    "without a usable max_length; in DataCollatorForSeq2Seq, labels that are not lists with "
    "padding=False (transformers converts them through float64)",
    "option": "an option value outside the tested ones (non-int max_length or "
    "pad_to_multiple_of, padding_side not 'left'/'right', return_attention_mask or verbose not a "
    "bool, label_pad_token_id or separator_id not an int, a collator's internals changed, "
    "a collator's padding other than True/False/'longest'/'max_length'/'do_not_pad' or "
    "pad_to_multiple_of under 1, a form of DataCollatorForSeq2Seq.__call__ not reproduced)",
    "warning": "transformers warns or logs advice here (padding=True with max_length and "
    "verbose=True; on 4.x, the first pad of a ...Fast tokenizer, which logs its advice once)",
    "single_example": "one example, not a batch (transformers returns 1-D values)",
    "empty_batch": "no example at all",
    "no_tokens": "every row empty, so the padded tensors have no cells: their dtype differs "
    "between releases (float32 / float64 up to 4.56, int64 from 4.57), transformers converts them",
    "input_type": "inputs outside the allow-list: containers other than list/tuple of dict or "
    "BatchEncoding, non-str keys, rows that are not lists of exact ints or 1-D integer "
    "arrays/tensors, tuples, mappings of arrays (transformers converts them in place), "
    "per-example values that are not Python numbers; where a release's collator does "
    "something else with them: a 'label' key in DataCollatorForTokenClassification's older "
    "numpy_call (4.x, 5.0-5.15), empty examples or array rows in DataCollatorWithFlattening "
    "before 5.24 / 5.0; DataCollatorForSeq2Seq labels given as arrays or tensors with "
    "return_tensors='pt' (torch warns once per process there) or on 4.41, or under both "
    "'label' and 'labels'",
    "unpadded_field": "a field of rows transformers does not pad (it keeps them as they are) "
    "whose rows differ in length or are not lists of exact ints",
    "attention_mask_kept": "return_attention_mask=False with an attention_mask given "
    "(transformers keeps it unpadded)",
    "no_pad_token": "the tokenizer has no pad token (transformers raises)",
    "slow_tokenizer": "the tokenizer call of a tokenizer without the Rust backend",
    "overridden": "the tokenizer's class or instance overrides a method the fast path "
    "reproduces (_pad, _get_padding_truncation_strategies, _encode_plus, _convert_encoding; "
    "pad, for DataCollatorForSeq2Seq), or is not a PreTrainedTokenizerBase",
    "ragged": "the tokenizer call's lists are not rectangular rows of ints (padding=False on "
    "rows of different lengths): transformers' own conversion runs on them",
    "error": "the fast path raised (rows longer than max_length, fields of different lengths, "
    "values out of range, ...) or found labels of different lengths "
    "(DataCollatorForSeq2Seq): the original runs and raises or returns what it does",
}

# Entry points, as `stats()` names them.
PAD = "tokenizer.pad"
CALL = "tokenizer.__call__"
TOKEN_CLASSIFICATION = "DataCollatorForTokenClassification"
FLATTENING = "DataCollatorWithFlattening"
SEQ2SEQ = "DataCollatorForSeq2Seq"
ENTRY_POINTS = (PAD, CALL, TOKEN_CLASSIFICATION, FLATTENING, SEQ2SEQ)


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


COUNTERS = _Counters()


# --------------------------------------------------------------------------------------------
# transformers internals the fast paths reproduce
# --------------------------------------------------------------------------------------------


@dataclass
class Transformers:
    """The transformers objects the wrappers use, captured at patch time."""

    version: str
    family: int  # 4: PreTrainedTokenizerFast (tokenization_utils_fast); 5: TokenizersBackend
    BatchEncoding: Any
    TensorType: Any
    PaddingStrategy: Any
    base: Any  # PreTrainedTokenizerBase
    backend: Any  # the Rust-backed tokenizer class: TokenizersBackend, PreTrainedTokenizerFast
    data_collator: Any  # the transformers.data.data_collator module
    token_classification: Any
    flattening: Any  # None before DataCollatorWithFlattening existed
    seq2seq: Any  # DataCollatorForSeq2Seq


# Set by load_transformers (at patch time). The fast paths read it as `common.TF`: a wrapper is
# installed only after it is set.
TF: Transformers | None = None


def load_transformers() -> Transformers | None:
    """transformers' objects; None when its modules are not laid out as fastpad knows them."""
    global TF
    if TF is not None:
        return TF
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            "fastpad.patch_transformers needs transformers (pip install transformers)"
        ) from error
    try:
        from transformers import tokenization_utils_base
        from transformers.data import data_collator

        backend, family = _backend()
        namespace = vars(tokenization_utils_base)  # the objects its code uses
        TF = Transformers(
            version=str(transformers.__version__),
            family=family,
            BatchEncoding=namespace["BatchEncoding"],
            TensorType=namespace["TensorType"],
            PaddingStrategy=namespace["PaddingStrategy"],
            base=tokenization_utils_base.PreTrainedTokenizerBase,
            backend=backend,
            data_collator=data_collator,
            token_classification=data_collator.DataCollatorForTokenClassification,
            flattening=getattr(data_collator, "DataCollatorWithFlattening", None),
            seq2seq=data_collator.DataCollatorForSeq2Seq,
        )
    except (ImportError, AttributeError, KeyError):
        return None
    return TF


def _backend() -> tuple[Any, int]:
    """The Rust-backed tokenizer class and the layout family: 5.x's ``TokenizersBackend``
    (``tokenization_utils_tokenizers``), else 4.x's ``PreTrainedTokenizerFast``
    (``tokenization_utils_fast``)."""
    import importlib

    try:
        module = importlib.import_module("transformers.tokenization_utils_tokenizers")
    except ImportError:
        module = importlib.import_module("transformers.tokenization_utils_fast")
        return module.PreTrainedTokenizerFast, 4
    return module.TokenizersBackend, 5


def wrap_exact(
    original: Callable[..., Any],
    entry: str,
    fast: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any],
) -> Callable[..., Any]:
    """`original` behind a fast path, exact or not at all.

    ``fast(self, args, kwargs)`` returns the call's result, or the reason (a str of
    `FALLBACK_REASONS`) to run `original` unchanged instead; a fast path that raises runs it
    too (reason "error"). Every call is counted for `entry`.
    """

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fast(self, args, kwargs)
        except Exception:
            result = "error"
        if type(result) is str:
            COUNTERS.add(entry, result)
            return original(self, *args, **kwargs)
        COUNTERS.add(entry, "fast")
        return result

    return wrapper
