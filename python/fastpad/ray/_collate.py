"""`fastpad.ray.Collate`: pad the token columns of an Arrow batch at the consumer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from ray.data.collate_fn import ArrowBatchCollateFn

from .._batch import Batch
from .._options import PAD_KEYWORDS, check_keywords, resolve_options
from .._packer import Packer
from .._pad import pad
from .._ragged import Ragged
from ._common import TokenizerSource, first_null, pyarrow_module, table_of

__all__ = ["Collate"]

# `fastpad.pad` options a Collate forwards (the tokenizer is its own argument; return_tensors is
# always "pt": Ray Data hands torch tensors to the training loop). With device= they go to a
# Packer, which pins its own ring.
_PAD_OPTIONS = PAD_KEYWORDS - {"tokenizer", "return_tensors"}


def _is_integer_list(pa: Any, kind: Any) -> bool:
    return bool(
        (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)
        )
        and pa.types.is_integer(kind.value_type)
    )


def _is_number(pa: Any, kind: Any) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


class Collate(TokenizerSource, ArrowBatchCollateFn):  # type: ignore[misc]
    """Pad the token columns of an Arrow batch: a ``collate_fn`` for ``iter_torch_batches``.

    Every column of integer lists (``list``, ``large_list``, ``fixed_size_list``) is read as a
    `fastpad.Ragged` without copying (`fastpad.Ragged.from_arrow`; a batch made of several Arrow
    chunks is concatenated once) and padded by `fastpad.pad` with its semantics: pad values from
    the tokenizer (``input_ids``, ``token_type_ids``, ``special_tokens_mask``) or from
    `pad_token_id` / `pad_values`, an ``attention_mask`` built from the row lengths, truncation,
    padding side, `pad_to_multiple_of`, dtypes. Integer, floating and boolean scalar columns
    (a ``label``, an ``id``) are stacked into 1-D tensors of their Arrow dtype under their own
    names; other columns (strings, nested lists, lists of floats) are left out.

    Parameters
    ----------
    tokenizer : transformers tokenizer, str or os.PathLike, optional
        Supplies pad ids, padding side, field names and ``model_max_length``, as in
        `fastpad.pad`. A name or path is loaded with ``AutoTokenizer.from_pretrained`` once per
        process; an object is pickled with the collate function.
    device : str or torch.device, optional
        Pad through a `fastpad.Packer` on this device (a ring of pinned host buffers and one
        asynchronous copy per batch), created lazily in the process that collates. Pass the
        same device to ``iter_torch_batches(device=...)`` (inside Ray Train its default
        ``"auto"`` is the worker's device); outside Ray Train ``"auto"`` means the CPU and Ray
        would copy the batch back.
    columns : sequence of str, optional
        The columns to collate, in this order; each must be a list-of-integers or a number
        column. Default: every such column of the batch, in table order.
    ragged_transfer : bool, default False
        With `device`: copy only the real tokens and build the padded tensors on the device
        (see `fastpad.Packer`).
    **pad_options
        `fastpad.pad` options: ``padding``, ``max_length``, ``truncation``,
        ``pad_to_multiple_of``, ``padding_side``, ``truncation_side``,
        ``return_attention_mask``, ``pad_token_id``, ``pad_values``, ``dtype``, ``mask_dtype``,
        ``pin_memory`` (not with `device`), ``threads``.

    Notes
    -----
    ``Collate(...)(table)`` returns a `fastpad.Batch`. ``iter_torch_batches`` hands its
    collated output through a step that moves mappings of tensors to its ``device`` and
    yields them as a plain ``dict`` holding the same tensors.

    Ray calls a collate function from a thread pool: `fastpad.pad` is thread-safe and a Packer
    serializes its calls. The object pickles (the Packer is not sent; each process builds its
    own), so it can be built in the driver and used in Ray Train workers.

    Examples
    --------
    >>> import pyarrow as pa
    >>> table = pa.table({"input_ids": [[101, 7592, 102], [101, 102]], "label": [1, 0]})
    >>> batch = Collate(pad_token_id=0)(table)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["label"].tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]], [1, 0])
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        device: Any = None,
        columns: Sequence[str] | None = None,
        ragged_transfer: bool = False,
        **pad_options: Any,
    ) -> None:
        super().__init__()
        check_keywords("fastpad.ray.Collate", pad_options, _PAD_OPTIONS)
        if device is not None and "pin_memory" in pad_options:
            raise ValueError(
                "fastpad.ray.Collate: pin_memory and device= exclude each other (the Packer "
                "behind device= pads into its own pinned buffers)"
            )
        if ragged_transfer and device is None:
            raise ValueError("fastpad.ray.Collate: ragged_transfer=True needs device=")
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(name, str) for name in columns):
                raise TypeError("fastpad.ray.Collate: columns must be a sequence of column names")
            columns = list(columns)
            if not columns:
                raise ValueError("fastpad.ray.Collate: columns must name at least one column")
        self._set_tokenizer(tokenizer)
        # str(device): a torch.device would make pickles depend on torch's pickling of it.
        self.device = None if device is None else str(device)
        self.columns = columns
        self.ragged_transfer = bool(ragged_transfer)
        self.pad_options = dict(pad_options)
        if self._tokenizer_name is None:
            # Bad option values fail here, in the driver, not in the first batch of a worker.
            # (pin_memory is checked where the batches are padded, on the machine that pins.)
            options = {
                key: value
                for key, value in self.pad_options.items()
                if key not in ("threads", "pin_memory")
            }
            resolve_options(
                tokenizer=self._tokenizer,
                **options,
                return_tensors="pt",
                pin_memory=False,
                fields=[],
            )
        self._packer: Packer | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_packer"] = None  # pinned buffers and CUDA events stay in their process
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        source = self._tokenizer_name or (
            type(self._tokenizer).__name__ if self._tokenizer is not None else None
        )
        return (
            f"fastpad.ray.Collate(tokenizer={source!r}, device={self.device!r}, "
            f"columns={self.columns!r}, pad_options={self.pad_options!r})"
        )

    def fields(self, table: Any) -> dict[str, Any]:
        """The batch's fields as `fastpad.pad` inputs, without padding them.

        Parameters
        ----------
        table : pyarrow.Table
            One batch of rows.

        Returns
        -------
        dict of str to Ragged or numpy.ndarray
            Integer list columns as `fastpad.Ragged` (views of the Arrow buffers), number
            columns as 1-D arrays, in column order.

        Raises
        ------
        ValueError
            A selected column is missing, a null row or token (column and row named), no
            integer list column at all.
        TypeError
            A selected column is neither a list of integers nor a number column.
        """
        pa = pyarrow_module()
        table = table_of(table, "Collate")
        names = table.column_names if self.columns is None else self.columns
        fields: dict[str, Any] = {}
        for name in names:
            if name not in table.column_names:
                raise ValueError(
                    f"fastpad.ray.Collate: the batch has no column {name!r}; its columns are "
                    f"{table.column_names}"
                )
            column = table.column(name)
            kind = column.type
            if _is_integer_list(pa, kind):
                try:
                    fields[name] = Ragged.from_arrow(column)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"fastpad.ray.Collate: column {name!r}: {error}") from None
            elif _is_number(pa, kind):
                fields[name] = self._numbers(name, column)
            elif self.columns is not None:
                raise TypeError(
                    f"fastpad.ray.Collate: column {name!r} is {kind}; expected a list of "
                    "integers (token ids) or numbers (per-example values)"
                )
        if not any(isinstance(value, Ragged) for value in fields.values()):
            raise ValueError(
                "fastpad.ray.Collate: no column of integer lists to pad among "
                f"{list(names)} ({[str(table.column(n).type) for n in names]})"
            )
        return fields

    @staticmethod
    def _numbers(name: str, column: Any) -> Any:
        if column.null_count:
            raise ValueError(
                f"fastpad.ray.Collate: column {name!r}: row {first_null(column)} is null; fill "
                "or drop null rows first"
            )
        values = column.to_numpy()
        # Zero-copy Arrow views are read-only, and torch.from_numpy warns on those: copy the B
        # values rather than hand out a tensor that aliases Ray's object store.
        if not values.flags.writeable or not values.flags.c_contiguous:
            values = np.array(values)
        return values

    def __call__(self, batch: Any) -> Batch:
        """Pad one Arrow batch.

        Parameters
        ----------
        batch : pyarrow.Table
            What ``iter_torch_batches`` hands an `ArrowBatchCollateFn`.

        Returns
        -------
        Batch
            Padded ``[B, L]`` tensors (and ``attention_mask``) for the list columns, ``[B]``
            tensors for the number columns; on `device` when one was given.

        Raises
        ------
        TypeError, ValueError, OverflowError
            As `fastpad.pad`, and as `fields` for the columns.
        """
        fields = self.fields(batch)
        # fastpad.pad reads a mapping whose first field is one flat row as a single example, so
        # the list columns go first; the result is put back in column order below.
        ordered = {key: value for key, value in fields.items() if isinstance(value, Ragged)}
        ordered.update(fields)
        if self.device is None:
            result = pad(ordered, tokenizer=self.tokenizer, **self.pad_options)
        else:
            result = self._packer_for_process()(ordered)
        if list(ordered) == list(fields):
            return result
        in_order = Batch({key: result[key] for key in fields if key in result})
        in_order.update(result)  # the attention_mask built from the lengths, last as in pad
        return in_order

    def _packer_for_process(self) -> Packer:
        packer = self._packer
        if packer is None:
            with self._lock:
                if self._packer is None:
                    self._packer = Packer(
                        self.device,
                        tokenizer=self.tokenizer,
                        ragged_transfer=self.ragged_transfer,
                        **self.pad_options,
                    )
                packer = self._packer
        return packer
