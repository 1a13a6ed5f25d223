"""Per-example scalar fields (a ``label`` per example), stacked as transformers' ``pad`` does."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import Inputs

__all__ = ["python_scalars", "stack_scalars"]


def python_scalars(inputs: Inputs, main_key: str) -> bool:
    """Whether transformers' ``pad`` turns every field into Python objects before stacking.

    ``PreTrainedTokenizerBase.pad`` looks at the first token of the main field (of its first
    non-empty row) and, unless it is an int (or the rows are empty), runs ``to_py_obj`` over
    every field: per-example tensors then go through ``tolist()``, so a bfloat16 or float16
    label comes back float32 and an int32 one int64. That happens for rows that are arrays or
    tensors, and for 2-D array inputs.
    """
    field = inputs.fields.get(main_key)
    if field is None or field.kind == "scalars":
        return False
    if field.kind == "ragged":
        return field.from_array
    try:
        rows = field.data
        if len(rows) == 0:
            return False
        first = rows[0]
        if isinstance(first, list | tuple):
            for item in rows:
                if len(item) != 0:
                    first = item[0]
                    break
        return not isinstance(first, int | list | tuple)
    except Exception:  # malformed rows are reported by the padding itself, in its words
        return False


def _to_py_obj(values: Any) -> Any:
    """transformers' ``to_py_obj`` on one field: tensors and arrays become Python lists."""
    if isinstance(values, list | tuple):
        if all(isinstance(value, int | float | np.number) for value in values):
            return list(values)
        return [_to_py_obj(value) for value in values]
    if hasattr(values, "tolist") and (hasattr(values, "detach") or isinstance(values, np.ndarray)):
        return values.tolist()
    if isinstance(values, np.number):
        return values.tolist()
    return values


def _not_numbers(key: str, detail: str) -> TypeError:
    return TypeError(
        f"fastpad.pad: field {key!r} holds per-example values that are not numbers{detail}"
    )


def stack_scalars(key: str, values: Any, return_tensors: str, python_objects: bool = False) -> Any:
    """Per-example scalars (a ``label`` per example) as one 1-D tensor or array.

    What transformers' ``pad`` gives: with `python_objects` (see `python_scalars`) the field is
    first turned into Python objects. Then a list goes through ``torch.tensor`` (float labels
    become float32; 0-d tensors of any dtype, bfloat16 included, keep theirs; tensors that
    require grad or live on a device are read without autograd into a CPU tensor), and a 1-D
    tensor, which transformers splits into rows and stacks again, comes back as a fresh CPU
    copy without autograd. Values that are not numbers are a TypeError naming the field, never
    an object array.
    """
    if python_objects:
        values = _to_py_obj(values)
    if hasattr(values, "detach"):  # a 1-D tensor field
        if return_tensors == "np":
            return _tensor_numpy(key, values)
        # transformers splits it into rows and stacks them again with torch.tensor: a fresh CPU
        # tensor of the same dtype, without autograd.
        values = values.detach()
        return values.clone() if values.device.type == "cpu" else values.cpu()
    if isinstance(values, list | tuple) and any(hasattr(value, "detach") for value in values):
        return _stack_tensors(key, values, return_tensors)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise _not_numbers(key, f": {error}") from None
    if array.dtype.kind not in "biufc" or array.ndim != 1:
        raise _not_numbers(
            key, f" (got {array.dtype} of shape {array.shape}); drop the field or pass rows"
        )
    if return_tensors == "np":
        return array
    import torch

    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    return torch.tensor(values)


def _tensor_numpy(key: str, tensor: Any) -> Any:
    try:
        return tensor.detach().cpu().numpy()
    except TypeError as error:  # bfloat16 and other dtypes numpy lacks
        raise TypeError(
            f"fastpad.pad: field {key!r} holds {tensor.dtype} values, which numpy cannot hold "
            f"({error}); use return_tensors='pt'"
        ) from None


def _stack_tensors(key: str, values: Any, return_tensors: str) -> Any:
    """A list holding 0-d tensors: ``torch.tensor`` of it, as transformers does."""
    import torch

    # detach(): the same values without autograd (torch.tensor would warn, then copy them).
    items = [value.detach() if hasattr(value, "detach") else value for value in values]
    if any(getattr(item, "ndim", 0) != 0 for item in items):
        raise _not_numbers(key, " (a list mixing scalars and arrays); drop the field or pass rows")
    try:
        stacked = torch.tensor(items)
    except (TypeError, ValueError, RuntimeError) as error:
        raise _not_numbers(key, f": {error}") from None
    if stacked.ndim != 1:
        raise _not_numbers(
            key, f" (got {stacked.dtype} of shape {tuple(stacked.shape)}); drop the field"
        )
    return _tensor_numpy(key, stacked) if return_tensors == "np" else stacked
