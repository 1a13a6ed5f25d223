"""`fastpad.windows`: long rows split into overlapping windows with a map back to the row."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _core
from ._batch import Batch
from ._flatten import concat_field
from ._inputs import normalize_inputs
from ._options import require_torch, resolve_tokenizer
from ._pad import pad
from ._ragged import Ragged

__all__ = ["window_bounds", "windows"]

# Fields of a tokenizer's output that windows rebuilds itself, so they are dropped from a Mapping.
_REBUILT = ("attention_mask", "token_type_ids")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"fastpad.windows: {name} must be an int, got {type(value).__name__}")
    return int(value)


def _tokens(value: Any, name: str) -> npt.NDArray[np.int64]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"fastpad.windows: {name} must be a sequence of token ids, got {type(value).__name__}"
        )
    tokens = list(value)
    for index, token in enumerate(tokens):
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise TypeError(
                f"fastpad.windows: {name}[{index}] is a {type(token).__name__}; expected an int"
            )
    return np.asarray(tokens, dtype=np.int64).reshape(-1)


def _content(window_length: int, overlap: int, head: Any, tail: Any) -> int:
    """Content tokens of a window, with `max_length` and `stride` checked against them."""
    content = int(window_length - head.size - tail.size)
    if content < 1:
        raise ValueError(
            f"fastpad.windows: max_length={window_length} leaves no room for content after "
            f"{head.size} prefix and {tail.size} suffix tokens"
        )
    if overlap < 0 or overlap >= content:
        raise ValueError(
            f"fastpad.windows: stride must be in [0, {content}) (the content tokens of a window: "
            f"max_length {window_length} - {head.size + tail.size} prefix/suffix tokens), "
            f"got {overlap}"
        )
    return content


def _template_ends(
    tokenizer: Any,
    values: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    row_starts: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """The tokenizer's single-text prefix and suffix when every row carries them (the rows of
    ``tokenizer(texts)``), None when no row does; a ValueError for a mix, for pair rows and for a
    template with non-zero type ids (windows writes all-zero token_type_ids)."""
    from ._truncate import match_layout, read_template  # imported when first needed

    template = read_template(tokenizer)
    layout = template.single if template is not None else None
    if layout is None or layout.specials == 0 or lengths.size == 0:
        return None
    prefix = np.asarray(layout.prefix, dtype=np.int64)
    suffix = np.asarray(layout.suffix, dtype=np.int64)
    carries = lengths >= prefix.size + suffix.size
    last = max(values.size - 1, 0)
    for index, token in enumerate(prefix):
        position = np.minimum(row_starts + index, last)
        carries &= values[position] == token if values.size else False
    for index, token in enumerate(suffix):
        position = np.clip(row_starts + lengths - suffix.size + index, 0, last)
        carries &= values[position] == token if values.size else False
    if not carries.any():
        return None
    if not carries.all():
        raise ValueError(
            f"fastpad.windows: row {int(np.argmin(carries))} does not carry the tokenizer's "
            f"special tokens (prefix {prefix.tolist()}, suffix {suffix.tolist()}) but row "
            f"{int(np.argmax(carries))} does; pass rows of one kind"
        )
    if any(layout.prefix_types) or any(layout.suffix_types) or layout.first_type:
        raise ValueError(
            "fastpad.windows: the tokenizer's template has non-zero token type ids; pass rows "
            "without special tokens (add_special_tokens=False) and prefix/suffix"
        )
    pair = template.pair if template is not None else None
    if pair is not None and pair.middle:
        for row in range(lengths.size):
            start = int(row_starts[row])
            ids = values[start : start + int(lengths[row])].tolist()
            if match_layout(ids, None, None, pair) is not None:
                raise ValueError(
                    f"fastpad.windows: row {row} carries the tokenizer's pair template; windows "
                    "splits single texts (pass the first and second texts' ids separately)"
                )
    return prefix, suffix


def window_bounds(
    lengths: npt.NDArray[np.int64], content: int, stride: int, from_left: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Windows of every row as ``(row, start, stop)`` arrays, in the order of the tokenizers crate.

    A row of ``L`` tokens gets one window when ``L <= content`` (an empty row included), else
    ``1 + ceil((L - content) / (content - stride))`` windows advancing by ``content - stride``;
    the last one ends at the row's end. `from_left` walks from the end of the row instead
    (``truncation_side="left"``).
    """
    step = content - stride
    extra = np.maximum(lengths - content, 0)
    counts = 1 + (extra + step - 1) // step
    rows = np.repeat(np.arange(lengths.size, dtype=np.int64), counts)
    first = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    index = np.arange(rows.size, dtype=np.int64) - first[rows]
    row_lengths = lengths[rows]
    if from_left:
        stop = row_lengths - index * step
        start = np.maximum(stop - content, 0)
    else:
        start = index * step
        stop = np.minimum(start + content, row_lengths)
    return rows, start, stop


