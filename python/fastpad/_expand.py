"""Device side of a ragged transfer: rebuild padded tensors from the flat tokens, no host sync.

The host (`fastpad._core.pack_ragged`, layout in csrc/ragged.hpp) writes each row's kept tokens
plus one pad cell, row after row, and two numbers per row, ``base`` and ``bound`` (the row's pad
cell), into one buffer that one copy moves. With ``t = base[r] + column``:

- right padding: ``index = min(t, bound)``, ``mask = t < bound``;
- left padding: ``index = max(t, bound)``, ``mask = t > bound``;

and ``input_ids = take(buffer, index)``: a padding cell reads its row's pad cell. For ids and a
created mask that is 8 torch ops per call (arange, two views, add, min/max, compare, take, the
mask's dtype conversion; 7 with a bool mask), each a kernel launch or a view, none reading
anything back to the host (no boolean-mask indexing, nonzero or item).
"""

from __future__ import annotations

from typing import Any

from . import _ring

__all__ = [
    "AUTO_MIN_SAVED_BYTES",
    "choose_ragged",
    "gather_field",
    "rebuild_index",
]

# ragged_transfer="auto" takes the ragged path for a batch when it saves at least this many bytes
# against the padded path (padded bytes - flat bytes). Model (README, "Ragged transfer"): the
# rebuild costs REBUILD_OPS more torch ops than the padded path's two views, ~LAUNCH_S of host
# time each; every byte saved is a byte neither written on the host (padding and mask cells:
# ~HOST_WRITE_BYTES_PER_S, the core's fill rate into a reused buffer) nor copied to the device
# (~PCIE_BYTES_PER_S, pinned H2D). Ragged wins when
#     saved * (1 / HOST_WRITE_BYTES_PER_S + 1 / PCIE_BYTES_PER_S) > REBUILD_OPS * LAUNCH_S.
# The figures are benchmarks/bench_gpu.py's measurements on an NVIDIA H100 80GB HBM3 (torch
# 2.11, CUDA 13.0; section "crossover"): the rebuild took 61-66 us of host time against 3-7 us
# for the two views (~10 us an extra op), the host filled 52-53 GB/s, pinned H2D ran 50-52 GB/s
# (PCIe 5.0). That gives ~1.5 MB; the measured sweep agrees (ragged 6% slower at 1.0 MB saved,
# 2x faster at 4.2 MB).
LAUNCH_S = 10e-6
REBUILD_OPS = 6
HOST_WRITE_BYTES_PER_S = 50e9
PCIE_BYTES_PER_S = 50e9
AUTO_MIN_SAVED_BYTES = int(
    REBUILD_OPS * LAUNCH_S / (1 / HOST_WRITE_BYTES_PER_S + 1 / PCIE_BYTES_PER_S)
)


def choose_ragged(
    padded_bytes: int, flat_bytes: int, threshold: int = AUTO_MIN_SAVED_BYTES
) -> bool:
    """Whether ``ragged_transfer="auto"`` takes the ragged path for a batch of these sizes."""
    return padded_bytes - flat_bytes >= threshold


def rebuild_index(
    buffer: Any, rows: int, width: int, meta_start: int, *, pad_left: bool
) -> tuple[Any, Any]:
    """Gather index and mask of a ragged batch, ``[rows, width]`` each, on `buffer`'s device.

    Parameters
    ----------
    buffer : torch.Tensor
        The copied batch, 1-D, int64 or int32; ``buffer[meta_start : meta_start + rows]`` holds
        ``base`` and the next `rows` elements ``bound`` (csrc/ragged.hpp).
    rows, width : int
        Output shape.
    meta_start : int
        Element offset of ``base`` in `buffer`.
    pad_left : bool
        Rows end at the right edge.

    Returns
    -------
    index : torch.Tensor
        int64 flat index (in elements of the first field's region) of every cell's value.
    keep : torch.Tensor
        bool, True over the kept tokens.
    """
    torch = _ring._torch()
    columns = torch.arange(width, device=buffer.device)
    base = buffer.as_strided((rows, 1), (1, 1), meta_start)
    bound = buffer.as_strided((rows, 1), (1, 1), meta_start + rows)
    position = base + columns  # int64: columns are, and int32 + int64 promotes
    if pad_left:
        return torch.maximum(position, bound), position > bound
    return torch.minimum(position, bound), position < bound


def gather_field(buffer: Any, index: Any, dtype: Any, start: int) -> Any:
    """Values of one field whose flat region starts at element `start` (in `dtype` elements) of
    `buffer`: ``take``, plus an add for a region not at 0 and a view for another dtype."""
    torch = _ring._torch()
    source = buffer if buffer.dtype == dtype else buffer.view(dtype)
    return torch.take(source, index if start == 0 else index + start)
