"""The options of `fastpad.pad`, checked in one place for every entry point.

`resolve_options` declares the options with their defaults and checks them (filling defaults
from the tokenizer) into one `PadOptions`. `fastpad.pad`, `fastpad.reference.pad`, `Packer`,
`fastpad.ray.Collate` and the transformers patch all resolve their options here, so the padding
paths differ only in how they write the padded cells.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import os
import threading
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PAD_VALUES",
    "PAD_KEYWORDS",
    "PadOptions",
    "accelerator_available",
    "check_keywords",
    "require_torch",
    "resolve_options",
    "resolve_tokenizer",
]

# Pad values transformers uses for the fields it knows (`PreTrainedTokenizerBase._pad`).
DEFAULT_PAD_VALUES: dict[str, int] = {"special_tokens_mask": 1, "attention_mask": 0}
_MASK_DTYPES = ("bool", "int8", "int32", "int64")
_ID_DTYPES = ("int32", "int64")
_PADDING = {"longest": 0, "max_length": 1, "do_not_pad": 2}
# transformers' VERY_LARGE_INTEGER: a tokenizer without a real length limit.
_NO_LIMIT = int(1e29)

# The keyword arguments of `fastpad.pad`: the options `resolve_options` takes, and `threads`.
# Entry points that forward some of them check their keywords against (a subset of) these.
PAD_KEYWORDS = frozenset(
    {
        "tokenizer",
        "padding",
        "max_length",
        "truncation",
        "pad_to_multiple_of",
        "padding_side",
        "truncation_side",
        "return_attention_mask",
        "return_tensors",
        "pad_token_id",
        "pad_values",
        "dtype",
        "mask_dtype",
        "pin_memory",
        "threads",
    }
)


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
    # How rows that carry the tokenizer's special-token template (read when truncating with a
    # tokenizer) are cut, see _truncate.py: "longest_first", "only_first", "only_second" or
    # "do_not_truncate"; template None: every row is cut plainly.
    truncation: str = "do_not_truncate"
    template: Any = None


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
    """The name of a dtype given as a name ("int32", "torch.int32"), a numpy dtype or scalar
    type (``np.int32``), a torch dtype (``torch.int32``) or ``bool``."""
    if value is None:
        return "int64"
    text: str | None = None
    if isinstance(value, str):
        text = value.removeprefix("torch.")
    elif type(value).__module__ == "torch":  # torch.int32 and friends, without importing torch
        text = str(value).removeprefix("torch.")
    if text is None or text not in allowed:
        with contextlib.suppress(TypeError, ValueError):
            text = np.dtype(value if text is None else text).name
    if text not in allowed:
        shown = getattr(value, "__name__", None) if isinstance(value, type) else None
        raise ValueError(
            f"fastpad.pad: {name} must be one of {list(allowed)} (a name, a numpy or a torch "
            f"dtype), got {shown or repr(value)}"
        )
    return text


_TORCH_INSTALL = "pip install torch (or pip install 'fastpad[torch]')"


@functools.cache
def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch(owner: str, what: str = "return_tensors='pt' (the default)") -> None:
    """Raise a ModuleNotFoundError naming `owner` when torch is not installed.

    The message says that ``return_tensors='np'`` works without torch and how to install it.
    """
    if _torch_importable():
        return
    _torch_importable.cache_clear()  # torch may be installed later in this process
    raise ModuleNotFoundError(
        f"{owner}: {what} needs torch, which is not installed. Without torch, "
        f"return_tensors='np' gives numpy arrays (fastpad.pad(rows, pad_token_id=0, "
        f"return_tensors='np')); or install torch: {_TORCH_INSTALL}",
        name="torch",
    )


# Tokenizers loaded from a name or path, once per process and name.
_LOADED_TOKENIZERS: dict[str, Any] = {}
_LOADED_TOKENIZERS_LOCK = threading.Lock()


def resolve_tokenizer(tokenizer: Any, owner: str = "fastpad.pad") -> Any:
    """`tokenizer` itself, or the tokenizer a name or path loads (``AutoTokenizer``, once).

    None stays None. Anything else must look like a transformers tokenizer (``pad_token_id`` and
    ``model_input_names``): otherwise a TypeError naming `owner` and what was passed.
    """
    if tokenizer is None:
        return None
    if isinstance(tokenizer, str | os.PathLike):
        return _load_tokenizer(os.fspath(tokenizer), owner)
    if not (hasattr(tokenizer, "model_input_names") and hasattr(tokenizer, "pad_token_id")):
        raise TypeError(
            f"{owner}: tokenizer must be a transformers tokenizer (or its name or path, loaded "
            f"with AutoTokenizer.from_pretrained), got {type(tokenizer).__name__}"
        )
    return tokenizer


def _load_tokenizer(name: str, owner: str) -> Any:
    with _LOADED_TOKENIZERS_LOCK:
        loaded = _LOADED_TOKENIZERS.get(name)
        if loaded is not None:
            return loaded
        try:
            from transformers import AutoTokenizer
        except ImportError as error:
            raise ModuleNotFoundError(
                f"{owner}: tokenizer={name!r} is a name or path, and loading it needs "
                "transformers, which is not installed: pip install transformers (or pass the "
                "tokenizer object, or pad_token_id without a tokenizer)",
                name="transformers",
            ) from error
        try:
            loaded = AutoTokenizer.from_pretrained(name)
        except Exception as error:
            raise ValueError(
                f"{owner}: could not load tokenizer={name!r} with "
                f"AutoTokenizer.from_pretrained ({type(error).__name__}: {error})"
            ) from error
        _LOADED_TOKENIZERS[name] = loaded
        return loaded


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


def check_keywords(owner: str, given: Iterable[str], accepted: Collection[str]) -> None:
    """Raise a TypeError naming `owner` for the `given` keywords that are not `accepted`."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(
            f"{owner}: unexpected keyword argument(s) {unknown}; accepted pad options: "
            f"{sorted(accepted)}"
        )


