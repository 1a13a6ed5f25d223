"""What `Collate` and `Tokenize` share: Arrow batches and tokenizers loaded once per process."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["TokenizerSource", "first_null", "pyarrow_module", "table_of"]

_tokenizers: dict[str, Any] = {}
_tokenizers_lock = threading.Lock()


def pyarrow_module() -> Any:
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


def table_of(batch: Any, owner: str) -> Any:
    """`batch` as a pyarrow.Table (a RecordBatch or a dict of columns is converted)."""
    pa = pyarrow_module()
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


def first_null(column: Any) -> int:
    mask = column.is_null()
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


class TokenizerSource:
    """Holds a tokenizer given as an object (pickled along) or as a name or path (loaded on first
    use, once per process, and never pickled)."""

    _tokenizer: Any
    _tokenizer_name: str | None

    def _set_tokenizer(self, tokenizer: Any) -> None:
        self._tokenizer, self._tokenizer_name = _tokenizer_source(tokenizer)

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
