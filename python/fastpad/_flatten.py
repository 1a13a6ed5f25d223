"""`fastpad.flatten`: padding-free batches for varlen attention (DataCollatorWithFlattening)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _cache, _core
from ._batch import Batch
from ._inputs import Field, normalize_inputs
from ._options import require_torch
from ._ragged import Ragged

__all__ = ["concat_field", "flatten", "select_fields"]

_INT32_MAX = 2**31 - 1


def select_fields(encoded_inputs: Any, keys: Sequence[str]) -> Any:
    """Keep only `keys` of a Mapping or of a list of per-example Mappings (others untouched).

    Flattening reads ``input_ids`` and ``labels`` only, like transformers; other fields (text
    columns, masks) are neither validated nor converted.
    """
    if isinstance(encoded_inputs, Mapping):
        return {key: encoded_inputs[key] for key in keys if key in encoded_inputs}
    if (
        isinstance(encoded_inputs, list | tuple)
        and len(encoded_inputs) > 0
        and isinstance(encoded_inputs[0], Mapping)
    ):
        columns: dict[str, list[Any]] = {}
        for key in keys:
            if key in encoded_inputs[0]:
                column = []
                for index, example in enumerate(encoded_inputs):
                    if not isinstance(example, Mapping) or key not in example:
                        raise ValueError(f"fastpad: example {index} has no {key!r} field")
                    column.append(example[key])
                columns[key] = column
        return columns
    return encoded_inputs


def concat_field(key: str, field: Field, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """All tokens of one checked field, row after row, as one int64 array (output memory)."""
    total = int(lengths.sum())
    if field.kind == "ragged":
        data: Ragged = field.data
        # measure() checked that the offsets start at 0, never decrease and stay in bounds.
        values = data.values[:total]
        if values.dtype == np.uint64 and values.size and int(values.max()) > 2**63 - 1:
            raise OverflowError(f"fastpad: values of {key!r} do not fit int64")
        copied: npt.NDArray[np.int64] = _cache.empty(1, total, "int64")[0]
        copied[...] = values  # a copy: outputs never alias the inputs
        return copied
    if field.kind != "rows":
        raise TypeError(f"fastpad: field {key!r} holds one scalar per example; expected rows")
    out: npt.NDArray[np.int64] = _cache.empty(1, total, "int64")[0]
    _core.concat_rows(key, field.data, out)
    return out


def _spec(key: str, field: Field) -> tuple[Any, ...]:
    if field.kind == "ragged":
        return (key, 1, field.data.values, field.data.offsets)
    if field.kind == "rows":
        return (key, 0, field.data)
    raise TypeError(f"fastpad.flatten: field {key!r} holds one scalar per example; expected rows")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"fastpad.flatten: {name} must be an int, got {type(value).__name__}")
    return int(value)


def flatten(
    encoded_inputs: Any,
    *,
    return_position_ids: bool = True,
    return_flash_attn_kwargs: bool = False,
    return_seq_idx: bool = False,
    separator_id: int = -100,
    position_ids_start: int = 0,
    return_tensors: Literal["pt", "np"] = "pt",
) -> Batch:
    """Concatenate a batch into one padding-free row, as ``DataCollatorWithFlattening`` does.

    Same keys, dtypes and values as transformers' collator with the same options, built with one
    C++ copy of the tokens and a few vectorised passes over the row lengths; nothing is read back
    from a device. Empty rows are dropped (as transformers does).

    Parameters
    ----------
    encoded_inputs : list, Ragged, array, Mapping or list of Mapping
        Every form `fastpad.pad` accepts. Only ``input_ids`` and ``labels`` are read.
    return_position_ids : bool, default True
        Return ``position_ids`` ``[1, N]`` restarting at `position_ids_start` for every row.
    return_flash_attn_kwargs : bool, default False
        Return ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (int32 ``[B + 1]``) and ``max_length_q`` /
        ``max_length_k`` (Python ints) for FlashAttention's varlen kernels.
    return_seq_idx : bool, default False
        Return ``seq_idx`` (int32 ``[1, N]``): the row each token belongs to.
    separator_id : int, default -100
        Label of the first token of every row (so no row learns to predict across a boundary).
    position_ids_start : int, default 0
        First position id of every row; RoBERTa-family models need ``padding_idx + 1`` (2).
    return_tensors : {"pt", "np"}, default "pt"
        Torch tensors or numpy arrays.

    Returns
    -------
    Batch
        ``input_ids`` and ``labels`` (int64 ``[1, N]``), then the requested extras.

    Raises
    ------
    ValueError
        Every row empty, labels whose row lengths differ from input_ids, bad options.
    TypeError
        Tokens that are not ints, a missing ``input_ids`` field.

    Examples
    --------
    >>> batch = flatten([[101, 7592, 102], [101, 102]], return_flash_attn_kwargs=True,
    ...                 return_tensors="np")
    >>> batch["labels"].tolist(), batch["cu_seq_lens_q"].tolist(), batch["max_length_q"]
    ([[-100, 7592, 102, -100, 102]], [0, 3, 5], 3)
    """
    separator = _int(separator_id, "separator_id")
    start = _int(position_ids_start, "position_ids_start")
    if return_tensors not in ("pt", "np"):
        raise ValueError(
            f"fastpad.flatten: return_tensors must be 'pt' or 'np', got {return_tensors!r}"
        )
    if return_tensors == "pt":
        require_torch("fastpad.flatten")
    inputs = normalize_inputs(select_fields(encoded_inputs, ("input_ids", "labels")))
    if "input_ids" not in inputs.fields:
        raise TypeError("fastpad.flatten: the batch has no 'input_ids' field")
    keys = [key for key in ("input_ids", "labels") if key in inputs.fields]
    specs = [_spec(key, inputs.fields[key]) for key in keys]
    # measure() validates every row and checks labels against input_ids row by row.
    lengths, _width = _core.measure(specs, 0, -1, False, 0)
    ids = concat_field("input_ids", inputs.fields["input_ids"], lengths)
    kept = lengths[lengths > 0]
    if kept.size == 0:
        raise ValueError("fastpad.flatten: every example of the batch is empty")
    total = ids.size
    starts = np.zeros(kept.size + 1, dtype=np.int64)
    np.cumsum(kept, out=starts[1:])

    labels = concat_field("labels", inputs.fields["labels"], lengths) if "labels" in keys else ids
    if labels is ids:
        labels = _cache.empty(1, total, "int64")[0]
        labels[...] = ids
    labels[starts[:-1]] = separator

    arrays: dict[str, Any] = {"input_ids": ids[None, :], "labels": labels[None, :]}
    if return_position_ids:
        position_ids = _cache.empty(1, total, "int64")[0]
        np.subtract(
            np.arange(total, dtype=np.int64), np.repeat(starts[:-1] - start, kept), out=position_ids
        )
        arrays["position_ids"] = position_ids[None, :]
    if return_seq_idx:
        arrays["seq_idx"] = np.repeat(np.arange(kept.size, dtype=np.int32), kept)[None, :]
    extras: dict[str, int] = {}
    if return_flash_attn_kwargs:
        if total > _INT32_MAX:
            raise OverflowError(f"fastpad.flatten: {total} tokens do not fit the int32 cu_seq_lens")
        cu_seq_lens = starts.astype(np.int32)
        arrays["cu_seq_lens_q"] = cu_seq_lens
        arrays["cu_seq_lens_k"] = cu_seq_lens.copy()
        longest = int(kept.max())
        extras = {"max_length_q": longest, "max_length_k": longest}

    batch = Batch()
    if return_tensors == "pt":
        import torch

        for key, array in arrays.items():
            batch[key] = torch.from_numpy(np.ascontiguousarray(array))
    else:
        batch.update(arrays)
    batch.update(extras)
    return batch