# Resolved options of tokenizer-free calls, keyed by the (type, value) of every argument: a
# server calling `pad` with the same arguments skips the checks. The types keep `padding=1` from
# hitting the entry of `padding=True`. Only successful resolutions are stored.
_OPTIONS_CACHE: dict[tuple[Any, ...], PadOptions] = {}
_OPTIONS_CACHE_SIZE = 256


def _tokenizer_state(tokenizer: Any) -> tuple[Any, ...] | None:
    """What `resolve_options` reads from a transformers tokenizer, read without calling into it:
    ``(weak reference, pad token, padding_side, truncation_side, model_max_length,
    pad_token_type_id, model_input_names)``; None for anything else (a name or path, a
    tokenizer-like object, a transformers release that keeps these elsewhere), which is then
    resolved on every call.

    The pad token is read where transformers keeps it (5.x: ``_special_tokens_map["pad_token"]``,
    4.x: ``_pad_token``), not through ``pad_token_id`` (a lookup in the vocabulary, a dozen Python
    calls). Its id then follows from the token and the vocabulary; `resolve_options` caches only
    when the token is in the vocabulary, where adding tokens never changes its id.
    """
    try:
        state = tokenizer.__dict__
        if "_special_tokens_map" in state:
            special = state["_special_tokens_map"]
            pad_token = special["pad_token"] if "pad_token" in special else None  # noqa: SIM401
        elif "_pad_token" in state:
            pad_token = state["_pad_token"]
        else:
            return None
        if "_pad_token_type_id" not in state:
            return None
        names = tokenizer.model_input_names
        return (
            weakref.ref(tokenizer),
            pad_token,
            tokenizer.padding_side,
            tokenizer.truncation_side,
            tokenizer.model_max_length,
            state["_pad_token_type_id"],
            tuple(names) if type(names) is list else names,
        )
    except (AttributeError, TypeError):
        return None


def _pad_token_in_vocabulary(tokenizer: Any, state: tuple[Any, ...], options: PadOptions) -> bool:
    """Whether the tokenizer's pad id is its pad token's own entry in the vocabulary (or it has
    no pad token), so that the id cannot change while the token stays the same."""
    pad_token = state[1]
    if pad_token is None:
        return True
    pad_id = options.pad_values.get(options.main_key)
    try:
        return pad_id is not None and tokenizer.convert_ids_to_tokens(pad_id) == str(pad_token)
    except Exception:  # a tokenizer that cannot say: resolved on every call
        return False


