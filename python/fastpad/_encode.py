"""`fastpad.encode`: ``tokenizer(text, padding=True, return_tensors="pt")`` with fastpad padding.

The tokenizer tokenizes (and truncates) without padding and without tensors, which is its fast
part; fastpad then pads every field and builds the attention mask in one C++ pass, skipping the
padded Python lists and their conversion to tensors.
"""

from __future__ import annotations

from typing import Any, Literal

from ._options import resolve_tokenizer
from ._pad import pad

__all__ = ["encode"]

# Tokenizer arguments whose outputs fastpad pads like the tokenizer does. Any other keyword
# (offsets, overflowing tokens, stride, lengths, targets) makes `encode` hand the whole call
# to the tokenizer: still the same result, only not faster.
_PASSED_TO_TOKENIZER = frozenset(
    {
        "add_special_tokens",
        "is_split_into_words",
        "return_token_type_ids",
        "return_special_tokens_mask",
        "verbose",
    }
)


def _tokenizer_padded(
    tokenizer: Any,
    text: Any,
    text_pair: Any,
    padding: Any,
    truncation: Any,
    max_length: Any,
    pad_to_multiple_of: Any,
    padding_side: Any,
    return_tensors: Any,
    kw: dict[str, Any],
) -> Any:
    if padding_side is not None:
        kw = {**kw, "padding_side": padding_side}
    return tokenizer(
        text,
        text_pair,
        padding=padding,
        truncation=truncation,
        max_length=max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        return_tensors=return_tensors,
        **kw,
    )


def encode(
    tokenizer: Any,
    text: Any,
    text_pair: Any = None,
    *,
    padding: bool | str = True,
    truncation: bool | str | None = None,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    padding_side: Literal["left", "right"] | None = None,
    return_tensors: Literal["pt", "np"] | None = "pt",
    **kw: Any,
) -> Any:
    """Tokenize and pad like ``tokenizer(text, text_pair, padding=..., return_tensors=...)``.

    The tokenizer runs without padding and returns lists; `fastpad.pad` writes the padded
    tensors. Keys, shapes, dtypes and values equal those of the tokenizer's own padded call
    (pairs, truncation, ``padding="max_length"``, ``pad_to_multiple_of`` and left padding
    included).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Any ``PreTrainedTokenizerBase`` (fast or slow) with a pad token.
    text : str, list of str, or list of list of str
        As for the tokenizer: one text, a batch, or pre-split words with
        ``is_split_into_words=True``.
    text_pair : same as `text`, optional
        Second sequences of pairs.
    padding : bool or {"longest", "max_length", "do_not_pad"}, default True
        As for the tokenizer.
    truncation : bool or str, optional
        Passed to the tokenizer (pair strategies such as ``"only_second"`` included).
    max_length : int, optional
        Truncation and ``"max_length"`` padding length; default the tokenizer's
        ``model_max_length`` where the tokenizer uses it.
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this.
    padding_side : str or None, default None
        ``"left"`` or ``"right"``; None: ``tokenizer.padding_side``.
    return_tensors : {"pt", "np"} or None, default "pt"
        ``None`` (padded Python lists) is handed to the tokenizer unchanged.
    **kw
        ``add_special_tokens``, ``is_split_into_words``, ``return_token_type_ids``,
        ``return_attention_mask``, ``return_special_tokens_mask`` and ``verbose`` are honoured.
        Any other keyword (``return_offsets_mapping``, ``return_overflowing_tokens``,
        ``stride``, ``return_length``, ...) hands the whole call to the tokenizer.

    Returns
    -------
    transformers.BatchEncoding
        The same keys in the same order as the tokenizer's padded call, holding torch tensors
        (or numpy arrays). It carries no ``encodings`` (no ``word_ids()``): ask the tokenizer
        itself for those.

    Raises
    ------
    ValueError
        As the tokenizer would: no pad token, ``padding=False`` on rows of different lengths,
        unknown strategies.

    Examples
    --------
    >>> batch = encode(tokenizer, ["Hello world.", "Hi."])  # doctest: +SKIP
    >>> batch["input_ids"].shape  # doctest: +SKIP
    torch.Size([2, 5])
    """
    if tokenizer is None:
        raise TypeError(
            "fastpad.encode: tokenizer is required (a transformers tokenizer, or its name or path)"
        )
    tokenizer = resolve_tokenizer(tokenizer, "fastpad.encode")
    return_attention_mask = kw.pop("return_attention_mask", None)
    if (
        return_tensors not in ("pt", "np")
        or any(key not in _PASSED_TO_TOKENIZER for key in kw)
        or (isinstance(text, list | tuple) and len(text) == 0)
    ):
        if return_attention_mask is not None:
            kw["return_attention_mask"] = return_attention_mask
        return _tokenizer_padded(
            tokenizer,
            text,
            text_pair,
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            padding_side,
            return_tensors,
            kw,
        )
    from transformers import BatchEncoding

    pads = padding not in (False, "do_not_pad") and getattr(padding, "value", None) != "do_not_pad"
    truncates = truncation not in (None, False, "do_not_truncate") and (
        getattr(truncation, "value", None) != "do_not_truncate"
    )
    if (
        pads
        and truncates
        and max_length is not None
        and pad_to_multiple_of is not None
        and max_length % pad_to_multiple_of != 0
    ):
        # The tokenizer refuses this combination; so does its drop-in.
        raise ValueError(
            f"fastpad.encode: truncation and padding are both activated but truncation length "
            f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
        )

    if return_attention_mask is None:
        return_attention_mask = "attention_mask" in tokenizer.model_input_names
    # The mask comes from the row lengths: asking the tokenizer for lists of ones would only
    # cost their unboxing. It is appended last, where the tokenizer puts it too.
    encoded = tokenizer(
        text,
        text_pair,
        padding=False,
        truncation=truncation,
        max_length=max_length,
        return_attention_mask=False,
        **kw,
    )
    batch = pad(
        dict(encoded),
        tokenizer=tokenizer,
        padding=padding,
        # The tokenizer has truncated already; its max_length only matters for "max_length" padding.
        max_length=max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        padding_side=padding_side,
        return_attention_mask=bool(return_attention_mask),
        return_tensors=return_tensors,
        pin_memory=False,
    )
    if "attention_mask" in batch and "special_tokens_mask" in batch:
        # The tokenizer lists attention_mask before special_tokens_mask.
        mask = batch.pop("attention_mask")
        ordered: dict[str, Any] = {}
        for key, value in batch.items():
            if key == "special_tokens_mask":
                ordered["attention_mask"] = mask
            ordered[key] = value
        return BatchEncoding(ordered)
    return BatchEncoding(dict(batch))
