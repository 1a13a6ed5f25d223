"""`fastpad.pad`: ragged batches to padded tensors in one C++ pass."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from . import _core
from ._batch import Batch
from ._options import Field, Inputs, PadOptions, normalize_inputs, resolve_options

__all__ = ["Allocator", "default_threads", "pad", "pad_inputs"]

# allocate(rows, width, dtype_name) -> (result handed to the user, writable numpy view of it)
Allocator = Callable[[int, int, str], tuple[Any, Any]]

# Below this many output cells a second thread costs more than it saves.
_PARALLEL_CELLS = 1 << 20
_MAX_THREADS = 8


def default_threads() -> int:
    """Threads `pad` uses for large array/`Ragged` batches: the usable cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_THREADS))


def _missing_pad_value(key: str) -> ValueError:
    return ValueError(
        f"fastpad.pad: no pad value for field {key!r}; pass pad_values={{{key!r}: ...}} "
        "(e.g. -100 for labels)"
    )


def _core_fields(inputs: Inputs) -> list[tuple[str, Field, tuple[Any, ...]]]:
    specs = []
    for key, field in inputs.fields.items():
        if field.kind == "rows":
            specs.append((key, field, (key, 0, field.data)))
        elif field.kind == "ragged":
            specs.append((key, field, (key, 1, field.data.values, field.data.offsets)))
    return specs


