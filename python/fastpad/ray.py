"""Ray Data and Ray Train integration: tokenize in workers, pad once at the consumer.

Rows travel through a Ray Data pipeline unpadded, as Arrow ``list<int32>`` columns, and are
padded once where the batch is consumed (``iter_torch_batches``, or a Ray Train worker):

>>> import ray, fastpad.ray  # doctest: +SKIP
>>> ds = ray.data.read_parquet("texts.parquet")  # doctest: +SKIP
>>> ds = ds.map_batches(fastpad.ray.Tokenize(tokenizer), batch_format="pyarrow")  # doctest: +SKIP
>>> for batch in ds.iter_torch_batches(  # doctest: +SKIP
...     batch_size=256, collate_fn=fastpad.ray.Collate(tokenizer)
... ):
...     model(**batch)

An Arrow list column already is a `fastpad.Ragged` (flat values plus offsets), so `Collate`
reads it without copying and the C++ core writes the padded tensors directly.

This module needs Ray Data (``pip install 'fastpad[ray]'``); ``import fastpad`` never imports it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:
    from ray.data.collate_fn import ArrowBatchCollateFn
except ImportError as error:  # pragma: no cover - exercised in a subprocess without Ray
    raise ImportError(
        "fastpad.ray needs Ray Data, which is not installed: `pip install 'fastpad[ray]'` "
        "(or `pip install 'ray[data]>=2.47'`)"
    ) from error

from ._batch import Batch
from ._options import PAD_KEYWORDS, check_keywords, resolve_options
from ._packer import Packer
from ._pad import pad
from ._ragged import Ragged

__all__ = ["Collate", "Tokenize"]

# `fastpad.pad` options a Collate forwards (the tokenizer is its own argument; return_tensors is
# always "pt": Ray Data hands torch tensors to the training loop). With device= they go to a
# Packer, which pins its own ring.
_PAD_OPTIONS = PAD_KEYWORDS - {"tokenizer", "return_tensors"}
# Tokenizer arguments that would pad or make tensors: Tokenize keeps rows ragged by design.
_PADDING_ARGUMENTS = frozenset({"padding", "pad_to_multiple_of", "padding_side", "return_tensors"})

_tokenizers: dict[str, Any] = {}
_tokenizers_lock = threading.Lock()


def _pyarrow() -> Any:
    import pyarrow

    return pyarrow


def _load_tokenizer(name: str) -> Any:
    """``AutoTokenizer.from_pretrained(name)``, once per process (each Ray worker loads it once)."""
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(name)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(name)
            _tokenizers[name] = tokenizer
        return tokenizer


def _tokenizer_source(tokenizer: Any) -> tuple[Any, str | None]:
    """(tokenizer object or None, name/path to load it from in each process or None)."""
    if isinstance(tokenizer, str | os.PathLike):
        return None, os.fspath(tokenizer)
    return tokenizer, None


def _table(batch: Any, owner: str) -> Any:
    pa = _pyarrow()
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, Mapping):  # a "numpy" or "default" batch: a dict of column arrays
        return pa.table({str(key): value for key, value in batch.items()})
    raise TypeError(
        f"fastpad.ray.{owner}: expected a pyarrow.Table batch (batch_format='pyarrow'), got "
        f"{type(batch).__name__}"
    )


def _first_null(column: Any) -> int:
    mask = column.is_null()
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


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


class Collate(ArrowBatchCollateFn):  # type: ignore[misc]
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
        self._tokenizer, self._tokenizer_name = _tokenizer_source(tokenizer)
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

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loaded in this process on first use when given by name or path)."""
        if self._tokenizer is None and self._tokenizer_name is not None:
            self._tokenizer = _load_tokenizer(self._tokenizer_name)
        return self._tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_packer"] = None  # pinned buffers and CUDA events stay in their process
        del state["_lock"]
        if state["_tokenizer_name"] is not None:
            state["_tokenizer"] = None  # loaded again, once, by the receiving process
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
        pa = _pyarrow()
        table = _table(table, "Collate")
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
                f"fastpad.ray.Collate: column {name!r}: row {_first_null(column)} is null; fill "
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


