"""`fastpad.Packer`: pack batches into a ring of pinned host buffers and copy them to the GPU.

The slots (pinned host buffers and the device buffers they are copied into) and the CUDA calls
are in `fastpad._ring`; the ragged transfer's host side (measure, decide, pack flat) is in
`fastpad._ragged_transfer` and its device-side rebuild in `fastpad._expand`. This module is the
front: options, the choice of path per batch, the padded path (one pass over the fields, the
slot layout, one pack straight into the pinned slot, the copy, one view per output), the
per-example scalars and the views handed out.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import _ring
from ._batch import Batch
from ._inputs import Inputs, normalize_inputs
from ._options import PAD_KEYWORDS, PadOptions, check_keywords, require_torch, resolve_options
from ._pad import _stack_scalars, measure_fields, pack_into, pad_inputs
from ._ragged_transfer import ITEMSIZES, RaggedPlan, expand_outputs, pack_flat, plan_ragged
from ._ring import Layout, Part, PinnedRing, Slot, aligned, slot_layout

__all__ = ["Packer", "PackerStats"]

# Keyword arguments of `fastpad.pad` a Packer forwards; the tokenizer is given to the Packer,
# return_tensors and pin_memory are its own.
_PAD_KEYWORDS = PAD_KEYWORDS - {"tokenizer", "return_tensors", "pin_memory"}
_NUMPY_TYPES = {"bool": np.bool_, "int8": np.int8, "int32": np.int32, "int64": np.int64}
# Whether `Packer("cuda")` on a machine without CUDA has warned in this process (it warns once).
_warned_no_cuda = False


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
    device_allocations : int
        Device buffers the ring allocated: a slot's first copy, growth to a larger batch, or a
        new buffer because the batch last copied into the slot is still held (its tensors are
        never overwritten). Constant in steady state when each batch is let go of within
        `buffers` calls (and torch has ``torch._C._storage_Use_Count``: without it, one per
        call); 0 on the CPU path.
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
    device_allocations: int = 0


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


class Packer:
    """Pack ragged batches into reused pinned host buffers and copy them to the GPU.

    Each call pads the batch with the C++ core straight into the next slot of a ring of pinned
    (page-locked) host buffers, copies it with one ``non_blocking=True`` copy on the copy stream
    into the slot's device buffer, and records a CUDA event after the copy. A host buffer is
    rewritten only after its event completed: the call waits (``stats.waits``; a blocking event,
    so the thread sleeps) rather than corrupt a batch still being copied. A device buffer is
    rewritten only once no tensor of the batch last copied into it is held any more, and on the
    device only after the work queued on its consumer stream before that; a batch still held
    keeps its buffer and the slot takes a new one (``stats.device_allocations``). Slots grow
    geometrically to the largest batch seen and are then reused, so steady state allocates
    neither pinned nor device memory. Each slot's device buffer keeps its address while it is
    reused, but a field's tensor sits at an offset that moves with rows x width: the outputs'
    addresses are not fixed (CUDA-graph inputs must be copied into static tensors).

    With ``device="cpu"`` the packer pads into fresh CPU tensors on every call (no pinning, no
    copies, `stream` ignored), so the same code and tests run anywhere. ``"cuda"`` on a machine
    where torch sees no CUDA device does the same (`device` reports ``cpu``) and warns once per
    process (a RuntimeWarning): code written for a GPU keeps running on a CPU-only machine, and
    says that it does.

    Parameters
    ----------
    device : str or torch.device, default "cuda"
        ``"cuda"``, ``"cuda:N"`` or ``"cpu"``. ``"cuda"`` is the device current at the first
        copy (a packer built before ``torch.cuda.set_device(local_rank)`` copies to
        ``local_rank``), kept from then on; `device` says ``cuda`` until then.
    buffers : int, default 3
        Slots in the ring. A slot whose last batch is still held takes a new device buffer, and
        a release is seen at the next call: 3 lets the usual loop (``batch = packer(rows);
        model(**batch)``, which holds batch k-1 while packing batch k) reuse every buffer, each
        copy waiting on the device only for the model step before the previous one, so it runs
        beside the previous step (with 2 it waits for it). Under ``fastpad.prefetch(...,
        depth)`` the ring needs ``depth + 3`` slots; `prefetch` raises a Packer given as its
        ``prepare`` to that (`reserve_buffers`).
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

    The tensors of one batch are views of its slot's device buffer (one copy): keeping any of
    them keeps that buffer out of the ring (the slot takes a new one), and ``torch.save`` of one
    tensor writes the whole buffer (``.clone()`` first to save only the tensor). Per-example
    scalar tensors that require grad or live on a device are moved with ``Tensor.to`` (as
    ``Batch.to`` does), not through the buffer.

    What the ring tracks: Python references to a batch's device buffer (any of its tensors or
    views of them, counted with ``torch._C._storage_Use_Count``), and the work queued before the
    release on the stream the batch was handed to (the stream current at the call; under
    ``fastpad.prefetch``, the stream current where the loop takes it). Not tracked: reads on
    another stream (``record_stream`` included: it only tells the caching allocator), a
    collective still running (``async_op=True``), a CUDA graph replaying captured addresses, a
    tensor shared with another process. For those, ``.clone()`` the tensor (on the stream it was
    handed to) or hold the batch until that work is done. Without
    ``torch._C._storage_Use_Count`` every batch counts as held: each copy takes a device buffer
    from torch's caching allocator (correct, not allocation-free).

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
        buffers: int = 3,
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
        if requested.type == "cuda" and not self._cuda:
            _warn_no_cuda(str(requested))
        self.device = requested if self._cuda else torch.device("cpu")
        self.stream: Any = None  # the copy stream; None: the current stream at each call
        self._stream_arg: Any = stream
        if self._cuda and stream is not None and stream != "current":
            if not isinstance(stream, torch.cuda.Stream):
                raise TypeError(
                    "fastpad.Packer: stream must be None, 'current' or a torch.cuda.Stream, "
                    f"got {type(stream).__name__}"
                )
            stream_device = torch.device(stream.device)
            if requested.index is not None and stream_device != requested:
                # An event recorded on another device's stream would say nothing about
                # this device's copy: slots would be rewritten while still being copied.
                raise ValueError(
                    f"fastpad.Packer: stream is on {stream.device} but the packer copies "
                    f"to {requested}; create it with torch.cuda.Stream(device="
                    f"{str(requested)!r})"
                )
            self.device = stream_device  # "cuda" with a stream of yours: the stream's device
        self.tokenizer = tokenizer
        self.ragged_transfer: bool | str = ragged_transfer
        self.buffers = buffers
        self._defaults = dict(pad_defaults)
        self._option_defaults = {
            key: value for key, value in pad_defaults.items() if key != "threads"
        }
        self._threads = pad_defaults.get("threads")
        self._counters = dict.fromkeys(PackerStats.__dataclass_fields__, 0)
        self._torch = torch
        self._dtypes = {name: getattr(torch, name) for name in ITEMSIZES}
        self._lock = threading.Lock()
        # Streams, events and the CUDA calls of a copy: looked up once, at the first copy (when
        # the device is "cuda" without an index, the device current then: see `_bind`).
        self._calls: Any = None
        self._ring = PinnedRing(buffers, self._counters, None, self._lock)
        if self._cuda and self.device.index is not None:
            self._bind()

    def _bind(self) -> None:
        """Take the device (the current one for ``"cuda"``), make the copy stream and look up
        the CUDA calls: once, at construction for ``"cuda:N"`` or a stream of yours, else at the
        first copy (so a packer built before ``torch.cuda.set_device(local_rank)`` copies to
        ``local_rank``)."""
        torch = self._torch
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        stream = self._stream_arg
        if stream is None:
            self.stream = torch.cuda.Stream(device=self.device)
        elif stream != "current":
            self.stream = stream
        self._calls = _ring.cuda_calls(torch, self.device, self.stream)
        self._ring.bind(self._calls)

    def reserve_buffers(self, count: int) -> None:
        """Give the ring at least `count` slots; never fewer than it has.

        ``fastpad.prefetch(items, packer, depth=d)`` calls this with ``d + 3``: the batches
        alive when the packer packs the next one under it, plus the slot that one needs. New
        slots allocate their buffers at their first use.

        Parameters
        ----------
        count : int
            Slots the ring should have at least.
        """
        with self._lock:
            self._ring.grow_to(count)
            self.buffers = max(self.buffers, count)

    def __reduce__(self) -> Any:
        raise TypeError(
            "fastpad.Packer holds pinned buffers and CUDA events and cannot be pickled; "
            "create one per process"
        )

    def __repr__(self) -> str:
        stream = "current" if self._stream_arg == "current" or not self._cuda else "side"
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
            at the call (the copy is asynchronous to the host); see the class Notes for what
            keeps them from being rewritten.

        Raises
        ------
        TypeError, ValueError, OverflowError
            As `fastpad.pad`; also TypeError for an unknown keyword.
        """
        options_kwargs = self._option_defaults
        threads = self._threads
        if pad_kwargs:
            check_keywords("fastpad.Packer", pad_kwargs, _PAD_KEYWORDS)
            options_kwargs = {**options_kwargs, **pad_kwargs}
            threads = options_kwargs.pop("threads", threads)
        inputs = normalize_inputs(encoded_inputs)
        options = resolve_options(
            tokenizer=self.tokenizer,
            **options_kwargs,
            return_tensors="pt",
            pin_memory=False,  # the packer pins its own ring
            fields=list(inputs.fields),
        )
        if options.template is not None or options.truncation == "only_second":
            from ._truncate import cut_template_rows  # imported when first needed

            inputs = cut_template_rows(inputs, options)
        if not self._cuda:
            return self._on_cpu(inputs, options, threads)
        with self._lock:
            if self._calls is None:
                self._bind()
            if self.ragged_transfer:
                batch = self._maybe_ragged(inputs, options, threads)
                if batch is not None:
                    return batch
            return self._padded(inputs, options, threads)

    # -- CPU ------------------------------------------------------------------------------------

    def _on_cpu(self, inputs: Inputs, options: PadOptions, threads: int | None) -> Batch:
        """Fresh CPU tensors (never shared), through the same layout and rebuild code as the
        CUDA path when the ragged transfer takes the batch."""
        with self._lock:
            if self.ragged_transfer:
                batch = self._maybe_ragged(inputs, options, threads)
                if batch is not None:
                    return batch
            batch = pad_inputs(inputs, options, threads=threads)
            nbytes = sum(
                _nbytes(value) for value in batch.values() if hasattr(value, "element_size")
            )
            counters = self._counters
            counters["payload_bytes"] += nbytes
            counters["output_bytes"] += nbytes
            counters["batches"] += 1
            return batch

    # -- padded path: one pass over the fields, the layout, one pack, one copy, the views ------

    def _padded(self, inputs: Inputs, options: PadOptions, threads: int | None) -> Batch:
        fields = inputs.fields
        specs, keys, scalar_keys, ragged, lengths, width = measure_fields(inputs, options, threads)
        scalars = None
        if scalar_keys:
            scalars = {
                key: _stack_scalars(key, fields[key].data, options, inputs) for key in scalar_keys
            }
        rows = len(lengths)
        cells = rows * width
        dtype_names = [
            options.mask_dtype if key == "attention_mask" else options.dtype for key in keys
        ]
        create_mask = options.return_attention_mask and "attention_mask" not in fields
        if create_mask:
            dtype_names.append(options.mask_dtype)
        offsets, end = slot_layout(cells, [ITEMSIZES[name] for name in dtype_names])
        total = end
        staged: dict[str, Part] = {}
        if scalars is not None:
            for key, tensor in scalars.items():
                if tensor.device.type == "cpu" and not tensor.requires_grad:
                    part = Part(total, tensor.dtype, tuple(tensor.shape))
                    staged[key] = part
                    total = aligned(total + part.nbytes)

        ring = self._ring
        slot = ring.acquire(total)
        array = slot.array
        views = [
            np.ndarray((rows, width), _NUMPY_TYPES[name], array, offset)
            for name, offset in zip(dtype_names, offsets, strict=True)
        ]
        mask_view = views.pop() if create_mask else None
        pack_into(specs, keys, views, mask_view, lengths, width, options, threads, ragged)
        for key, part in staged.items():
            part.host_view(slot.host).copy_(scalars[key])  # type: ignore[index]

        calls = self._calls
        assert calls is not None
        consumer = calls.consumer()
        ring.ship(slot, total, consumer)
        counters = self._counters
        counters["payload_bytes"] += total
        counters["copied_bytes"] += total
        counters["batches"] += 1
        dtypes = self._dtypes
        batch = Batch()
        outputs: dict[str, Any] = {}
        output_bytes = 0
        for key, name, offset in zip(keys, dtype_names, offsets, strict=False):
            size = ITEMSIZES[name]
            outputs[key] = slot.typed[dtypes[name]].as_strided(
                (rows, width), (width, 1), offset // size
            )
            output_bytes += cells * size
        if scalars is not None:
            for key, tensor in scalars.items():
                staged_part = staged.get(key)
                if staged_part is None:  # requires grad or on a device: moved on its own
                    outputs[key] = tensor.to(self.device, non_blocking=True)
                else:
                    outputs[key] = staged_part.device_view(ring.typed(slot, staged_part.dtype))
                output_bytes += _nbytes(outputs[key])
        # Keys in input order, a given mask only when asked for, a created mask last (as pad).
        for key in fields:
            if key == "attention_mask" and not options.return_attention_mask:
                continue
            batch[key] = outputs[key]
        if create_mask:
            size = ITEMSIZES[options.mask_dtype]
            batch["attention_mask"] = slot.typed[dtypes[options.mask_dtype]].as_strided(
                (rows, width), (width, 1), offsets[-1] // size
            )
            output_bytes += cells * size
        counters["output_bytes"] += output_bytes
        return batch

    # -- ragged path (host and device sides in fastpad._ragged_transfer) ------------------------

    def _maybe_ragged(
        self, inputs: Inputs, options: PadOptions, threads: int | None
    ) -> Batch | None:
        """The batch through a ragged transfer, or None when the padded path takes it."""
        scalars = {
            key: _stack_scalars(key, field.data, options, inputs)
            for key, field in inputs.fields.items()
            if field.kind == "scalars"
        }
        padded_inputs = Inputs(
            {key: field for key, field in inputs.fields.items() if field.kind != "scalars"},
            inputs.rows,
        )
        plan = plan_ragged(padded_inputs, options, threads, auto=self.ragged_transfer == "auto")
        if plan is None:
            return None
        batch = self._ragged(inputs, plan, options, scalars)
        counters = self._counters
        counters["ragged_batches"] += 1
        counters["batches"] += 1
        counters["output_bytes"] += sum(
            _nbytes(value) for value in batch.values() if hasattr(value, "element_size")
        )
        return batch

    def _ragged(
        self, inputs: Inputs, plan: RaggedPlan, options: PadOptions, scalars: dict[str, Any]
    ) -> Batch:
        torch = self._torch
        slot: list[Slot] = []

        def acquire(nbytes: int) -> Any:
            if not self._cuda:
                return torch.empty(nbytes, dtype=torch.uint8)  # fresh: CPU results are never shared
            slot.append(self._ring.acquire(nbytes))
            return slot[0].host

        layout = Layout(acquire)
        staged: dict[str, Part] = {}
        separate: dict[str, Any] = {}
        scalar_bytes = 0
        for tensor in scalars.values():
            if tensor.device.type == "cpu" and not tensor.requires_grad:
                scalar_bytes += aligned(_nbytes(tensor))
        parts, meta = pack_flat(layout, plan, options, scalar_bytes)
        # Per-example scalars ride in the same buffer (torch copies: any dtype, bfloat16 too).
        for key, tensor in scalars.items():
            if tensor.device.type == "cpu" and not tensor.requires_grad:
                part = layout.take(tensor.dtype, tuple(tensor.shape))
                part.host_view(layout.buffer).copy_(tensor)
                staged[key] = part
            else:
                separate[key] = tensor
        device_buffer = self._to_device(slot[0] if slot else None, layout, options.dtype)
        # Rebuilt on the consumer stream (no host synchronization).
        outputs = expand_outputs(device_buffer, plan, options, parts, meta)
        for key, part in staged.items():
            outputs[key] = part.device_view(device_buffer)
        for key, tensor in separate.items():
            outputs[key] = tensor.to(self.device, non_blocking=True)
        return _ordered(inputs, outputs)

    def _to_device(self, slot: Slot | None, layout: Layout, dtype_name: str) -> Any:
        """The ragged batch's buffer on the device as a 1-D tensor of `dtype_name` (copied out
        of its slot on CUDA; the host buffer itself on the CPU path)."""
        nbytes = layout.nbytes
        self._counters["payload_bytes"] += nbytes
        dtype = self._dtypes[dtype_name]
        if slot is None:
            return layout.buffer[:nbytes].view(dtype)
        calls = self._calls
        assert calls is not None
        self._ring.ship(slot, nbytes, calls.consumer())
        self._counters["copied_bytes"] += nbytes
        return slot.typed[dtype]


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


def _warn_no_cuda(requested: str) -> None:
    global _warned_no_cuda
    if _warned_no_cuda:
        return
    _warned_no_cuda = True
    warnings.warn(
        f"fastpad.Packer({requested!r}): torch sees no CUDA device, so the packer pads into CPU "
        "tensors (packer.device is cpu); pass device='cpu' to say so and silence this warning",
        RuntimeWarning,
        stacklevel=3,
    )
