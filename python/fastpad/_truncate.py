"""Truncation as the tokenizer truncates: special tokens kept, segments cut per strategy.

A fast tokenizer called with ``truncation=..., max_length=...`` cuts the text segments before
its post-processor adds the special tokens: the budget is ``max_length`` minus the special tokens
of the template, and the strategy shares it between the segments (tokenizers'
``truncate_encodings``). `cut_template_rows` does the same to rows that already carry the
template, so that ``fastpad.pad(tokenizer(texts), tokenizer=tokenizer, truncation=True,
max_length=n)`` equals ``tokenizer(texts, truncation=True, max_length=n)``, every field of a row
(``token_type_ids``, ``special_tokens_mask``, ``attention_mask``, labels...) cut at the same
positions.

The template is read once per tokenizer from the tokenizer itself: one single and one pair call on
short texts, whose encodings say which positions are special tokens (``sequence_ids``) and with
which ids and type ids. A row longer than ``max_length`` carries the template when

- its ``input_ids`` start with the template's prefix tokens and end with its suffix tokens;
- for a pair, the template's middle tokens separate the segments: the first place (after the
  prefix, before the suffix) where they occur such that the row's ``token_type_ids``, when the
  row has them, equal the template's type ids at every position;
- its ``special_tokens_mask``, when the row has one, is 1 at every special position.

The pair template is tried first, then the single one. A template with no middle tokens and one
type id for both segments leaves no mark between them: such rows are taken as one segment (so is
a pair whose second text is empty under a template without middle tokens). Rows
that carry no template (``add_special_tokens=False``, no tokenizer, a tokenizer without a Rust
backend) are cut plainly at ``max_length`` from the truncation side by the C++ core, as before.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import Field, Inputs
from ._ragged import Ragged

__all__ = ["Layout", "Template", "cut_template_rows", "match_layout", "read_template"]


@dataclass(frozen=True)
class Layout:
    """Special tokens around one (single) or two (pair) segments, with their type ids."""

    prefix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    first_type: int
    middle: tuple[int, ...]
    middle_types: tuple[int, ...]
    second_type: int | None  # None: a single-segment layout
    suffix: tuple[int, ...]
    suffix_types: tuple[int, ...]

    @property
    def specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


@dataclass(frozen=True)
class Template:
    """The tokenizer's single and pair layouts (None: one the tokenizer does not make)."""

    single: Layout | None
    pair: Layout | None


# Texts tried, in order, until each segment of the template call has at least one token.
_PROBES = ("a", "hello", "the", "0", ".", "x")
_TEMPLATES: dict[int, tuple[Any, Template | None]] = {}
_TEMPLATES_LOCK = threading.Lock()


def read_template(tokenizer: Any) -> Template | None:
    """The special-token template of a fast tokenizer, read once per tokenizer object.

    None for a tokenizer without Rust encodings (``is_fast`` False) or whose output does not
    have the form ``prefix A suffix`` / ``prefix A middle B suffix``.
    """
    key = id(tokenizer)
    with _TEMPLATES_LOCK:
        cached = _TEMPLATES.get(key)
        if cached is not None and cached[0]() is tokenizer:
            return cached[1]
    template = _read_template(tokenizer)
    try:
        reference = weakref.ref(tokenizer, lambda _: _TEMPLATES.pop(key, None))
    except TypeError:  # not weakly referenceable: not cached
        return template
    with _TEMPLATES_LOCK:
        _TEMPLATES[key] = (reference, template)
    return template


def _read_template(tokenizer: Any) -> Template | None:
    if not getattr(tokenizer, "is_fast", False):
        return None
    single = pair = None
    for text in (*_PROBES, getattr(tokenizer, "unk_token", None)):
        if not isinstance(text, str):
            continue
        if single is None:
            single = _layout(_encoding(tokenizer, text, None), pair=False)
        if pair is None:
            pair = _layout(_encoding(tokenizer, text, text), pair=True)
        if single is not None and pair is not None:
            break
    if single is None and pair is None:
        return None
    return Template(single=single, pair=pair)