def windows(
    sequences: Any,
    *,
    max_length: int,
    stride: int = 0,
    prefix: Sequence[int] = (),
    suffix: Sequence[int] = (),
    pad_token_id: int | None = None,
    tokenizer: Any = None,
    truncation_side: Literal["left", "right"] | None = None,
    return_token_type_ids: bool | None = None,
    **pad_kwargs: Any,
) -> Batch:
    """Split rows into padded windows of at most `max_length` tokens that overlap by `stride`.

    Every window is ``prefix + content + suffix`` with at most ``max_length - len(prefix) -
    len(suffix)`` content tokens; consecutive windows of one row share `stride` content tokens and
    the last window ends at the row's end. Fed a fast tokenizer's ids without special tokens and
    ``prefix=[cls], suffix=[sep]``, the result equals ``tokenizer(texts, max_length=...,
    truncation=True, stride=..., return_overflowing_tokens=True, padding=True)``.

    Rows that carry the tokenizer's special tokens (``tokenizer(texts)["input_ids"]``), given
    with `tokenizer` and without `prefix` / `suffix`, give the same windows: the tokenizer's
    single-text prefix and suffix (``[CLS]`` / ``[SEP]``, ``<s>`` / ``</s>``...) are taken off
    every row and put around every window. Every row must then carry them (a mix is a
    ValueError), and rows of text pairs are a ValueError (windows splits single texts). Rows
    without the template, or any row when `prefix` or `suffix` is given, are windowed as they
    are: special tokens inside them count as content.

    Parameters
    ----------
    sequences : list, Ragged, array or Mapping
        Rows of token ids in any form `fastpad.pad` accepts; from a Mapping only ``input_ids`` is
        read (``attention_mask`` / ``token_type_ids`` are rebuilt, other fields are an error).
    max_length : int
        Tokens per window, `prefix` and `suffix` included.
    stride : int, default 0
        Content tokens shared by consecutive windows of a row; ``0 <= stride < max_length -
        len(prefix) - len(suffix)``.
    prefix, suffix : sequence of int
        Tokens around every window's content, e.g. ``[tokenizer.cls_token_id]`` and
        ``[tokenizer.sep_token_id]``.
    pad_token_id : int, optional
        Pad id; default the tokenizer's.
    tokenizer : transformers tokenizer, optional
        Supplies pad ids, sides, and whether ``token_type_ids`` are returned.
    truncation_side : str or None, default None
        ``"left"`` or ``"right"``; None: the tokenizer's, else ``"right"``. ``"left"`` cuts
        windows from the end of each row backwards (as the tokenizers crate does).
    return_token_type_ids : bool, optional
        Add all-zero ``token_type_ids``; default: when the tokenizer's model takes them.
    **pad_kwargs
        Passed to `fastpad.pad` (``padding``, ``pad_to_multiple_of``, ``padding_side``,
        ``return_tensors``, ``dtype``, ``pin_memory``...).

    Returns
    -------
    Batch
        ``input_ids`` ``[W, L]`` (``token_type_ids``), ``attention_mask`` and
        ``overflow_to_sample_mapping`` ``[W]`` (int64): the row each window comes from.

    Raises
    ------
    ValueError
        ``stride < 0``, ``stride >=`` the content size of a window, `max_length` too small to hold
        `prefix`, `suffix` and one token; rows of which only some carry the tokenizer's special
        tokens, rows of text pairs (see above).

    Examples
    --------
    >>> batch = windows([[1, 2, 3, 4, 5]], max_length=5, stride=1, prefix=[101], suffix=[102],
    ...                 pad_token_id=0, return_tensors="np")
    >>> batch["input_ids"].tolist(), batch["overflow_to_sample_mapping"].tolist()
    ([[101, 1, 2, 3, 102], [101, 3, 4, 5, 102]], [0, 0])
    """
    tokenizer = resolve_tokenizer(tokenizer, "fastpad.windows")
    window_length = _int(max_length, "max_length")
    overlap = _int(stride, "stride")
    head = _tokens(prefix, "prefix")
    tail = _tokens(suffix, "suffix")
    content = _content(window_length, overlap, head, tail)
    side = truncation_side
    if side is None:
        side = getattr(tokenizer, "truncation_side", "right") if tokenizer is not None else "right"
    if side not in ("left", "right"):
        raise ValueError(
            f"fastpad.windows: truncation_side must be 'left' or 'right', got {side!r}"
        )
    for key in ("max_length", "truncation", "truncation_side"):
        if key in pad_kwargs:
            raise TypeError(f"fastpad.windows: {key!r} is set by windows itself, not a pad option")

    if isinstance(sequences, Mapping):
        extra = [key for key in sequences if key != "input_ids" and key not in _REBUILT]
        if extra:
            raise ValueError(
                f"fastpad.windows: only 'input_ids' is split into windows; drop {extra} first"
            )
        if "input_ids" not in sequences:
            raise TypeError("fastpad.windows: the mapping has no 'input_ids' field")
        sequences = {"input_ids": sequences["input_ids"]}
    inputs = normalize_inputs(sequences)
    if list(inputs.fields) != ["input_ids"]:
        raise ValueError(
            "fastpad.windows: only 'input_ids' is split into windows; got fields "
            f"{list(inputs.fields)}"
        )
    field = inputs.fields["input_ids"]
    if field.kind == "scalars":
        raise TypeError("fastpad.windows: expected rows of token ids, got one scalar per row")
    spec = (
        ("input_ids", 1, field.data.values, field.data.offsets)
        if field.kind == "ragged"
        else ("input_ids", 0, field.data)
    )
    lengths, _width = _core.measure([spec], 0, -1, False, 0)
    values = concat_field("input_ids", field, lengths)
    row_starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=row_starts[1:])
    if tokenizer is not None and head.size == 0 and tail.size == 0:
        # Rows of tokenizer(texts): their special tokens go around every window, as the
        # tokenizer's overflow puts them.
        ends = _template_ends(tokenizer, values, lengths, row_starts)
        if ends is not None:
            head, tail = ends
            content = _content(window_length, overlap, head, tail)
            row_starts = row_starts + head.size
            lengths = lengths - head.size - tail.size

    rows, start, stop = window_bounds(lengths, content, overlap, from_left=side == "left")
    content_lengths = stop - start
    window_lengths = content_lengths + head.size + tail.size
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(window_lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    window_starts = offsets[:-1]
    if head.size:
        out[window_starts[:, None] + np.arange(head.size)] = head
    if tail.size:
        tail_starts = window_starts + head.size + content_lengths
        out[tail_starts[:, None] + np.arange(tail.size)] = tail
    # Content: token t of window w is values[row_starts[row] + start + t].
    content_total = int(content_lengths.sum())
    content_first = np.zeros(rows.size, dtype=np.int64)
    np.cumsum(content_lengths[:-1], out=content_first[1:])
    within = np.arange(content_total, dtype=np.int64) - np.repeat(content_first, content_lengths)
    source = within + np.repeat(row_starts[rows] + start, content_lengths)
    target = within + np.repeat(window_starts + head.size, content_lengths)
    out[target] = values[source]

    batch_fields: dict[str, Any] = {"input_ids": Ragged(out, offsets)}
    if return_token_type_ids is None:
        names = getattr(tokenizer, "model_input_names", None) if tokenizer is not None else None
        return_token_type_ids = names is not None and "token_type_ids" in names
    if return_token_type_ids:
        batch_fields["token_type_ids"] = Ragged(np.zeros(out.size, dtype=np.int64), offsets)
    batch = pad(
        batch_fields,
        tokenizer=tokenizer,
        pad_token_id=pad_token_id,
        max_length=window_length,
        **pad_kwargs,
    )
    mapping: Any = rows
    if pad_kwargs.get("return_tensors", "pt") == "pt":
        require_torch("fastpad.windows")
        import torch

        mapping = torch.from_numpy(rows)
    batch["overflow_to_sample_mapping"] = mapping
    return batch
