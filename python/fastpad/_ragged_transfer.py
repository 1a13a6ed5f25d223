"""The host side of a `Packer` ragged transfer, and its outputs from the copied buffer.

A ragged transfer copies each row's kept tokens plus a row layout instead of the padded tensors,
and rebuilds the padded tensors and the mask on the device (`fastpad._expand`). `plan_ragged`
measures a batch and decides whether it takes this path, `pack_flat` writes it into the batch
buffer (`fastpad._ring.Layout`), and `expand_outputs` makes the outputs from the copied buffer.
The copy itself, and the per-example scalars riding in the same buffer, are the Packer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, _ring
from ._expand import AUTO_MIN_SAVED_BYTES, choose_ragged, gather_field, rebuild_index
from ._inputs import Inputs
from ._options import PadOptions
from ._pad import _missing_pad_value
from ._ring import Layout, Part, aligned

__all__ = [
    "ITEMSIZES",
    "RaggedPlan",
    "expand_outputs",
    "pack_flat",
    "padded_itemsizes",
    "plan_ragged",
]

ITEMSIZES = {"bool": 1, "int8": 1, "int32": 4, "int64": 8}
_INT32_MAX = 2**31 - 1
# Batches of at least this many padded cells are checked against physical memory first, as
# `fastpad.pad` does (MemoryError naming the size).
_SAFE_CELLS = 1 << 22


def padded_itemsizes(inputs: Inputs, options: PadOptions) -> list[int]:
    """Item sizes of the buffers `pad_inputs` allocates, in its order (fields, then the mask)."""
    sizes = [
        ITEMSIZES[options.mask_dtype if key == "attention_mask" else options.dtype]
        for key, field in inputs.fields.items()
        if field.kind != "scalars"
    ]
    if options.return_attention_mask and "attention_mask" not in inputs.fields:
        sizes.append(ITEMSIZES[options.mask_dtype])
    return sizes


@dataclass
class RaggedPlan:
    """A batch measured for a ragged transfer (see `plan_ragged`)."""

    specs: list[tuple[Any, ...]]  # fields in the order the core packs them (lists, then Ragged)
    keys: list[str]  # the same order
    dtypes: dict[str, str]
    lengths: Any  # int64 input lengths
    rows: int
    width: int
    flat: int  # kept tokens + rows: elements of each field's flat region


def plan_ragged(
    padded_inputs: Inputs, options: PadOptions, threads: int | None, *, auto: bool
) -> RaggedPlan | None:
    """Measure the batch for a ragged transfer; None when the padded path takes it.

    Checks the input as `pad_inputs` does, in its order, so both paths raise alike.
    """
    lists: list[tuple[Any, ...]] = []
    arrays: list[tuple[Any, ...]] = []
    list_keys: list[str] = []
    array_keys: list[str] = []
    for key, field in padded_inputs.fields.items():
        if field.kind == "rows":
            lists.append((key, 0, field.data))
            list_keys.append(key)
        else:
            arrays.append((key, 1, field.data.values, field.data.offsets))
            array_keys.append(key)
    if not lists and not arrays:
        raise ValueError("fastpad.pad: no field with rows to pad (only per-example scalars)")
    keys = [key for key in padded_inputs.fields if key in list_keys or key in array_keys]
    for key in keys:
        if key not in options.pad_values:
            raise _missing_pad_value(key)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"fastpad.pad: threads must be a positive int, got {threads!r}")
    # measure() in the fields' order, as pad_inputs calls it: the same errors first.
    specs_in_order = [
        (key, 0, padded_inputs.fields[key].data)
        if padded_inputs.fields[key].kind == "rows"
        else (
            key,
            1,
            padded_inputs.fields[key].data.values,
            padded_inputs.fields[key].data.offsets,
        )
        for key in keys
    ]
    lengths, width = _core.measure(
        specs_in_order,
        options.padding,
        options.max_length,
        options.truncate,
        options.multiple_of,
    )
    rows = int(lengths.shape[0])
    if rows * width >= _SAFE_CELLS:
        _core.checked_cells(rows, width, 8)
    kept = int((np.minimum(lengths, options.max_length) if options.truncate else lengths).sum())
    flat = kept + rows
    dtypes = {key: options.mask_dtype if key == "attention_mask" else options.dtype for key in keys}
    if options.dtype == "int32" and flat + width > _INT32_MAX:
        return None  # the row layout would not fit the int32 buffer
    if auto:
        padded_bytes = rows * width * sum(padded_itemsizes(padded_inputs, options))
        flat_bytes = flat * sum(ITEMSIZES[dtypes[key]] for key in keys)
        flat_bytes += 2 * rows * ITEMSIZES[options.dtype]
        if not choose_ragged(padded_bytes, flat_bytes, AUTO_MIN_SAVED_BYTES):
            return None
    # The core packs list fields, then Ragged ones (as pack does): the same first error.
    return RaggedPlan(
        specs=lists + arrays,
        keys=list_keys + array_keys,
        dtypes=dtypes,
        lengths=lengths,
        rows=rows,
        width=width,
        flat=flat,
    )


def pack_flat(
    layout: Layout, plan: RaggedPlan, options: PadOptions, extra_bytes: int
) -> tuple[dict[str, Part], Part]:
    """Reserve the batch buffer (the flat fields, the row layout and `extra_bytes` more, for
    what follows them) and pack the kept tokens and the row layout into it.

    Returns each field's part and the row layout's part.
    """
    torch = _ring._torch()
    buffer_dtype = getattr(torch, options.dtype)
    rows, flat = plan.rows, plan.flat
    # The first field of the buffer's dtype sits at element 0, so its gather needs no offset;
    # the row layout follows, then the other fields.
    first = next((key for key in plan.keys if plan.dtypes[key] == options.dtype), None)
    order = ([first] if first is not None else []) + [key for key in plan.keys if key != first]
    layout.reserve(
        sum(aligned(flat * ITEMSIZES[plan.dtypes[key]]) for key in plan.keys)
        + aligned(2 * rows * ITEMSIZES[options.dtype])
        + extra_bytes
    )
    parts: dict[str, Part] = {}
    meta: Part | None = None
    for key in order:
        parts[key] = layout.take(getattr(torch, plan.dtypes[key]), (flat,))
        if key == first:
            meta = layout.take(buffer_dtype, (2 * rows,))
    if meta is None:
        meta = layout.take(buffer_dtype, (2 * rows,))
    _core.pack_ragged(
        plan.specs,
        [layout.numpy_view(parts[key]) for key in plan.keys],
        [options.pad_values[key] for key in plan.keys],
        plan.lengths,
        layout.numpy_view(meta),
        plan.width,
        options.max_length if options.truncate else -1,
        options.pad_left,
        options.truncate_left,
    )
    return parts, meta


def expand_outputs(
    device_buffer: Any, plan: RaggedPlan, options: PadOptions, parts: dict[str, Part], meta: Part
) -> dict[str, Any]:
    """The padded fields and the created mask, rebuilt from the copied buffer on its device
    (on the current stream, no host synchronization)."""
    torch = _ring._torch()
    index, keep = rebuild_index(
        device_buffer,
        plan.rows,
        plan.width,
        meta.offset // ITEMSIZES[options.dtype],
        pad_left=options.pad_left,
    )
    outputs: dict[str, Any] = {}
    for key in plan.keys:
        if key == "attention_mask" and not options.return_attention_mask:
            continue  # packed (so bad values raise as in `fastpad.pad`), not returned
        part = parts[key]
        outputs[key] = gather_field(
            device_buffer, index, part.dtype, part.offset // int(part.dtype.itemsize)
        )
    if options.return_attention_mask and "attention_mask" not in plan.keys:
        mask_dtype = getattr(torch, options.mask_dtype)
        outputs["attention_mask"] = keep if mask_dtype == torch.bool else keep.to(mask_dtype)
    return outputs