def _allocator(options: PadOptions) -> Allocator:
    """Return ``alloc(rows, width, dtype_name) -> (result, writable numpy view)``."""
    if options.return_tensors == "np":

        def alloc_np(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
            array = np.empty((rows, width), dtype=dtype)
            return array, array

        return alloc_np
    import torch

    pin = options.pin_memory

    def alloc_pt(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
        tensor = torch.empty((rows, width), dtype=getattr(torch, dtype), pin_memory=pin)
        return tensor, tensor.numpy()

    return alloc_pt


def _stack_scalars(values: Any, options: PadOptions) -> Any:
    if options.return_tensors == "np":
        return np.asarray(values)
    import torch

    if hasattr(values, "detach"):
        return values
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    return torch.tensor(values)


def pad(
    encoded_inputs: Any,
    *,
    tokenizer: Any = None,
    padding: bool | str = True,
    max_length: int | None = None,
    truncation: bool | str = False,
    pad_to_multiple_of: int | None = None,
    padding_side: Literal["left", "right"] | None = None,
    truncation_side: Literal["left", "right"] | None = None,
    return_attention_mask: bool | None = None,
    return_tensors: Literal["pt", "np"] = "pt",
    pad_token_id: int | None = None,
    pad_values: Mapping[str, int] | None = None,
    dtype: Any = None,
    mask_dtype: Any = None,
    pin_memory: bool | None = None,
    threads: int | None = None,
) -> Batch:
    """Pad a ragged batch of token ids into rectangular tensors with an attention mask.

    A drop-in for ``tokenizer.pad(encoded_inputs, ..., return_tensors="pt")``: same keys, shapes,
    dtypes and values, written by one C++ pass straight into the output buffers.

    Parameters
    ----------
    encoded_inputs : list, Ragged, array, Mapping or list of Mapping
        A ragged batch (list/tuple of rows; a row is a list/tuple of ints, a 1-D integer numpy
        array or a 1-D integer tensor), one flat row of ints (a batch of one), a `Ragged`, a 2-D
        integer array, a Mapping of field name to any of those (a ``BatchEncoding``), or a list
        of per-example Mappings (what a DataLoader collator receives).
    tokenizer : transformers tokenizer, optional
        Supplies ``pad_token_id``, ``pad_token_type_id``, ``padding_side``, ``truncation_side``,
        ``model_input_names`` and ``model_max_length`` defaults.
    padding : bool or {"longest", "max_length", "do_not_pad"}, default True
        True/"longest" pads to the longest row, "max_length" to `max_length`, False requires rows
        of one length.
    max_length : int, optional
        Padding length for ``padding="max_length"`` and truncation length.
    truncation : bool, default False
        Cut rows longer than `max_length` (every field of a row the same way). Without it a row
        longer than `max_length` with ``padding="max_length"`` is a ValueError.
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this.
    padding_side, truncation_side : {"left", "right"}, optional
        Default: the tokenizer's, else "right". ``truncation_side="left"`` keeps the tail.
    return_attention_mask : bool, optional
        Default: whether the tokenizer's model takes one, else True. Built from the row lengths,
        never from ``ids == pad_token_id``.
    return_tensors : {"pt", "np"}, default "pt"
        Torch tensors or numpy arrays.
    pad_token_id : int, optional
        Pad id for ``input_ids``; required without a tokenizer.
    pad_values : Mapping[str, int], optional
        Pad values of other ragged fields, e.g. ``{"labels": -100}``.
    dtype : {"int64", "int32"} or torch/numpy dtype, optional
        Dtype of ids and other padded fields; default int64.
    mask_dtype : {"int64", "int32", "int8", "bool"} or dtype, optional
        Dtype of ``attention_mask``; default int64.
    pin_memory : bool, optional
        Allocate the outputs in pinned host memory. None: pin when an accelerator is available.
    threads : int, optional
        Threads for large array/`Ragged` batches (None: automatic, 1 for small batches).

    Returns
    -------
    Batch
        Dict of field name to ``[B, L]`` tensor (per-example scalar fields as ``[B]``).

    Raises
    ------
    TypeError
        Tokens that are not ints (None, str, float, bool), rows that are not sequences.
    ValueError
        Bad options, nesting too deep, fields of different lengths within a row, bad offsets,
        rows longer than `max_length` with ``padding="max_length"`` and no truncation.
    OverflowError
        A value that does not fit `dtype`.

    Examples
    --------
    >>> batch = pad([[101, 7592, 102], [101, 102]], pad_token_id=0, return_tensors="np")
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
    """
    inputs = normalize_inputs(encoded_inputs)
    options = resolve_options(
        tokenizer=tokenizer,
        padding=padding,
        max_length=max_length,
        truncation=truncation,
        pad_to_multiple_of=pad_to_multiple_of,
        padding_side=padding_side,
        truncation_side=truncation_side,
        return_attention_mask=return_attention_mask,
        return_tensors=return_tensors,
        pad_token_id=pad_token_id,
        pad_values=pad_values,
        dtype=dtype,
        mask_dtype=mask_dtype,
        pin_memory=pin_memory,
        fields=list(inputs.fields),
    )
    return pad_inputs(inputs, options, threads=threads)


def pad_inputs(
    inputs: Inputs,
    options: PadOptions,
    *,
    threads: int | None = None,
    allocate: Allocator | None = None,
) -> Batch:
    """Pad already-normalized inputs (the engine behind `pad`, reused by `Packer`).

    `allocate(rows, width, dtype_name)` returns ``(result, writable C-contiguous numpy view of
    the same memory)``; by default fresh tensors (pinned per `options`) or numpy arrays.
    """
    specs = _core_fields(inputs)
    if not specs:
        raise ValueError("fastpad.pad: no field with rows to pad (only per-example scalars)")
    for key, _field, _spec in specs:
        if key not in options.pad_values:
            raise _missing_pad_value(key)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"fastpad.pad: threads must be a positive int, got {threads!r}")
    lengths, width = _core.measure(
        [spec for _key, _field, spec in specs],
        options.padding,
        options.max_length,
        options.truncate,
        options.multiple_of,
    )
    rows = int(lengths.shape[0])
    _core.checked_cells(rows, width, 8)
    alloc = allocate if allocate is not None else _allocator(options)
    has_mask_field = "attention_mask" in inputs.fields
    outputs: dict[str, Any] = {}
    views = []
    for key, _field, _spec in specs:
        field_dtype = options.mask_dtype if key == "attention_mask" else options.dtype
        result, view = alloc(rows, width, field_dtype)
        outputs[key] = result
        views.append(view)
    mask_view = None
    mask_result = None
    if options.return_attention_mask and not has_mask_field:
        mask_result, mask_view = alloc(rows, width, options.mask_dtype)
    if threads is None:
        ragged = any(field.kind == "ragged" for _k, field, _s in specs)
        threads = default_threads() if ragged and rows * width >= _PARALLEL_CELLS else 1
    _core.pack(
        [spec for _key, _field, spec in specs],
        views,
        [options.pad_values[key] for key, _field, _spec in specs],
        lengths,
        mask_view,
        width,
        options.max_length if options.truncate else -1,
        options.pad_left,
        options.truncate_left,
        threads,
    )
    batch = Batch()
    for key, field in inputs.fields.items():
        if field.kind == "scalars":
            batch[key] = _stack_scalars(field.data, options)
        elif key == "attention_mask" and not options.return_attention_mask:
            continue
        else:
            batch[key] = outputs[key]
    if mask_result is not None:
        batch["attention_mask"] = mask_result
    return batch
