"""`fastpad.Packer`: pack batches into a ring of pinned host buffers and copy them to the GPU.

The host buffers (one layout per batch, the pinned ring) are in `fastpad._ring`; the ragged
transfer's host side (measure, decide, pack flat) is in `fastpad._ragged_transfer` and its
device-side rebuild in `fastpad._expand`. This module is the front: options, the choice of path
per batch, the copy on the copy stream, the per-example scalars and the views handed out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from . import _ring
from ._batch import Batch
from ._inputs import Inputs, normalize_inputs
from ._options import PAD_KEYWORDS, PadOptions, check_keywords, require_torch, resolve_options
from ._pad import _stack_scalars, pad_inputs
from ._ragged_transfer import RaggedPlan, expand_outputs, pack_flat, padded_itemsizes, plan_ragged
from ._ring import Layout, Part, PinnedRing, aligned

__all__ = ["Packer", "PackerStats"]

# Keyword arguments of `fastpad.pad` a Packer forwards; the tokenizer is given to the Packer,
# return_tensors and pin_memory are its own.
_PAD_KEYWORDS = PAD_KEYWORDS - {"tokenizer", "return_tensors", "pin_memory"}


@dataclass(frozen=True)
class PackerStats:
    """Counters of a `Packer` since it was created (a snapshot; see `Packer.stats`).

    Attributes
    ----------
    batches : int
        Calls that returned a batch.
    ragged_batches : int
        Of those, batches sent as a ragged transfer (flat tokens, rebuilt on the device).
    pinned_allocations : int
        Pinned host buffers allocated (a slot's first use, or growth to a larger batch).
        Constant in steady state.
    pinned_bytes : int
        Pinned host memory this packer allocated: the ring plus slots it grew out of, which
        torch's caching host allocator keeps page-locked (reused for later pinned allocations
        of a fitting size; ``torch._C._host_emptyCache()`` unpins them). At most about twice
        `ring_bytes`, since slots grow geometrically.
    ring_bytes : int
        Pinned host memory the ring holds now.
    reuses : int
        Batches packed into a pinned buffer that was already there (no allocation).
    waits : int
        Batches that had to wait for the copy of an earlier batch out of the same slot.
    payload_bytes : int
        Bytes packed on the host for the batches: the padded tensors, or for a ragged transfer
        the kept tokens and the row layout. On the CPU path nothing is copied; this is what
        would move.
    copied_bytes : int
        Bytes copied from host to device (0 on the CPU path).
    output_bytes : int
        Bytes of the tensors handed out.
    """

    batches: int = 0
    ragged_batches: int = 0
    pinned_allocations: int = 0
    pinned_bytes: int = 0
    ring_bytes: int = 0
    reuses: int = 0
    waits: int = 0
    payload_bytes: int = 0
    copied_bytes: int = 0
    output_bytes: int = 0


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


class Packer:
    """Pack ragged batches into reused pinned host buffers and copy them to the GPU.

    Each call pads the batch with the C++ core straight into the next slot of a ring of pinned
    (page-locked) host buffers, copies it to `device` with ``non_blocking=True`` on the copy
    stream, and records a CUDA event after the copy. A slot is rewritten only after its event
    completed: the call waits (``stats.waits``; a blocking event, so the thread sleeps) rather
    than corrupt a batch still being copied. Slots grow geometrically to the largest batch seen
    and are then reused, so steady state allocates no pinned memory (``stats.pinned_allocations``
    stays put).

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
    stream : torch.cuda.Stream or "current", optional
        Stream the copies run on. Default (None): a side stream the packer creates on `device`,
        so a copy runs beside the kernels already queued on the current stream (the model's)
        instead of behind them; the current stream at each call then waits for the copy on the
        device, not on the host, so the batch can be used on it right away. ``"current"``: the
        current stream at each call (the copy queues behind the work already on it). A stream
        of your own must be on `device` (ValueError otherwise).
    ragged_transfer : bool or "auto", default False
        True: copy only each row's kept tokens and a row layout, then rebuild the padded tensors
        and the mask on the device (8 torch ops for ids and mask, no host sync). Same results;
        fewer bytes written on the host and over PCIe when batches hold much padding, a few
        more kernel launches per call. ``"auto"``: per batch, the ragged transfer when it saves
        at least ``fastpad._expand.AUTO_MIN_SAVED_BYTES`` bytes (README: "Ragged transfer").
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
    that whole buffer. Per-example scalar tensors that require grad or live on a device are
    moved with ``Tensor.to`` (as ``Batch.to`` does), not through the buffer.

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
        ragged_transfer: bool | Literal["auto"] = False,
        **pad_defaults: Any,
    ) -> None:
        require_torch("fastpad.Packer", "a Packer (torch tensors on a device)")
        torch = _ring._torch()
        if isinstance(buffers, bool) or not isinstance(buffers, int):
            raise TypeError(f"fastpad.Packer: buffers must be an int, got {type(buffers).__name__}")
        if buffers < 1:
            raise ValueError(f"fastpad.Packer: buffers must be >= 1, got {buffers}")
        if ragged_transfer not in (True, False, "auto") or not isinstance(
            ragged_transfer, bool | str
        ):
            raise ValueError(
                f"fastpad.Packer: ragged_transfer must be True, False or 'auto', got "
                f"{ragged_transfer!r}"
            )
        check_keywords("fastpad.Packer", pad_defaults, _PAD_KEYWORDS)
        if isinstance(stream, str) and stream != "current":
            raise ValueError(
                f"fastpad.Packer: stream must be None, 'current' or a torch.cuda.Stream, "
                f"got {stream!r}"
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
        self.stream: Any = None  # the copy stream; None: the current stream at each call
        if self._cuda:
            if stream is None:
                self.stream = torch.cuda.Stream(device=self.device)
            elif stream != "current":
                if not isinstance(stream, torch.cuda.Stream):
                    raise TypeError(
                        "fastpad.Packer: stream must be None, 'current' or a torch.cuda.Stream, "
                        f"got {type(stream).__name__}"
                    )
                if torch.device(stream.device) != self.device:
                    # An event recorded on another device's stream would say nothing about
                    # this device's copy: slots would be rewritten while still being copied.
                    raise ValueError(
                        f"fastpad.Packer: stream is on {stream.device} but the packer copies "
                        f"to {self.device}; create it with torch.cuda.Stream(device="
                        f"{str(self.device)!r})"
                    )
                self.stream = stream
        self.tokenizer = tokenizer
        self.ragged_transfer: bool | str = ragged_transfer
        self.buffers = buffers
        self._defaults = dict(pad_defaults)
        self._counters = dict.fromkeys(PackerStats.__dataclass_fields__, 0)
        self._ring = PinnedRing(buffers, self._counters)
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError(
            "fastpad.Packer holds pinned buffers and CUDA events and cannot be pickled; "
            "create one per process"
        )

    def __repr__(self) -> str:
        stream = "current" if self.stream is None else "side"
        return (
            f"Packer(device={str(self.device)!r}, buffers={self.buffers}, stream={stream!r}, "
            f"ragged_transfer={self.ragged_transfer!r})"
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
        check_keywords("fastpad.Packer", pad_kwargs, _PAD_KEYWORDS)
        kwargs = {**self._defaults, **pad_kwargs}
        threads = kwargs.pop("threads", None)
        inputs = normalize_inputs(encoded_inputs)
        options = resolve_options(
            tokenizer=self.tokenizer,
            **kwargs,
            return_tensors="pt",
            pin_memory=False,  # the packer pins its own ring
            fields=list(inputs.fields),
        )
        # Per-example scalar fields ride in the same buffer and the same copy.
        scalars = {
            key: _stack_scalars(key, field.data, options, inputs)
            for key, field in inputs.fields.items()
            if field.kind == "scalars"
        }
        padded_inputs = Inputs(
            {key: field for key, field in inputs.fields.items() if field.kind != "scalars"},
            inputs.rows,
        )
        with self._lock:
            plan = None
            if self.ragged_transfer:
                auto = self.ragged_transfer == "auto"
                plan = plan_ragged(padded_inputs, options, threads, auto=auto)
            if plan is not None:
                batch = self._ragged(inputs, plan, options, scalars)
                self._counters["ragged_batches"] += 1
            else:
                batch = self._padded(inputs, padded_inputs, options, scalars, threads)
            self._counters["batches"] += 1
            self._counters["output_bytes"] += sum(
                _nbytes(value) for value in batch.values() if hasattr(value, "element_size")
            )
        return batch

    # -- copy ---------------------------------------------------------------------------------

    def _acquire(self, nbytes: int) -> Any:
        if self._cuda:
            return self._ring.acquire(nbytes)
        torch = _ring._torch()
        return torch.empty(nbytes, dtype=torch.uint8)  # fresh: CPU results are never shared

    def _to_device(self, layout: Layout, dtype: Any) -> Any:
        """The batch buffer on the device as a 1-D tensor of `dtype` (copied on CUDA)."""
        nbytes = layout.nbytes
        self._counters["payload_bytes"] += nbytes
        host = layout.buffer[:nbytes].view(dtype)
        if not self._cuda:
            return host
        torch = _ring._torch()
        consumer = torch.cuda.current_stream(self.device)
        stream = consumer if self.stream is None else self.stream
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            # Allocated on the copy stream; record_stream below keeps the caching allocator from
            # handing this memory to the copy stream again before the consumer is done with it.
            device_buffer = torch.empty(host.shape[0], dtype=dtype, device=self.device)
            device_buffer.copy_(host, non_blocking=True)
            event = self._ring.guard(stream)
        if stream != consumer:
            consumer.wait_event(event)
            if device_buffer.is_cuda:  # (a simulated device in tests has CPU buffers)
                device_buffer.record_stream(consumer)
        self._counters["copied_bytes"] += nbytes
        return device_buffer

    # -- per-example scalars ------------------------------------------------------------------

    @staticmethod
    def _in_buffer(tensor: Any) -> bool:
        """Scalars copied through the batch buffer: CPU tensors without autograd history."""
        return bool(tensor.device.type == "cpu" and not tensor.requires_grad)

    def _scalar_bytes(self, scalars: dict[str, Any]) -> int:
        return sum(
            aligned(_nbytes(tensor)) for tensor in scalars.values() if self._in_buffer(tensor)
        )

    def _stage_scalars(
        self, layout: Layout, scalars: dict[str, Any]
    ) -> tuple[dict[str, Part], dict[str, Any]]:
        """Write CPU scalar fields into the batch buffer (torch copies: any dtype, bfloat16
        included); the others are moved on their own."""
        staged: dict[str, Part] = {}
        separate: dict[str, Any] = {}
        for key, tensor in scalars.items():
            if self._in_buffer(tensor):
                part = layout.take(tensor.dtype, tuple(tensor.shape))
                part.host_view(layout.buffer).copy_(tensor)
                staged[key] = part
            else:
                separate[key] = tensor
        return staged, separate

    def _scalar_outputs(
        self, device_buffer: Any, staged: dict[str, Part], separate: dict[str, Any]
    ) -> dict[str, Any]:
        outputs = {key: part.device_view(device_buffer) for key, part in staged.items()}
        for key, tensor in separate.items():
            outputs[key] = tensor.to(self.device, non_blocking=True)
        return outputs

    # -- padded path ----------------------------------------------------------------------------

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
        torch = _ring._torch()
        layout = Layout(self._acquire)
        itemsizes = padded_itemsizes(padded_inputs, options)
        parts: dict[int, Part] = {}
        scalar_bytes = self._scalar_bytes(scalars)

        def allocate(rows: int, width: int, dtype_name: str) -> tuple[Any, Any]:
            layout.reserve(sum(aligned(rows * width * size) for size in itemsizes) + scalar_bytes)
            part = layout.take(getattr(torch, dtype_name), (rows, width))
            view = layout.numpy_view(part)
            parts[id(view)] = part
            return view, view

        host = pad_inputs(padded_inputs, options, threads=threads, allocate=allocate)
        staged, separate = self._stage_scalars(layout, scalars)
        device_buffer = self._to_device(layout, getattr(torch, options.dtype))
        outputs = {key: parts[id(value)].device_view(device_buffer) for key, value in host.items()}
        outputs.update(self._scalar_outputs(device_buffer, staged, separate))
        return _ordered(inputs, outputs)

    # -- ragged path (host and device sides in fastpad._ragged_transfer) ------------------------

    def _ragged(
        self, inputs: Inputs, plan: RaggedPlan, options: PadOptions, scalars: dict[str, Any]
    ) -> Batch:
        layout = Layout(self._acquire)
        parts, meta = pack_flat(layout, plan, options, self._scalar_bytes(scalars))
        staged, separate = self._stage_scalars(layout, scalars)

        # Copy, then rebuild on the consumer stream (no host synchronization).
        device_buffer = self._to_device(layout, getattr(_ring._torch(), options.dtype))
        outputs = expand_outputs(device_buffer, plan, options, parts, meta)
        outputs.update(self._scalar_outputs(device_buffer, staged, separate))
        return _ordered(inputs, outputs)


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
