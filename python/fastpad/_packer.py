"""`fastpad.Packer`: pack batches into a ring of pinned host buffers and copy them to the GPU.

Layout of one batch: every output (padded fields, the attention mask, per-example scalars; or, with
``ragged_transfer=True``, the row offsets and the real tokens of every field) is a view of one
uint8 host buffer at a 256-byte aligned offset. On CUDA that buffer is a pinned ring slot and one
``copy_(non_blocking=True)`` moves the used bytes; the device tensors are views of one device
buffer at the same offsets. On the CPU the buffer is fresh for every call, so results are never
shared between calls.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._batch import Batch
from ._options import Field, Inputs, PadOptions, normalize_inputs, resolve_options
from ._pad import _stack_scalars, pad_inputs

__all__ = ["Packer", "PackerStats", "expand_ragged", "ragged_mask", "ragged_scatter_index"]

# Device kernels load 16-byte vectors at best; 256 keeps every view on its own cache lines too.
_ALIGN = 256
# Smallest pinned slot: pinning is a driver call under a global lock, so tiny batches share one.
_MIN_SLOT_BYTES = 1 << 16
_ITEMSIZES = {"bool": 1, "int8": 1, "int32": 4, "int64": 8}
# Keyword arguments of `fastpad.pad` a Packer forwards; return_tensors and pin_memory are its own.
_PAD_KEYWORDS = frozenset(
    {
        "padding",
        "max_length",
        "truncation",
        "pad_to_multiple_of",
        "padding_side",
        "truncation_side",
        "return_attention_mask",
        "pad_token_id",
        "pad_values",
        "dtype",
        "mask_dtype",
        "threads",
    }
)


def _aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN


def _torch() -> Any:
    import torch

    return torch


@dataclass(frozen=True)
class PackerStats:
    """Counters of a `Packer` since it was created (a snapshot; see `Packer.stats`).

    Attributes
    ----------
    batches : int
        Calls that returned a batch.
    pinned_allocations : int
        Pinned host buffers allocated (a slot's first use, or growth to a larger batch).
        Constant in steady state.
    pinned_bytes : int
        Bytes of pinned host memory the ring holds now.
    reuses : int
        Batches packed into a pinned buffer that was already there (no allocation).
    waits : int
        Batches that had to wait for the copy of an earlier batch out of the same slot.
    payload_bytes : int
        Bytes packed on the host for the batches: the padded tensors, or with ragged transfer the
        row offsets and real tokens. On the CPU path nothing is copied; this is what would move.
    copied_bytes : int
        Bytes copied from host to device (0 on the CPU path).
    output_bytes : int
        Bytes of the tensors handed out.
    """

    batches: int = 0
    pinned_allocations: int = 0
    pinned_bytes: int = 0
    reuses: int = 0
    waits: int = 0
    payload_bytes: int = 0
    copied_bytes: int = 0
    output_bytes: int = 0


class _Part:
    """Where one output lives in the batch buffer."""

    __slots__ = ("dtype", "nbytes", "offset", "shape")

    def __init__(self, offset: int, dtype: Any, shape: tuple[int, ...]) -> None:
        self.offset = offset
        self.dtype = dtype  # torch.dtype
        self.shape = shape
        count = 1
        for size in shape:
            count *= size
        self.nbytes = count * int(dtype.itemsize)

    def view(self, buffer: Any) -> Any:
        return buffer[self.offset : self.offset + self.nbytes].view(self.dtype).view(self.shape)


@functools.cache
def _numpy_dtype(dtype: Any) -> np.dtype[Any]:
    """The numpy dtype of a torch dtype."""
    return _torch().empty((), dtype=dtype).numpy().dtype  # type: ignore[no-any-return]


class _Carver:
    """Hands out aligned numpy views of one uint8 host tensor, acquired once its size is known.

    Host-side views are numpy (cheap to make, and what the core writes into); the device-side
    views are made from the `_Part` records once the bytes have been copied.
    """

    def __init__(self, acquire: Callable[[int], Any]) -> None:
        self._acquire = acquire
        self.buffer: Any = None  # torch uint8 tensor
        self.array: Any = None  # numpy view of `buffer`
        self.used = 0  # aligned start of the next view
        self.end = 0  # end of the last view: the bytes a copy has to move

    def reserve(self, nbytes: int) -> None:
        if self.buffer is None:
            self.buffer = self._acquire(nbytes)
            self.array = self.buffer.numpy()

    def take(self, dtype: Any, shape: tuple[int, ...]) -> tuple[_Part, Any]:
        part = _Part(self.used, dtype, shape)
        end = part.offset + part.nbytes
        if self.buffer is None or end > self.array.shape[0]:
            # The sizes reserved up front cover every take; reaching this is a fastpad bug.
            raise RuntimeError("fastpad.Packer: batch layout exceeds its reserved buffer")
        self.used = _aligned(end)
        self.end = end
        view = self.array[part.offset : end].view(_numpy_dtype(dtype)).reshape(shape)
        return part, view


class _Slot:
    """One pinned host buffer of the ring and the event recorded after its last copy."""

    __slots__ = ("buffer", "event")

    def __init__(self) -> None:
        self.buffer: Any = None
        self.event: Any = None


def ragged_scatter_index(offsets: Any, width: int, total: int, *, pad_left: bool) -> Any:
    """Flat position in a ``[rows, width]`` padded tensor of every token of a ragged batch.

    Runs on the device of `offsets` without a host synchronization: `total` (the number of
    tokens, ``offsets[-1]``) is passed in so `torch.repeat_interleave` knows its output size.

    Parameters
    ----------
    offsets : torch.Tensor
        int64 ``[rows + 1]``, starting at 0; row ``r`` holds tokens ``offsets[r]:offsets[r+1]``,
        each row at most `width` long.
    width : int
        Padded length.
    total : int
        ``offsets[-1]``.
    pad_left : bool
        Rows end at the right edge (left padding) instead of starting at column 0.

    Returns
    -------
    torch.Tensor
        int64 ``[total]``: token ``t`` of row ``r`` goes to ``r * width + column``.
    """
    torch = _torch()
    rows = offsets.shape[0] - 1
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    row_base = torch.arange(rows, device=offsets.device, dtype=torch.int64) * width - starts
    if pad_left:
        row_base = row_base + (width - lengths)
    return torch.repeat_interleave(row_base, lengths, output_size=total) + torch.arange(
        total, device=offsets.device, dtype=torch.int64
    )


def expand_ragged(values: Any, index: Any, rows: int, width: int, pad_value: int) -> Any:
    """Scatter the tokens of a ragged batch into a padded ``[rows, width]`` tensor.

    Parameters
    ----------
    values : torch.Tensor
        ``[total]`` tokens, row after row.
    index : torch.Tensor
        `ragged_scatter_index` of the batch.
    rows, width : int
        Output shape.
    pad_value : int
        Value of the cells no token lands in.

    Returns
    -------
    torch.Tensor
        ``[rows, width]`` of ``values.dtype`` on ``values.device``.
    """
    torch = _torch()
    out = torch.full((rows * width,), pad_value, dtype=values.dtype, device=values.device)
    out.index_copy_(0, index, values)
    return out.view(rows, width)


def ragged_mask(offsets: Any, width: int, dtype: Any, *, pad_left: bool) -> Any:
    """Attention mask ``[rows, width]`` of a ragged batch, from its row lengths (no host sync).

    Parameters
    ----------
    offsets : torch.Tensor
        int64 ``[rows + 1]`` row offsets.
    width : int
        Padded length.
    dtype : torch.dtype
        Mask dtype.
    pad_left : bool
        Ones at the right edge instead of from column 0.

    Returns
    -------
    torch.Tensor
    """
    torch = _torch()
    lengths = offsets[1:] - offsets[:-1]
    columns = torch.arange(width, device=offsets.device, dtype=torch.int64)
    if pad_left:
        mask = columns[None, :] >= (width - lengths)[:, None]
    else:
        mask = columns[None, :] < lengths[:, None]
    return mask.to(dtype)


def _padded_itemsizes(inputs: Inputs, options: PadOptions) -> list[int]:
    """Item sizes of the buffers `pad_inputs` allocates, in its order (fields, then the mask)."""
    sizes = [
        _ITEMSIZES[options.mask_dtype if key == "attention_mask" else options.dtype]
        for key, field in inputs.fields.items()
        if field.kind != "scalars"
    ]
    if options.return_attention_mask and "attention_mask" not in inputs.fields:
        sizes.append(_ITEMSIZES[options.mask_dtype])
    return sizes


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


class Packer:
    """Pack ragged batches into reused pinned host buffers and copy them to the GPU.

    Each call pads the batch with the C++ core straight into the next slot of a ring of pinned
    (page-locked) host buffers, copies it to `device` with ``non_blocking=True`` on `stream`, and
    records a CUDA event after the copy. A slot is rewritten only after its event completed: the
    call waits (``stats.waits``) rather than corrupt a batch still being copied. Slots grow
    geometrically to the largest batch seen and are then reused, so steady state allocates no
    pinned memory (``stats.pinned_allocations`` stays put).

    With ``device="cpu"``, or ``"cuda"`` on a machine where torch sees no CUDA device, the packer
    pads into fresh CPU tensors on every call (no pinning, no copies, `stream` ignored, `device`
    reports ``cpu``), so the same code and tests run anywhere.

    Parameters
    ----------
    device : str or torch.device, default "cuda"
        ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
    buffers : int, default 2
        Pinned slots in the ring. Two let the next batch be packed while the last one is copied.
    tokenizer : transformers tokenizer, optional
        Supplies pad ids, padding side and field names, as in `fastpad.pad`.
    stream : torch.cuda.Stream, optional
        Stream the copies run on; default the current stream at each call. With another stream,
        the current stream is made to wait (on the device, not the host) for the copy, so the
        batch can be used on the current stream right away.
    ragged_transfer : bool, default False
        Copy only the row offsets and the real tokens, then build the padded tensors and the
        mask on the device (`ragged_scatter_index`, `expand_ragged`, `ragged_mask`). Same results;
        fewer bytes over PCIe when batches hold much padding (``stats.payload_bytes``).
    **pad_defaults
        Defaults for the `fastpad.pad` options (``padding``, ``max_length``, ``truncation``,
        ``pad_to_multiple_of``, ``padding_side``, ``truncation_side``,
        ``return_attention_mask``, ``pad_token_id``, ``pad_values``, ``dtype``, ``mask_dtype``,
        ``threads``); each call may override them.

    Notes
    -----
    Thread safety: calls are serialized by a lock, so one packer may be shared between threads,
    but they then pack one at a time; give each producer thread its own packer to pack in
    parallel. A packer cannot be pickled (it holds pinned memory and CUDA events); build one
    per process.

    The tensors of one batch are views of one buffer (one device allocation, one copy): keeping
    any of them keeps the whole batch's memory alive, and ``torch.save`` of one tensor writes
    that whole buffer.

    Examples
    --------
    >>> packer = Packer("cpu", pad_token_id=0)
    >>> batch = packer([[101, 7592, 102], [101, 102]])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
    """

    def __init__(
        self,
        device: Any = "cuda",
        *,
        buffers: int = 2,
        tokenizer: Any = None,
        stream: Any = None,
        ragged_transfer: bool = False,
        **pad_defaults: Any,
    ) -> None:
        torch = _torch()
        if isinstance(buffers, bool) or not isinstance(buffers, int):
            raise TypeError(f"fastpad.Packer: buffers must be an int, got {type(buffers).__name__}")
        if buffers < 1:
            raise ValueError(f"fastpad.Packer: buffers must be >= 1, got {buffers}")
        unknown = sorted(set(pad_defaults) - _PAD_KEYWORDS)
        if unknown:
            raise TypeError(
                f"fastpad.Packer: unexpected keyword argument(s) {unknown}; accepted pad options: "
                f"{sorted(_PAD_KEYWORDS)}"
            )
        requested = torch.device(device)
        if requested.type not in ("cuda", "cpu"):
            raise ValueError(
                f"fastpad.Packer: device must be 'cuda' or 'cpu', got {str(requested)!r}"
            )
        self._cuda = requested.type == "cuda" and torch.cuda.is_available()
        if self._cuda and requested.index is None:
            requested = torch.device("cuda", torch.cuda.current_device())
        self.device = requested if self._cuda else torch.device("cpu")
        self.tokenizer = tokenizer
        self.stream = stream if self._cuda else None
        self.ragged_transfer = bool(ragged_transfer)
        self.buffers = buffers
        self._defaults = dict(pad_defaults)
        self._slots = [_Slot() for _ in range(buffers)] if self._cuda else []
        self._next_slot = 0
        self._current_slot: _Slot | None = None  # the slot the batch in progress is packed into
        self._scratch: Any = None  # host buffer for the padded staging of ragged transfers
        self._counters = dict.fromkeys(PackerStats.__dataclass_fields__, 0)
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError(
            "fastpad.Packer holds pinned buffers and CUDA events and cannot be pickled; "
            "create one per process"
        )

    def __repr__(self) -> str:
        return (
            f"Packer(device={str(self.device)!r}, buffers={self.buffers}, "
            f"ragged_transfer={self.ragged_transfer})"
        )

    @property
    def stats(self) -> PackerStats:
        """Snapshot of the counters (`PackerStats`)."""
        with self._lock:
            return PackerStats(**self._counters)

    def __call__(self, encoded_inputs: Any, **pad_kwargs: Any) -> Batch:
        """Pad `encoded_inputs` and return the batch on the packer's device.

        Parameters
        ----------
        encoded_inputs : list, Ragged, array, Mapping or list of Mapping
            Any input `fastpad.pad` takes.
        **pad_kwargs
            `fastpad.pad` options for this call, over the packer's defaults.

        Returns
        -------
        Batch
            Tensors on `device`. On CUDA they are ready for use on the stream that was current
            at the call (the copy is asynchronous to the host).

        Raises
        ------
        TypeError, ValueError, OverflowError
            As `fastpad.pad`; also TypeError for an unknown keyword.
        """
        unknown = sorted(set(pad_kwargs) - _PAD_KEYWORDS)
        if unknown:
            raise TypeError(
                f"fastpad.Packer: unexpected keyword argument(s) {unknown}; accepted pad options: "
                f"{sorted(_PAD_KEYWORDS)}"
            )
        kwargs = {**self._defaults, **pad_kwargs}
        threads = kwargs.pop("threads", None)
        inputs = normalize_inputs(encoded_inputs)
        options = resolve_options(
            tokenizer=self.tokenizer,
            padding=kwargs.get("padding", True),
            max_length=kwargs.get("max_length"),
            truncation=kwargs.get("truncation", False),
            pad_to_multiple_of=kwargs.get("pad_to_multiple_of"),
            padding_side=kwargs.get("padding_side"),
            truncation_side=kwargs.get("truncation_side"),
            return_attention_mask=kwargs.get("return_attention_mask"),
            return_tensors="pt",
            pad_token_id=kwargs.get("pad_token_id"),
            pad_values=kwargs.get("pad_values"),
            dtype=kwargs.get("dtype"),
            mask_dtype=kwargs.get("mask_dtype"),
            pin_memory=False,  # the packer pins its own ring
            fields=list(inputs.fields),
        )
        # Per-example scalar fields ride in the same buffer and the same copy.
        scalars = {
            key: _stack_scalars(key, field.data, options)
            for key, field in inputs.fields.items()
            if field.kind == "scalars"
        }
        padded_inputs = Inputs(
            {key: field for key, field in inputs.fields.items() if field.kind != "scalars"},
            inputs.rows,
        )
        with self._lock:
            if self.ragged_transfer:
                batch = self._ragged(inputs, padded_inputs, options, scalars, threads)
            else:
                batch = self._padded(inputs, padded_inputs, options, scalars, threads)
            self._counters["batches"] += 1
            self._counters["output_bytes"] += sum(
                _nbytes(value) for value in batch.values() if hasattr(value, "element_size")
            )
        return batch

    # -- host buffers -------------------------------------------------------------------------

    def _acquire(self, nbytes: int) -> Any:
        """The next pinned ring slot, grown to at least `nbytes` once its last copy is done."""
        torch = _torch()
        slot = self._slots[self._next_slot]
        self._current_slot = slot
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if slot.event is not None and not slot.event.query():
            # The copy out of this slot is still in flight: writing now would corrupt it.
            slot.event.synchronize()
            self._counters["waits"] += 1
        if slot.buffer is not None and slot.buffer.numel() >= nbytes:
            self._counters["reuses"] += 1
            return slot.buffer
        old = 0 if slot.buffer is None else int(slot.buffer.numel())
        capacity = max(_MIN_SLOT_BYTES, 2 * old)
        while capacity < nbytes:
            capacity *= 2
        # The old buffer's copy has completed (waited above), so dropping it is safe.
        slot.buffer = torch.empty(capacity, dtype=torch.uint8, pin_memory=True)
        self._counters["pinned_allocations"] += 1
        self._counters["pinned_bytes"] += capacity - old
        return slot.buffer

    def _scratch_buffer(self, nbytes: int) -> Any:
        """A reused pageable host buffer; only used within one (locked) call."""
        torch = _torch()
        if self._scratch is None or self._scratch.numel() < nbytes:
            self._scratch = torch.empty(max(nbytes, _MIN_SLOT_BYTES), dtype=torch.uint8)
        return self._scratch

    def _to_device(self, carver: _Carver) -> Any:
        """Copy the used bytes of the batch buffer to the device; return the device buffer."""
        self._counters["payload_bytes"] += carver.end
        if not self._cuda:
            return carver.buffer
        torch = _torch()
        consumer = torch.cuda.current_stream(self.device)
        stream = consumer if self.stream is None else self.stream
        slot = self._current_slot
        assert slot is not None
        if slot.event is None:
            slot.event = torch.cuda.Event()
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            # Allocated on the copy stream; record_stream below keeps the caching allocator from
            # handing this memory to the copy stream again before the consumer is done with it.
            device_buffer = torch.empty(carver.end, dtype=torch.uint8, device=self.device)
            device_buffer.copy_(carver.buffer[: carver.end], non_blocking=True)
            slot.event.record(stream)
        if stream != consumer:
            consumer.wait_event(slot.event)
            device_buffer.record_stream(consumer)
        self._counters["copied_bytes"] += carver.end
        return device_buffer

    def _stage_scalars(
        self, carver: _Carver, scalars: dict[str, Any]
    ) -> tuple[dict[str, _Part], dict[str, Any]]:
        """Copy CPU scalar fields into the batch buffer; others are moved on their own."""
        staged: dict[str, _Part] = {}
        separate: dict[str, Any] = {}
        for key, tensor in scalars.items():
            if tensor.device.type == "cpu":
                part, view = carver.take(tensor.dtype, tuple(tensor.shape))
                view[...] = tensor.numpy()
                staged[key] = part
            else:
                separate[key] = tensor
        return staged, separate

    @staticmethod
    def _scalar_bytes(scalars: dict[str, Any]) -> int:
        return sum(
            _aligned(_nbytes(tensor)) for tensor in scalars.values() if tensor.device.type == "cpu"
        )

    def _scalar_outputs(
        self, device_buffer: Any, staged: dict[str, _Part], separate: dict[str, Any]
    ) -> dict[str, Any]:
        outputs = {key: part.view(device_buffer) for key, part in staged.items()}
        for key, tensor in separate.items():
            outputs[key] = tensor.to(self.device, non_blocking=True)
        return outputs

    # -- the two paths ------------------------------------------------------------------------

    def _padded(
        self,
        inputs: Inputs,
        padded_inputs: Inputs,
        options: PadOptions,
        scalars: dict[str, Any],
        threads: int | None,
    ) -> Batch:
        if not self._cuda:
            # Fresh tensors from the engine, as `fastpad.pad` makes them: never shared.
            batch = pad_inputs(inputs, options, threads=threads)
            self._counters["payload_bytes"] += sum(
                _nbytes(value) for value in batch.values() if hasattr(value, "element_size")
            )
            return batch
        torch = _torch()
        carver = _Carver(self._acquire)
        itemsizes = _padded_itemsizes(padded_inputs, options)
        parts: dict[int, _Part] = {}

        def allocate(rows: int, width: int, dtype_name: str) -> tuple[Any, Any]:
            cells = rows * width
            carver.reserve(
                sum(_aligned(cells * size) for size in itemsizes) + self._scalar_bytes(scalars)
            )
            part, view = carver.take(getattr(torch, dtype_name), (rows, width))
            parts[id(view)] = part
            return view, view

        host = pad_inputs(padded_inputs, options, threads=threads, allocate=allocate)
        staged, separate = self._stage_scalars(carver, scalars)
        device_buffer = self._to_device(carver)
        outputs = {key: parts[id(value)].view(device_buffer) for key, value in host.items()}
        outputs.update(self._scalar_outputs(device_buffer, staged, separate))
        return _ordered(inputs, outputs)

    def _ragged(
        self,
        inputs: Inputs,
        padded_inputs: Inputs,
        options: PadOptions,
        scalars: dict[str, Any],
        threads: int | None,
    ) -> Batch:
        torch = _torch()
        # 1. Pad into a pageable scratch buffer with the core: it checks the input and applies
        #    truncation, so the real tokens are then a gather away.
        scratch = _Carver(self._scratch_buffer)
        itemsizes = _padded_itemsizes(padded_inputs, options)

        def allocate(rows: int, width: int, dtype_name: str) -> tuple[Any, Any]:
            scratch.reserve(sum(_aligned(rows * width * size) for size in itemsizes))
            _part, view = scratch.take(getattr(torch, dtype_name), (rows, width))
            return view, view

        host = pad_inputs(padded_inputs, options, threads=threads, allocate=allocate)
        lengths, width = _core.measure(
            [
                (key, 0, field.data) if field.kind == "rows" else (key, 1, *_flat(field))
                for key, field in padded_inputs.fields.items()
            ],
            options.padding,
            options.max_length,
            options.truncate,
            options.multiple_of,
        )
        if options.truncate:
            # measure() gives the input lengths; the core keeps min(length, max_length) tokens.
            lengths = np.minimum(lengths, options.max_length)
        rows = int(lengths.shape[0])
        total = int(lengths.sum())
        # Fields packed from the input (the created mask is rebuilt on the device instead).
        fields = [key for key in padded_inputs.fields if key in host]
        dtypes = {
            key: getattr(torch, options.mask_dtype if key == "attention_mask" else options.dtype)
            for key in fields
        }

        # 2. Offsets and real tokens into the batch buffer (the pinned slot on CUDA).
        carver = _Carver(self._acquire if self._cuda else _torch_empty)
        carver.reserve(
            _aligned((rows + 1) * 8)
            + sum(_aligned(total * dtypes[key].itemsize) for key in fields)
            + self._scalar_bytes(scalars)
        )
        offsets_part, offsets = carver.take(torch.int64, (rows + 1,))
        offsets[0] = 0
        np.cumsum(lengths, out=offsets[1:])
        row_base = np.arange(rows, dtype=np.int64) * width - offsets[:-1]
        if options.pad_left:
            row_base += width - lengths
        flat_index = np.repeat(row_base, lengths) + np.arange(total, dtype=np.int64)
        value_parts = {}
        for key in fields:
            part, view = carver.take(dtypes[key], (total,))
            np.take(host[key].reshape(-1), flat_index, out=view, mode="clip")
            value_parts[key] = part
        staged, separate = self._stage_scalars(carver, scalars)

        # 3. Copy, then expand on the device (on the consumer stream; no host synchronization).
        device_buffer = self._to_device(carver)
        device_offsets = offsets_part.view(device_buffer)
        index = ragged_scatter_index(device_offsets, width, total, pad_left=options.pad_left)
        outputs = {
            key: expand_ragged(
                part.view(device_buffer), index, rows, width, options.pad_values[key]
            )
            for key, part in value_parts.items()
        }
        if "attention_mask" in host and "attention_mask" not in outputs:
            outputs["attention_mask"] = ragged_mask(
                device_offsets,
                width,
                getattr(torch, options.mask_dtype),
                pad_left=options.pad_left,
            )
        outputs.update(self._scalar_outputs(device_buffer, staged, separate))
        return _ordered(inputs, outputs)


def _torch_empty(nbytes: int) -> Any:
    torch = _torch()
    return torch.empty(nbytes, dtype=torch.uint8)


def _flat(field: Field) -> tuple[Any, Any]:
    return field.data.values, field.data.offsets


def _ordered(inputs: Inputs, outputs: dict[str, Any]) -> Batch:
    """Order keys as `fastpad.pad` does: the input fields, then a created attention mask."""
    batch = Batch()
    for key in inputs.fields:
        if key in outputs:
            batch[key] = outputs[key]
    for key, value in outputs.items():
        if key not in batch:
            batch[key] = value
    return batch