def _encoding(tokenizer: Any, text: str, pair: str | None) -> Any:
    try:
        with warnings.catch_warnings():  # the probe is fastpad's call, not the user's
            warnings.simplefilter("ignore")
            encoded = tokenizer(
                text, pair, add_special_tokens=True, truncation=False, padding=False
            )
        encodings = encoded.encodings
    except Exception:  # any failure of the probe call: no template from it
        return None
    return encodings[0] if encodings else None


def _layout(encoding: Any, pair: bool) -> Layout | None:
    """The layout of one encoding; None unless it is prefix, segment(s), suffix, each segment
    non-empty, contiguous and of one type id."""
    if encoding is None:
        return None
    ids = list(encoding.ids)
    types = list(encoding.type_ids)
    sequences = list(encoding.sequence_ids)
    runs: list[tuple[Any, int, int]] = []  # (sequence id, start, stop)
    for position, sequence in enumerate(sequences):
        if runs and runs[-1][0] == sequence:
            runs[-1] = (sequence, runs[-1][1], position + 1)
        else:
            runs.append((sequence, position, position + 1))
    segments = [run for run in runs if run[0] is not None]
    if [run[0] for run in segments] != ([0, 1] if pair else [0]):
        return None
    for _, start, stop in segments:
        if len(set(types[start:stop])) != 1:
            return None
    first = segments[0]
    last = segments[-1]
    middle = (first[2], segments[1][1]) if pair else (first[2], first[2])
    return Layout(
        prefix=tuple(ids[: first[1]]),
        prefix_types=tuple(types[: first[1]]),
        first_type=types[first[1]],
        middle=tuple(ids[middle[0] : middle[1]]),
        middle_types=tuple(types[middle[0] : middle[1]]),
        second_type=types[last[1]] if pair else None,
        suffix=tuple(ids[last[2] :]),
        suffix_types=tuple(types[last[2] :]),
    )


def _types_match(
    types: list[int] | None, layout: Layout, length: int, first: tuple[int, int], middle_at: int
) -> bool:
    """Whether `types` (None: no type ids) are the layout's at every position."""
    if types is None:
        return True
    low, high = len(layout.prefix), length - len(layout.suffix)
    if tuple(types[:low]) != layout.prefix_types or tuple(types[high:]) != layout.suffix_types:
        return False
    if types[first[0] : first[1]].count(layout.first_type) != first[1] - first[0]:
        return False
    if layout.second_type is None:
        return True
    second_start = middle_at + len(layout.middle)
    if tuple(types[middle_at:second_start]) != layout.middle_types:
        return False
    return types[second_start:high].count(layout.second_type) == high - second_start


def _mask_match(mask: list[int] | None, layout: Layout, length: int, middle_at: int) -> bool:
    if mask is None:
        return True
    low, high = len(layout.prefix), length - len(layout.suffix)
    special = [*mask[:low], *mask[middle_at : middle_at + len(layout.middle)], *mask[high:]]
    return special.count(1) == len(special)


def _occurrences(ids: list[int], tokens: tuple[int, ...], low: int, high: int) -> Any:
    """Positions in [low, high) where `tokens` start in `ids`, first to last."""
    expected = list(tokens)
    start = low
    while start < high:
        try:
            start = ids.index(tokens[0], start, high)
        except ValueError:
            return
        if ids[start : start + len(tokens)] == expected:
            yield start
        start += 1


def match_layout(
    ids: list[int], types: list[int] | None, mask: list[int] | None, layout: Layout
) -> tuple[tuple[int, int], tuple[int, int] | None] | None:
    """The segments ``(start, stop)`` of a row that carries `layout`, else None."""
    length = len(ids)
    low, high = len(layout.prefix), length - len(layout.suffix)
    if high < low or tuple(ids[:low]) != layout.prefix or tuple(ids[high:]) != layout.suffix:
        return None
    if layout.second_type is None:
        if _types_match(types, layout, length, (low, high), high) and _mask_match(
            mask, layout, length, high
        ):
            return (low, high), None
        return None
    width = len(layout.middle)
    if width:
        candidates: Any = _occurrences(ids, layout.middle, low, high - width + 1)
    elif types is not None and layout.first_type != layout.second_type:
        # No middle tokens: the second segment starts where the first segment's type id ends;
        # an empty second segment leaves no trace (the row reads as a single one).
        start = low
        while start < high and types[start] == layout.first_type:
            start += 1
        candidates = (start,) if start < high else ()
    else:
        return None  # nothing marks where the second segment starts
    for start in candidates:
        if _types_match(types, layout, length, (low, start), start) and _mask_match(
            mask, layout, length, start
        ):
            return (low, start), (start + width, high)
    return None