class Tokenize:
    """Tokenize a text column without padding: a ``map_batches`` function for Arrow batches.

    ``ds.map_batches(Tokenize(tokenizer), batch_format="pyarrow")`` returns each block with
    the tokenizer's per-token fields (``input_ids``, ``token_type_ids``, and any other it
    returns, such as ``special_tokens_mask``) as ``list<int32>`` columns and its per-example
    integers (``length``) as int64 columns; the text column is dropped and every other column
    kept. The ``attention_mask`` is dropped when it is all ones (always so without padding):
    `Collate` rebuilds it from the row lengths.

    Parameters
    ----------
    tokenizer : transformers tokenizer, str or os.PathLike
        A tokenizer object (pickled to the workers) or a name/path loaded with
        ``AutoTokenizer.from_pretrained`` once per worker process.
    column : str, default "text"
        The column of strings to tokenize.
    pair_column : str, optional
        A second column of strings, tokenized as the pair of `column` (cross-encoders, NLI).
    **tokenizer_kwargs
        Passed to the tokenizer call, e.g. ``truncation=True, max_length=256``. Padding
        arguments (``padding``, ``pad_to_multiple_of``, ``padding_side``, ``return_tensors``)
        are refused: rows stay ragged until `Collate` pads them.

    Notes
    -----
    Use it as an instance (Ray tasks; ``compute=ray.data.TaskPoolStrategy(size=n)``) or as a
    class with ``fn_constructor_args=(tokenizer,)`` (Ray actors;
    ``compute=ray.data.ActorPoolStrategy(size=n)``). The fields are stored as int32:
    ``Collate`` widens them to the dtype it is asked for (int64 by default, as the tokenizer).

    Examples
    --------
    >>> import pyarrow as pa  # doctest: +SKIP
    >>> Tokenize(tokenizer)(pa.table({"text": ["Hello world."], "label": [1]}))  # doctest: +SKIP
    pyarrow.Table
    label: int64
    input_ids: list<item: int32>
    token_type_ids: list<item: int32>
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        column: str = "text",
        pair_column: str | None = None,
        **tokenizer_kwargs: Any,
    ) -> None:
        if tokenizer is None:
            raise TypeError("fastpad.ray.Tokenize: a tokenizer (object, name or path) is required")
        refused = sorted(
            key
            for key in set(tokenizer_kwargs) & _PADDING_ARGUMENTS
            if not (key == "padding" and tokenizer_kwargs[key] in (False, "do_not_pad"))
        )
        if refused:
            raise ValueError(
                f"fastpad.ray.Tokenize: {refused} would pad or make tensors; Tokenize keeps rows "
                "ragged (Arrow list columns) and fastpad.ray.Collate pads them at the consumer"
            )
        if not isinstance(column, str) or (
            pair_column is not None and not isinstance(pair_column, str)
        ):
            raise TypeError("fastpad.ray.Tokenize: column and pair_column must be column names")
        self._tokenizer, self._tokenizer_name = _tokenizer_source(tokenizer)
        self.column = column
        self.pair_column = pair_column
        self.tokenizer_kwargs = {**tokenizer_kwargs, "padding": False}

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loaded in this process on first use when given by name or path)."""
        if self._tokenizer is None and self._tokenizer_name is not None:
            self._tokenizer = _load_tokenizer(self._tokenizer_name)
        return self._tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if state["_tokenizer_name"] is not None:
            state["_tokenizer"] = None  # loaded again, once, by the receiving process
        return state

    def __repr__(self) -> str:
        source = self._tokenizer_name or type(self._tokenizer).__name__
        return f"fastpad.ray.Tokenize(tokenizer={source!r}, column={self.column!r})"

    def _texts(self, table: Any, name: str) -> list[Any]:
        pa = _pyarrow()
        if name not in table.column_names:
            raise ValueError(
                f"fastpad.ray.Tokenize: the batch has no column {name!r}; its columns are "
                f"{table.column_names}"
            )
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise TypeError(
                f"fastpad.ray.Tokenize: column {name!r} is {column.type}; expected strings"
            )
        if column.null_count:
            raise ValueError(
                f"fastpad.ray.Tokenize: column {name!r}: row {_first_null(column)} is null; fill "
                "or drop null rows first"
            )
        texts: list[Any] = column.to_pylist()
        return texts

    def __call__(self, batch: Any) -> Any:
        """Tokenize one batch.

        Parameters
        ----------
        batch : pyarrow.Table
            A block (``batch_format="pyarrow"``); a dict of column arrays is converted.

        Returns
        -------
        pyarrow.Table
            The other columns, then the tokenizer's fields.

        Raises
        ------
        ValueError
            Missing text column, a null text (row named), an output column that already
            exists, a tokenizer call that changed the number of rows (overflowing tokens).
        TypeError
            A text column that is not strings, a tokenizer field that is neither per-token
            integers nor per-example integers (e.g. ``offset_mapping``).
        """
        pa = _pyarrow()
        table = _table(batch, "Tokenize")
        texts = self._texts(table, self.column)
        pairs = None if self.pair_column is None else self._texts(table, self.pair_column)
        rows = table.num_rows
        if rows == 0:
            # Tokenizers fail on no texts; one empty text gives the fields (and so the schema
            # every other block has), then their arrays are cut to zero rows.
            texts = [""]
            pairs = None if pairs is None else [""]
        encoding = self.tokenizer(texts, pairs, **self.tokenizer_kwargs)
        kept = [name for name in table.column_names if name not in (self.column, self.pair_column)]
        out = table.select(kept)
        for key, values in dict(encoding).items():
            if len(values) != len(texts):
                raise ValueError(
                    f"fastpad.ray.Tokenize: the tokenizer returned {len(values)} rows of {key!r} "
                    f"for {rows} texts (overflowing tokens?); one row per text is required"
                )
            if key in kept:
                raise ValueError(
                    f"fastpad.ray.Tokenize: the batch already has a column {key!r}, which the "
                    "tokenizer also returns; rename or drop it first"
                )
            array = self._field(pa, key, values)
            if array is not None:
                out = out.append_column(key, array.slice(0, rows))
        return out

    @staticmethod
    def _field(pa: Any, key: str, values: list[Any]) -> Any:
        """One tokenizer output as an Arrow column; None for an all-ones attention mask."""
        first = values[0]
        if isinstance(first, int) and not isinstance(first, bool):
            return pa.array(values, type=pa.int64())
        token = next((row[0] for row in values if isinstance(row, list) and row), 0)
        if not isinstance(first, list) or not isinstance(token, int) or isinstance(token, bool):
            what = type(first).__name__ if not isinstance(first, list) else type(token).__name__
            raise TypeError(
                f"fastpad.ray.Tokenize: the tokenizer field {key!r} holds {what} values; only "
                "per-token integers (list<int32>) and per-example integers are supported"
            )
        try:
            array = pa.array(values, type=pa.list_(pa.int32()))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as error:
            raise TypeError(
                f"fastpad.ray.Tokenize: the tokenizer field {key!r} is not rows of int32 "
                f"values: {error}"
            ) from None
        if key == "attention_mask":
            flat = array.values.to_numpy()
            if bool(np.all(flat == 1)):
                return None
        return array
