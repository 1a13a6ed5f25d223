"""`fastpad.token_batches`: a ragged batch cut into token-budget batches of similar-length rows.

The model's work is proportional to the padded cells it is given (rows x padded length), so a
batch of mixed-length rows padded to its longest row makes the model compute mostly on padding.
`token_batches` plans batches of rows of similar length under a cell budget (`plan_batches`) and
pads each with `fastpad.pad` (or, with `device`, a `Packer` in a `prefetch` thread, so batch k+1
is padded and copied while the caller's model runs batch k).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._batch import Batch
from ._inputs import normalize_inputs
from ._options import PAD_KEYWORDS, resolve_options
from ._pad import pad
from ._plan import plan_batches
from ._ragged import Ragged

__all__ = ["TokenBatches", "token_batches"]

_OWNER = "fastpad.token_batches"


def _take_ragged(ragged: Ragged, rows: npt.NDArray[np.int64]) -> Ragged:
    """The rows `rows` of `ragged`, in that order, as a new `Ragged` (one gather)."""
    offsets = np.asarray(ragged.offsets, dtype=np.int64)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    new_offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    positions = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(
        int(new_offsets[-1]), dtype=np.int64
    )
    return Ragged(ragged.values[positions], new_offsets)


def _take_value(value: Any, rows: npt.NDArray[np.int64]) -> Any:
    """The rows `rows` of one field (or of a whole batch), in the form it was given."""
    if isinstance(value, Ragged):
        return _take_ragged(value, rows)
    if hasattr(value, "detach") and hasattr(value, "shape"):  # a torch tensor (rows or scalars)
        import torch  # a tensor was given: torch is imported already

        return value[torch.from_numpy(rows).to(value.device)]
    if isinstance(value, np.ndarray):
        return value[rows]
    return [value[int(row)] for row in rows]


def _take(encoded: Any, rows: npt.NDArray[np.int64], total: int) -> Any:
    """`encoded` restricted to `rows`: what the user would pass to `fastpad.pad` for them."""
    if total == 1:  # one example (a flat row, a single-example mapping): nothing to select
        return encoded
    if isinstance(encoded, Mapping):
        return {key: _take_value(value, rows) for key, value in encoded.items()}
    return _take_value(encoded, rows)


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{_OWNER}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{_OWNER}: {name} must be >= {minimum}, got {value}")
    return int(value)


class _Prepare:
    """``prepare`` of the prefetch thread: the rows of one batch, packed by the Packer.

    Its `device` tells `prefetch` which device's streams order the batches (a closure would
    leave it to the current device).
    """

    def __init__(self, packer: Any, encoded: Any, total: int, device: Any) -> None:
        self.packer = packer
        self.encoded = encoded
        self.total = total
        self.device = device

    def __call__(self, rows: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], Batch]:
        return rows, self.packer(_take(self.encoded, rows, self.total))


class TokenBatches:
    """Token-budget batches of a ragged batch: iterate for ``(rows, batch)`` pairs.

    Made by `token_batches`; see there. On the CPU (no `device`) it can be iterated again; with
    a `device` each iteration runs its own `prefetch` thread, stopped by `close` (or by leaving
    a ``with`` block, or at the end of the iteration).

    Attributes
    ----------
    plan : list of numpy.ndarray
        The int64 row positions of each batch, in the order the batches are yielded.
    padded_cells : int
        Cells of all the padded batches together (rows x padded length, summed).
    real_tokens : int
        Tokens of all the rows (after truncation, when asked), i.e. the cells that are not padding.
    """

    def __init__(
        self,
        encoded: Any,
        plan: list[npt.NDArray[np.int64]],
        total: int,
        pad_options: dict[str, Any],
        device: Any,
        depth: int,
        padded_cells: int,
        real_tokens: int,
    ) -> None:
        self.plan = plan
        self.padded_cells = padded_cells
        self.real_tokens = real_tokens
        self._encoded = encoded
        self._total = total
        self._pad_options = pad_options
        self._device = device
        self._depth = depth
        self._packer: Any = None
        self._prefetcher: Any = None

    def __len__(self) -> int:
        return len(self.plan)

    def __repr__(self) -> str:
        return (
            f"TokenBatches(batches={len(self.plan)}, rows={self._total}, "
            f"padded_cells={self.padded_cells}, real_tokens={self.real_tokens})"
        )

    def __iter__(self) -> Iterator[tuple[npt.NDArray[np.int64], Batch]]:
        if self._device is None:
            return self._padded()
        return self._prefetched()

    def _padded(self) -> Iterator[tuple[npt.NDArray[np.int64], Batch]]:
        for rows in self.plan:
            yield rows, pad(_take(self._encoded, rows, self._total), **self._pad_options)

    def _prefetched(self) -> Iterator[tuple[npt.NDArray[np.int64], Batch]]:
        from ._packer import Packer
        from ._prefetch import prefetch

        if self._packer is None:
            # The pad options a Packer takes as defaults (return_tensors, pin_memory: its own).
            options = {
                key: value
                for key, value in self._pad_options.items()
                if key not in ("tokenizer", "return_tensors", "pin_memory")
            }
            # A prepare that calls a Packer under prefetch(depth) needs depth + 3 slots for
            # steady state to allocate no device memory (fastpad.prefetch's Notes).
            self._packer = Packer(
                self._device,
                buffers=self._depth + 3,
                tokenizer=self._pad_options["tokenizer"],
                **options,
            )
        prepare = _Prepare(self._packer, self._encoded, self._total, self._device)
        self.close()
        prefetcher = prefetch(self.plan, prepare, depth=self._depth)
        self._prefetcher = prefetcher
        try:
            yield from prefetcher
        finally:
            prefetcher.close()

    def close(self) -> None:
        """Stop the background thread of the current iteration (with `device`); idempotent."""
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None:
            prefetcher.close()

    def __enter__(self) -> TokenBatches:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def token_batches(
    encoded: Any,
    *,
    max_tokens: int,
    max_batch_size: int | None = None,
    sort: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
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
    device: Any = None,
    depth: int = 2,
) -> TokenBatches:
    """Pad a ragged batch as token-budget batches of rows of similar length.

    A model's work grows with the padded cells it is given. Rows of mixed lengths padded in
    arrival order are mostly padding; grouped by length under a cell budget (`plan_batches`)
    they pad to little more than their tokens. Iterating yields ``(rows, batch)``: ``rows`` the
    positions of the batch's rows in `encoded`, ``batch`` exactly ``fastpad.pad`` of those rows
    with the options given. Every row comes exactly once; each batch pads to at most
    `max_tokens` cells (rows x padded length), except that a row longer than the budget gets a
    batch of its own (it is never cut unless `truncation` asks for it).

    Parameters
    ----------
    encoded : list, Ragged, array, Mapping or list of Mapping
        Any input `fastpad.pad` takes (rows, a ``BatchEncoding``, a dict of fields, a list of
        per-example dicts, a `Ragged`).
    max_tokens : int
        Budget of padded cells per batch.
    max_batch_size : int, optional
        At most this many rows per batch.
    sort : bool, default True
        Group rows by length (longest first). False keeps the input order and only cuts it.
    shuffle : bool, default False
        Shuffle the order of the batches (training); see `plan_batches`.
    seed : int, optional
        Seed of the shuffle.
    tokenizer, max_length, pad_to_multiple_of, padding_side, truncation_side, \