def _lengths(
    first: int, second: int | None, budget: int, strategy: str, row: int, max_length: int
) -> tuple[int, int]:
    """Tokens kept of each segment, as tokenizers' ``truncate_encodings`` keeps them."""
    pair = second is not None
    second_length = second or 0
    if budget == 0:
        return 0, 0
    to_remove = first + second_length - budget
    if to_remove <= 0:
        return first, second_length
    if strategy == "longest_first":
        if not pair:
            return budget, 0
        short, long = sorted((first, second_length))
        long = short if short > budget else max(short, budget - short)
        if short + long > budget:
            short = budget // 2
            long = short + budget % 2
        return (short, long) if first <= second_length else (long, short)
    if strategy == "only_second" and not pair:
        raise ValueError(
            f"fastpad.pad: row {row} has one segment, and truncation='only_second' cuts only "
            f"the second one of a pair (the tokenizer raises 'Second sequence not provided' for "
            f"{first + second_length} text tokens and max_length={max_length})"
        )
    target = first if strategy == "only_first" else second_length
    if target <= to_remove:
        raise ValueError(
            f"fastpad.pad: row {row}: truncation={strategy!r} must remove {to_remove} tokens "
            f"from the {'first' if strategy == 'only_first' else 'second'} segment, which has "
            f"{target} (the tokenizer raises 'Sequence to truncate too short to respect the "
            f"provided max_length'); use truncation='longest_first' or a larger max_length"
        )
    if strategy == "only_first":
        return first - to_remove, second_length
    return first, second_length - to_remove


def _valid(ragged: Ragged) -> bool:
    offsets = ragged.offsets
    return bool(
        offsets.size >= 1
        and offsets[0] == 0
        and np.all(offsets[1:] >= offsets[:-1])
        and offsets[-1] <= ragged.values.size
    )


def _as_list(row: Any) -> list[int] | None:
    if isinstance(row, list):
        return row
    if isinstance(row, tuple):
        return list(row)
    tolist = getattr(row, "tolist", None)
    if tolist is None or getattr(row, "ndim", 1) != 1:
        return None
    values = tolist()
    return values if isinstance(values, list) else None


def _field_row(field: Field, row: int) -> Any:
    if field.kind == "ragged":
        offsets = field.data.offsets
        return field.data.values[int(offsets[row]) : int(offsets[row + 1])]
    return field.data[row]


def _kept_ranges(
    ids: list[int],
    types: list[int] | None,
    mask: list[int] | None,
    template: Template | None,
    strategy: str,
    max_length: int,
    left: bool,
    row: int,
) -> list[tuple[int, int]] | None:
    """Position ranges of a long row that the tokenizer keeps; None: a plain cut (no template)."""
    found = None
    for layout in (template.pair, template.single) if template is not None else ():
        if layout is not None:
            segments = match_layout(ids, types, mask, layout)
            if segments is not None:
                found = layout, segments
                break
    if found is None:
        if strategy == "only_second":
            raise ValueError(
                f"fastpad.pad: row {row} does not carry the tokenizer's special-token template, "
                "so it has no second segment for truncation='only_second' to cut (rows without "
                "the template are cut as they are, which only the other strategies do)"
            )
        return None
    layout, (first, second) = found
    budget = max_length - layout.specials
    if budget < 0:
        raise ValueError(
            f"fastpad.pad: row {row}: max_length={max_length} is less than the "
            f"{layout.specials} special tokens of the tokenizer's template, which are always "
            "kept (the tokenizer leaves such a row uncut)"
        )
    first_kept, second_kept = _lengths(
        first[1] - first[0],
        None if second is None else second[1] - second[0],
        budget,
        strategy,
        row,
        max_length,
    )

    def segment(bounds: tuple[int, int], kept: int) -> tuple[int, int]:
        return (bounds[1] - kept, bounds[1]) if left else (bounds[0], bounds[0] + kept)

    ranges = [(0, first[0]), segment(first, first_kept)]
    if second is None:
        ranges.append((first[1], len(ids)))
    else:
        ranges += [(first[1], second[0]), segment(second, second_kept), (second[1], len(ids))]
    return [(start, stop) for start, stop in ranges if stop > start]