def resolve_options(
    *,
    tokenizer: Any = None,
    padding: Any = True,
    max_length: Any = None,
    truncation: Any = False,
    pad_to_multiple_of: Any = None,
    padding_side: Any = None,
    truncation_side: Any = None,
    return_attention_mask: Any = None,
    return_tensors: Any = "pt",
    pad_token_id: Any = None,
    pad_values: Any = None,
    dtype: Any = None,
    mask_dtype: Any = None,
    pin_memory: Any = None,
    fields: Sequence[str],
) -> PadOptions:
    """Check every option of `fastpad.pad` and fill defaults from the tokenizer.

    The defaults are `fastpad.pad`'s; the arguments are typed Any because this is where they are
    checked. `fields` names the input's fields (the main one needs a pad id). Calls without
    `pad_values` are cached: without a tokenizer their result depends on the arguments alone
    (and on whether torch sees an accelerator, itself cached); with a transformers tokenizer, on
    the arguments and what is read from the tokenizer (`_tokenizer_state`), which is in the key.
    """
    key: tuple[Any, ...] | None = None
    tokenizer_state = None
    if pad_values is None and (
        tokenizer is None or (tokenizer_state := _tokenizer_state(tokenizer)) is not None
    ):
        # With a tokenizer, the key holds what is read from it (`_tokenizer_state`): a change
        # of its padding settings, pad token or input names is a new key.
        key = (
            type(padding), padding, type(max_length), max_length, type(truncation), truncation,
            type(pad_to_multiple_of), pad_to_multiple_of, padding_side, truncation_side,
            type(return_attention_mask), return_attention_mask, return_tensors,
            type(pad_token_id), pad_token_id, type(dtype), dtype, type(mask_dtype), mask_dtype,
            type(pin_memory), pin_memory, tokenizer_state, *fields,
        )  # fmt: skip
        try:
            cached = _OPTIONS_CACHE.get(key)
        except TypeError:  # an unhashable argument: resolve (and report) it the slow way
            key = None
        else:
            if cached is not None:
                return cached
    tokenizer = resolve_tokenizer(tokenizer)
    # Checked in this order, so that a call with several bad options always reports the same one.
    padding_code, length, strategy, multiple = _lengths(
        tokenizer, padding, max_length, truncation, pad_to_multiple_of
    )
    truncate = strategy != "do_not_truncate"
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
    main_key, values = _pad_values(tokenizer, pad_token_id, pad_values, fields)
    pin = _pin(pin_memory, return_tensors)
    options = PadOptions(
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
        truncation=strategy,
        template=_template(tokenizer) if truncate and tokenizer is not None else None,
    )
    if key is not None and (
        tokenizer_state is None or _pad_token_in_vocabulary(tokenizer, tokenizer_state, options)
    ):
        if len(_OPTIONS_CACHE) >= _OPTIONS_CACHE_SIZE:
            _OPTIONS_CACHE.clear()
        _OPTIONS_CACHE[key] = options
    return options


_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


def _template(tokenizer: Any) -> Any:
    """The tokenizer's special-token template (`fastpad._truncate`, imported when first used)."""
    from ._truncate import read_template

    return read_template(tokenizer)


def _lengths(
    tokenizer: Any, padding: Any, max_length: Any, truncation: Any, pad_to_multiple_of: Any
) -> tuple[int, int | None, str, int | None]:
    """Padding code, max_length (None: none), truncation strategy, pad_to_multiple_of."""
    if padding is True:
        padding_code = _PADDING["longest"]
    elif padding is False:
        padding_code = _PADDING["do_not_pad"]
    else:
        padding_code = _strategy(padding, "padding", _PADDING)
    if truncation is None or truncation is False:
        strategy = "do_not_truncate"
    elif truncation is True:
        strategy = "longest_first"
    else:
        strategy = _strategy(
            truncation,
            "truncation",
            {name: name for name in _TRUNCATION_STRATEGIES},
        )
    truncate = strategy != "do_not_truncate"
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
    return padding_code, length, strategy, multiple


def _pad_values(
    tokenizer: Any, pad_token_id: Any, pad_values: Any, fields: Sequence[str]
) -> tuple[str, dict[str, int]]:
    """The main field's name and the pad value of every field that has one."""
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
    return main_key, values


def _pin(pin_memory: Any, return_tensors: str) -> bool:
    """Whether the outputs are allocated in pinned memory."""
    if pin_memory is None:
        return return_tensors == "pt" and accelerator_available()
    if not pin_memory:
        return False
    if return_tensors != "pt":
        raise ValueError("fastpad.pad: pin_memory=True needs return_tensors='pt'")
    if not accelerator_available():
        raise RuntimeError(
            "fastpad.pad: pin_memory=True but torch sees no accelerator to pin memory for"
        )
    return True