return_attention_mask, pad_token_id, pad_values, dtype, mask_dtype, pin_memory, threads
        As in `fastpad.pad`, for every batch. The plan counts each row at its length after
        truncation and each batch at its padded length (`pad_to_multiple_of` included;
        ``padding="max_length"`` counts `max_length` per row).
    padding : bool or str, default True
        As in `fastpad.pad`.
    truncation : bool or str, default False
        As in `fastpad.pad`.
    return_tensors : {"pt", "np"}, default "pt"
        As in `fastpad.pad`.
    device : str or torch.device, optional
        None: each batch is padded by `fastpad.pad` when the loop asks for it. A device
        (``"cuda"``, ``"cuda:1"``, ``"cpu"``): batches are padded by a `Packer` on that device
        in a `prefetch` thread, `depth` batches ahead, so batch k+1 is padded and copied while
        the loop runs batch k. Tensors come as torch tensors on the device.
    depth : int, default 2
        Batches prepared ahead with `device`.

    Returns
    -------
    TokenBatches
        Iterable of ``(rows, batch)``, with ``len()`` (batches), ``plan``, ``padded_cells`` and
        ``real_tokens``.

    Raises
    ------
    TypeError, ValueError, OverflowError
        As `fastpad.pad` (options are checked here, rows when their batch is padded); also
        ValueError for ``padding=False`` (batches would need rows of one length), and for
        ``return_tensors="np"`` with a `device`.

    Examples
    --------
    >>> import fastpad
    >>> rows = [[101, 7592, 102], [101, 102], [101, 2023, 2003, 1037, 2146, 102], [101, 2748, 102]]
    >>> for positions, batch in fastpad.token_batches(
    ...     rows, max_tokens=8, pad_token_id=0, return_tensors="np"
    ... ):
    ...     print(positions.tolist(), batch["input_ids"].shape)
    [2] (1, 6)
    [0, 3] (2, 3)
    [1] (1, 2)
    """
    max_tokens_value = _check_int(max_tokens, "max_tokens", minimum=1)
    max_rows = (
        None if max_batch_size is None else _check_int(max_batch_size, "max_batch_size", minimum=1)
    )
    depth_value = _check_int(depth, "depth", minimum=1)
    pad_options: dict[str, Any] = {
        "tokenizer": tokenizer,
        "padding": padding,
        "max_length": max_length,
        "truncation": truncation,
        "pad_to_multiple_of": pad_to_multiple_of,
        "padding_side": padding_side,
        "truncation_side": truncation_side,
        "return_attention_mask": return_attention_mask,
        "return_tensors": return_tensors,
        "pad_token_id": pad_token_id,
        "pad_values": pad_values,
        "dtype": dtype,
        "mask_dtype": mask_dtype,
        "pin_memory": pin_memory,
        "threads": threads,
    }
    assert set(pad_options) == PAD_KEYWORDS  # every fastpad.pad option, passed on as given
    inputs = normalize_inputs(encoded)
    options = resolve_options(
        **{key: value for key, value in pad_options.items() if key != "threads"},
        fields=list(inputs.fields),
    )
    if options.padding == 2:
        raise ValueError(
            f"{_OWNER}: padding=False needs every row of a batch to have one length; "
            "token_batches pads (padding=True or 'max_length')"
        )
    if device is not None and options.return_tensors != "pt":
        raise ValueError(
            f"{_OWNER}: return_tensors={return_tensors!r} with device={device!r}; a device "
            "batch is made of torch tensors (return_tensors='pt')"
        )
    main = inputs.fields[options.main_key]
    if main.kind == "ragged":
        lengths = main.data.lengths
    else:
        lengths = np.fromiter(map(len, main.data), dtype=np.int64, count=inputs.rows)
    if options.padding == 1 and options.max_length >= 0:  # "max_length": every row that long
        lengths = np.maximum(lengths, options.max_length)
    if options.truncate and options.max_length >= 0:
        lengths = np.minimum(lengths, options.max_length)
    try:
        plan = plan_batches(
            lengths,
            max_tokens=max_tokens_value,
            max_batch_size=max_rows,
            multiple_of=options.multiple_of or None,
            sort=sort,
            shuffle=shuffle,
            seed=seed,
        )
    except (TypeError, ValueError) as error:
        raise type(error)(str(error).replace("fastpad.plan_batches", _OWNER)) from None
    multiple = max(options.multiple_of, 1)
    padded_cells = 0
    for rows in plan:
        longest = int(lengths[rows].max())
        padded_cells += rows.size * (-(-longest // multiple) * multiple)
    return TokenBatches(
        encoded,
        plan,
        inputs.rows,
        pad_options,
        device,
        depth_value,
        padded_cells,
        int(lengths.sum()),
    )
