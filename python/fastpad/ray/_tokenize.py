"""`fastpad.ray.Tokenize`: tokenize a text column into ragged Arrow list columns (no padding)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import TokenizerSource, first_null, pyarrow_module, table_of

__all__ = ["Tokenize"]

# Tokenizer arguments that would pad or make tensors: Tokenize keeps rows ragged by design.
_PADDING_ARGUMENTS = frozenset({"padding", "pad_to_multiple_of", "padding_side", "return_tensors"})


class Tokenize(TokenizerSource):
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
        self._set_tokenizer(tokenizer)
        self.column = column
        self.pair_column = pair_column
        self.tokenizer_kwargs = {**tokenizer_kwargs, "padding": False}

    def __repr__(self) -> str:
        source = self._tokenizer_name or type(self._tokenizer).__name__
        return f"fastpad.ray.Tokenize(tokenizer={source!r}, column={self.column!r})"

    def _texts(self, table: Any, name: str) -> list[Any]:
        pa = pyarrow_module()
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
                f"fastpad.ray.Tokenize: column {name!r}: row {first_null(column)} is null; fill "
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
        pa = pyarrow_module()
        table = table_of(batch, "Tokenize")
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