def cut_template_rows(inputs: Inputs, options: Any) -> Inputs:
    """`inputs` with every row longer than ``options.max_length`` cut as the tokenizer would.

    Rows that carry the tokenizer's template (``options.template``) keep their special tokens and
    lose segment tokens per ``options.truncation``; the others stay as they are for the C++
    core's plain cut (``truncation='only_second'`` raises for them). Rows whose fields disagree
    in length or whose ids are not a sequence are left for the core to report. Raises a
    ValueError naming the row where the tokenizer would raise.
    """
    main = inputs.fields.get(options.main_key)
    if main is None or main.kind == "scalars":
        return inputs
    max_length = options.max_length
    if any(field.kind == "ragged" and not _valid(field.data) for field in inputs.fields.values()):
        return inputs  # bad offsets: the core reports them
    if main.kind == "ragged":
        lengths = np.diff(main.data.offsets)
        long_rows = np.flatnonzero(lengths > max_length).tolist()
    else:
        try:
            lengths_list = list(map(len, main.data))
        except TypeError:  # a row that is not sized: the core reports it
            return inputs
        if not lengths_list or max(lengths_list) <= max_length:
            return inputs
        long_rows = [row for row, length in enumerate(lengths_list) if length > max_length]
    if not long_rows:
        return inputs
    padded = {key: field for key, field in inputs.fields.items() if field.kind != "scalars"}
    types_field = padded.get("token_type_ids")
    mask_field = padded.get("special_tokens_mask")
    cuts: dict[int, list[tuple[int, int]]] = {}
    for row in long_rows:
        rows = {key: _field_row(field, row) for key, field in padded.items()}
        try:
            sizes = {len(value) for value in rows.values()}
        except TypeError:
            continue
        if len(sizes) != 1:
            continue  # fields of different lengths: the core raises
        ids = _as_list(rows[options.main_key])
        if ids is None:
            continue
        types = None if types_field is None else _as_list(rows["token_type_ids"])
        mask = None if mask_field is None else _as_list(rows["special_tokens_mask"])
        ranges = _kept_ranges(
            ids,
            types,
            mask,
            options.template,
            options.truncation,
            max_length,
            options.truncate_left,
            row,
        )
        if ranges is not None:
            cuts[row] = ranges
    if not cuts:
        return inputs
    fields = dict(inputs.fields)
    for key, field in padded.items():
        fields[key] = _cut_field(field, cuts)
    return Inputs(fields=fields, rows=inputs.rows)


def _cut_row(row: Any, ranges: list[tuple[int, int]]) -> Any:
    if isinstance(row, list | tuple):
        kept: list[Any] = []
        for start, stop in ranges:
            kept += row[start:stop]
        return kept
    kept = [np.arange(start, stop, dtype=np.int64) for start, stop in ranges]
    return row[np.concatenate(kept or [np.zeros(0, np.int64)])]


def _cut_field(field: Field, cuts: dict[int, list[tuple[int, int]]]) -> Field:
    if field.kind == "rows":
        data = list(field.data)
        for row, row_ranges in cuts.items():
            data[row] = _cut_row(data[row], row_ranges)
        return Field("rows", data, field.from_array)
    offsets = field.data.offsets.astype(np.int64)
    pieces = []
    new_lengths = np.diff(offsets)
    for row in range(offsets.size - 1):
        ranges = cuts.get(row)
        if ranges is None:
            pieces.append(np.arange(offsets[row], offsets[row + 1]))
        else:
            kept = [np.arange(start, stop, dtype=np.int64) for start, stop in ranges]
            pieces.append(np.concatenate(kept or [np.zeros(0, np.int64)]) + offsets[row])
            new_lengths[row] = sum(b - a for a, b in ranges)
    index = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    new_offsets = np.zeros(offsets.size, dtype=np.int64)
    np.cumsum(new_lengths, out=new_offsets[1:])
    return Field("ragged", Ragged(field.data.values[index], new_offsets), field.from_array)
