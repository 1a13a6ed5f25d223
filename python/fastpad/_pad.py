"""`fastpad.pad`: ragged batches to padded tensors in one C++ pass."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from . import _cache, _core
from ._batch import Batch
from ._inputs import Inputs, normalize_inputs
from ._options import PadOptions, require_torch, resolve_options
from ._scalars import python_scalars, stack_scalars

__all__ = ["Allocator", "default_threads", "pad", "pad_inputs"]

# allocate(rows, width, dtype_name) -> (result handed to the user, writable numpy view of it)
Allocator = Callable[[int, int, str], tuple[Any, Any]]

# Output cells each thread of the default gets at least: below 2 * this, one thread. (Before, the
# default split every batch from 2**20 cells over all cores; the docs' earlier 1.20x-1.63x for 2
# threads at B=4096, 0.4M-2M cells, came from a quiet 2-core VM.) On the shared 2-core VM of
# benchmarks/bench_threads.py (load 7-9), two threads were mostly slower than one at every size
# from 17K to 8.4M cells, hence the load check in default_threads.
_CELLS_PER_THREAD = 1 << 20
_MAX_THREADS = 8
# Batches of at least this many cells are checked against physical memory before allocation
# (MemoryError naming the size, not an allocator's RuntimeError); smaller ones fit any machine.
_SAFE_CELLS = 1 << 22
# Outputs below this many cells are allocated by numpy and wrapped by torch (see pad_inputs).
_SMALL_CELLS = 1 << 17
# Unpinned outputs of at least this many cells come from the output cache while it is on
# (_cache.py): warm memory instead of pages faulted in afresh on every call.
_CACHE_CELLS = _cache.MIN_CELLS
# Calls that leave every option but return_tensors and pad_token_id at its default with a plain
# list of list rows (one `input_ids` field) and a valid or no threads argument, keyed by
# (return_tensors, type(pad_token_id), pad_token_id): the options, the option arguments of
# _core.measure and _core.pack, [pad value], the ids and mask numpy types (mask: None without
# one) and torch.from_numpy (None: numpy output or pinned).
_LIST_ROWS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
# np.empty takes a scalar type faster than a dtype name.
_NUMPY_TYPES: dict[str, Any] = {
    "bool": np.bool_,
    "int8": np.int8,
    "int32": np.int32,
    "int64": np.int64,
}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(cells: int | None = None) -> int:
    """Threads `pad` uses by default for an array/`Ragged` batch.

    Parameters
    ----------
    cells : int, optional
        Output cells of the batch (rows x padded width). None: the upper bound, the usable cores
        (at most 8).

    Returns
    -------
    int
        With `cells`: one thread per ``2**20`` cells (one below ``2**21``), no more than the
        usable cores (at most 8) and no more than the cores the load average leaves idle plus
        the calling one. On a busy machine a second thread waits for a core and the batch then
        takes longer than on one thread (measured: ``benchmarks/bench_threads.py``).
    """
    cores = max(1, min(_usable_cores(), _MAX_THREADS))
    if cells is None:
        return cores
    threads = min(cores, cells // _CELLS_PER_THREAD)
    if threads <= 1:
        return 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): trust the cores
        return threads
    # The load counts the machine's running tasks, the calling thread among them when busy.
    idle = int((os.cpu_count() or 1) - load)
    return max(1, min(threads, idle + 1))


def _missing_pad_value(key: str) -> ValueError:
    return ValueError(
        f"fastpad.pad: no pad value for field {key!r}; pass pad_values={{{key!r}: ...}} "
        "(e.g. -100 for labels)"
    )


def _alloc_np(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    if _cache.enabled and rows * width >= _CACHE_CELLS:
        array = _core.cached_empty(rows, width, _cache.DTYPES[dtype])
    else:
        array = np.empty((rows, width), _NUMPY_TYPES[dtype])
    return array, array


def _alloc_pt(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    torch = _torch()
    cells = rows * width
    if _cache.enabled and cells >= _CACHE_CELLS:
        # The tensor shares the array's cached block and keeps it alive (see _cache.py).
        array = _core.cached_empty(rows, width, _cache.DTYPES[dtype])
        return torch.from_numpy(array), array
    if cells < _SMALL_CELLS:
        array = np.empty((rows, width), _NUMPY_TYPES[dtype])
        return torch.from_numpy(array), array
    tensor = torch.empty((rows, width), dtype=getattr(torch, dtype))
    return tensor, tensor.numpy()


def _alloc_pinned(rows: int, width: int, dtype: str) -> tuple[Any, Any]:
    torch = _torch()
    tensor = torch.empty((rows, width), dtype=getattr(torch, dtype), pin_memory=True)
    return tensor, tensor.numpy()


@functools.cache
def _torch() -> Any:
    # Checked here, where torch is first needed: every argument error is reported before it.
    require_torch("fastpad.pad")
    import torch

    return torch


def _allocator(options: PadOptions) -> Allocator:
    """Return ``alloc(rows, width, dtype_name) -> (result, writable numpy view)``."""
    if options.return_tensors == "np":
        return _alloc_np
    return _alloc_pinned if options.pin_memory else _alloc_pt


def _stack_scalars(key: str, values: Any, options: PadOptions, inputs: Inputs) -> Any:
    """Per-example scalars as transformers' pad stacks them (see `stack_scalars`)."""
    return stack_scalars(
        key, values, options.return_tensors, python_scalars(inputs, options.main_key)
    )


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
    truncation : bool or {"longest_first", "only_first", "only_second"}, default False
        Cut rows longer than `max_length`, every field of a row at the same positions. Rows that
        carry the `tokenizer`'s special-token template (``tokenizer(texts[, pairs])``) are cut as
        ``tokenizer(..., truncation=..., max_length=...)`` cuts them: special tokens kept, the
        segments trimmed per strategy (True is "longest_first"); a ValueError naming the row
        where the tokenizer raises. Other rows (``add_special_tokens=False``, no tokenizer) are
        cut as they are ("only_second" is a ValueError for them). Without truncation a row
        longer than `max_length` with ``padding="max_length"`` is a ValueError.
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this.
    padding_side, truncation_side : str or None, default None
        ``"left"`` or ``"right"``; None: the tokenizer's, else ``"right"``.
        ``truncation_side="left"`` keeps the tail.
    return_attention_mask : bool, optional
        Default: whether the tokenizer's model takes one, else True. Built from the row lengths,
        never from ``ids == pad_token_id``.
    return_tensors : {"pt", "np"}, default "pt"
        Torch tensors or numpy arrays.
    pad_token_id : int, optional
        Pad id for ``input_ids``; required without a tokenizer.
    pad_values : Mapping[str, int], optional
        Pad values of other ragged fields, e.g. ``{"labels": -100}``.
    dtype : str, numpy or torch dtype, or None, default None
        Dtype of ids and other padded fields: ``"int64"`` or ``"int32"`` (or the numpy/torch
        dtype); None: int64.
    mask_dtype : str, numpy or torch dtype, or None, default None
        Dtype of ``attention_mask``: ``"int64"``, ``"int32"``, ``"int8"`` or ``"bool"`` (or the
        numpy/torch dtype); None: int64.
    pin_memory : bool, optional
        Allocate the outputs in pinned host memory. None: pin when an accelerator is available.
    threads : int, optional
        Threads for array/`Ragged` batches. None: `default_threads` for the batch's cells (one
        thread below ``2**21`` cells or on a busy machine), one thread for Python lists.

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
        rows longer than `max_length` with ``padding="max_length"`` and no truncation, a
        truncation the tokenizer would refuse (see `truncation`), a `max_length` below the
        number of special tokens of a row that carries the template.
    OverflowError
        A value that does not fit `dtype`.

    Examples
    --------
    >>> batch = pad([[101, 7592, 102], [101, 102]], pad_token_id=0, return_tensors="np")
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
    """
    # Every option but return_tensors and pad_token_id at its default (a server's call): the
    # resolved options are cached.
    defaults = (
        tokenizer is None
        and padding is True
        and max_length is None
        and truncation is False
        and pad_to_multiple_of is None
        and padding_side is None
        and truncation_side is None
        and return_attention_mask is None
        and pad_values is None
        and dtype is None
        and mask_dtype is None
        and pin_memory is None
    )
    list_rows = (
        type(encoded_inputs) is list
        and len(encoded_inputs) > 0
        and type(encoded_inputs[0]) is list
        and (threads is None or (type(threads) is int and threads >= 1))
    )
    if defaults and list_rows:
        # A server's call: skip input normalization and the general engine (pad_inputs on a
        # single "input_ids" rows field, as normalize_inputs would have built it).
        try:
            plan = _LIST_ROWS.get((return_tensors, type(pad_token_id), pad_token_id))
        except TypeError:  # an unhashable pad_token_id, reported by resolve_options
            plan = None
        if plan is not None:
            return _pad_list_rows(encoded_inputs, plan, 1 if threads is None else threads)
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
    if options.template is not None or options.truncation == "only_second":
        from ._truncate import cut_template_rows  # imported when first needed

        inputs = cut_template_rows(inputs, options)
    batch = pad_inputs(inputs, options, threads=threads)
    if defaults and list_rows and "input_ids" in options.pad_values:
        # Only after a successful call: the next ones take _pad_list_rows.
        if len(_LIST_ROWS) >= 64:
            _LIST_ROWS.clear()
        _LIST_ROWS[(return_tensors, type(pad_token_id), pad_token_id)] = (
            options,
            options.padding,
            options.max_length,
            options.truncate,
            options.multiple_of,
            options.max_length if options.truncate else -1,
            options.pad_left,
            options.truncate_left,
            [options.pad_values["input_ids"]],
            _NUMPY_TYPES[options.dtype],
            _NUMPY_TYPES[options.mask_dtype] if options.return_attention_mask else None,
            _torch().from_numpy
            if options.return_tensors == "pt" and not options.pin_memory
            else None,
        )
    return batch


def _pad_list_rows(rows: list[Any], plan: tuple[Any, ...], threads: int) -> Batch:
    """`pad_inputs` for one "input_ids" field of list rows and default allocation.

    The same calls in the same order as `pad_inputs` takes for these inputs, with everything that
    depends on the options alone precomputed in `plan` (see `_LIST_ROWS`).
    """
    (
        options,
        padding,
        max_length,
        truncate,
        multiple_of,
        keep_limit,
        pad_left,
        truncate_left,
        pad_value_list,
        ids_type,
        mask_type,
        from_numpy,
    ) = plan
    specs = [("input_ids", 0, rows)]
    lengths, width = _core.measure(specs, padding, max_length, truncate, multiple_of)
    count = len(lengths)
    cells = count * width
    if cells >= _SAFE_CELLS:
        _core.checked_cells(count, width, 8)
    mask_view = None
    mask_result = None
    if from_numpy is not None and cells < _CACHE_CELLS:
        view = np.empty((count, width), ids_type)
        result = from_numpy(view)
        if mask_type is not None:
            mask_view = np.empty((count, width), mask_type)
            mask_result = from_numpy(mask_view)
    else:
        alloc = _allocator(options)
        result, view = alloc(count, width, options.dtype)
        if mask_type is not None:
            mask_result, mask_view = alloc(count, width, options.mask_dtype)
    _core.pack(
        specs,
        [view],
        pad_value_list,
        lengths,
        mask_view,
        width,
        keep_limit,
        pad_left,
        truncate_left,
        threads,
    )
    batch = Batch()
    batch["input_ids"] = result
    if mask_result is not None:
        batch["attention_mask"] = mask_result
    return batch


def measure_fields(
    inputs: Inputs, options: PadOptions, threads: int | None
) -> tuple[list[tuple[Any, ...]], list[str], list[str], bool, Any, int]:
    """The one pass over the fields that every padded output starts with (`pad_inputs`, the
    `Packer`): ``(specs, keys, scalar_keys, ragged, lengths, width)``, checked in this order
    (no rows, a missing pad value, a bad `threads`, then the core's measure and cell count), so
    that both report the same exception for the same input."""
    # Written for per-call overhead (a server padding small batches): one pass over the fields.
    specs: list[tuple[Any, ...]] = []
    keys: list[str] = []
    scalar_keys: list[str] = []
    ragged = False
    for key, field in inputs.fields.items():
        kind = field.kind
        if kind == "rows":
            specs.append((key, 0, field.data))
        elif kind == "ragged":
            specs.append((key, 1, field.data.values, field.data.offsets))
            ragged = True
        else:
            scalar_keys.append(key)
            continue
        keys.append(key)
    if not specs:
        raise ValueError("fastpad.pad: no field with rows to pad (only per-example scalars)")
    pad_values = options.pad_values
    for key in keys:
        if key not in pad_values:
            raise _missing_pad_value(key)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"fastpad.pad: threads must be a positive int, got {threads!r}")
    lengths, width = _core.measure(
        specs, options.padding, options.max_length, options.truncate, options.multiple_of
    )
    if len(lengths) * width >= _SAFE_CELLS:
        _core.checked_cells(len(lengths), width, 8)
    return specs, keys, scalar_keys, ragged, lengths, width


def pack_into(
    specs: list[tuple[Any, ...]],
    keys: list[str],
    views: list[Any],
    mask_view: Any,
    lengths: Any,
    width: int,
    options: PadOptions,
    threads: int | None,
    ragged: bool,
) -> None:
    """Pack the measured fields into `views` (and the created mask into `mask_view`) with the
    core; threads by default only for a large batch with Ragged fields."""
    if threads is None:
        threads = default_threads(len(lengths) * width) if ragged else 1
    _core.pack(
        specs,
        views,
        [options.pad_values[key] for key in keys],
        lengths,
        mask_view,
        width,
        options.max_length if options.truncate else -1,
        options.pad_left,
        options.truncate_left,
        threads,
    )


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
    specs, keys, scalar_keys, ragged, lengths, width = measure_fields(inputs, options, threads)
    only_rows = not scalar_keys and "attention_mask" not in inputs.fields
    rows = len(lengths)
    # Small unpinned tensors: numpy allocates and torch wraps, inline (~0.9 us a tensor against
    # ~2.3 us for torch.empty plus Tensor.numpy(): most of a small batch's time). Larger ones
    # come from the output cache (_alloc_pt), else (cache off) np.empty below _SMALL_CELLS and
    # torch.empty above. Whether np.empty or torch.empty of a few hundred KiB and more reuses
    # warm memory or page-faults it in afresh on every call depends on the process's malloc
    # state (measured 196 against 738 us for [256, 512] ids + mask): the cache's does not.
    # Tensors over numpy memory (np.empty or cached) cannot grow with Tensor.resize_.
    from_numpy = None
    alloc = allocate
    if alloc is None:
        if (
            options.return_tensors == "pt"
            and not options.pin_memory
            and rows * width < _CACHE_CELLS
        ):
            from_numpy = _torch().from_numpy
        alloc = _allocator(options)
    results = []
    views = []
    for key in keys:
        field_dtype = options.mask_dtype if key == "attention_mask" else options.dtype
        if from_numpy is not None:
            view = np.empty((rows, width), _NUMPY_TYPES[field_dtype])
            result = from_numpy(view)
        else:
            result, view = alloc(rows, width, field_dtype)
        results.append(result)
        views.append(view)
    mask_view = None
    mask_result = None
    if options.return_attention_mask and "attention_mask" not in inputs.fields:
        if from_numpy is not None:
            mask_view = np.empty((rows, width), _NUMPY_TYPES[options.mask_dtype])
            mask_result = from_numpy(mask_view)
        else:
            mask_result, mask_view = alloc(rows, width, options.mask_dtype)
    pack_into(specs, keys, views, mask_view, lengths, width, options, threads, ragged)
    if only_rows:
        batch = Batch()
        for index, key in enumerate(keys):
            batch[key] = results[index]
    else:
        batch = _batch(inputs, options, keys, results)
    if mask_result is not None:
        batch["attention_mask"] = mask_result
    return batch


def _batch(inputs: Inputs, options: PadOptions, keys: list[str], results: list[Any]) -> Batch:
    """Keys in input order, per-example scalars stacked, a given mask kept when asked for."""
    outputs = dict(zip(keys, results, strict=True))
    batch = Batch()
    for key, field in inputs.fields.items():
        if field.kind == "scalars":
            batch[key] = _stack_scalars(key, field.data, options, inputs)
        elif key == "attention_mask" and not options.return_attention_mask:
            continue
        else:
            batch[key] = outputs[key]
    return batch
