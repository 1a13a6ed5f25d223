"""`Batch`: the dict of padded tensors that `fastpad.pad` returns."""

from __future__ import annotations

from typing import Any

__all__ = ["Batch"]


class Batch(dict[str, Any]):
    """A dict of field name to padded tensor (or numpy array); ``model(**batch)`` works.

    Keys follow `transformers.PreTrainedTokenizerBase.pad`: the input fields in their order, then
    ``attention_mask`` when it was created from the row lengths.
    """

    def to(self, device: Any, *, non_blocking: bool = False) -> Batch:
        """Copy every tensor to `device`.

        Parameters
        ----------
        device : str or torch.device
            Target device, e.g. ``"cuda"``.
        non_blocking : bool, default False
            Passed to `torch.Tensor.to`; asynchronous only from pinned memory.

        Returns
        -------
        Batch
            A new batch; values that are not tensors are kept as they are.
        """
        return Batch(
            {
                key: value.to(device, non_blocking=non_blocking) if hasattr(value, "to") else value
                for key, value in self.items()
            }
        )

    def pin_memory(self) -> Batch:
        """Return a copy with every tensor in pinned (page-locked) host memory.

        Returns
        -------
        Batch
            Tensors already pinned are kept, not copied again.
        """
        return Batch(
            {
                key: value.pin_memory()
                if hasattr(value, "pin_memory") and not value.is_pinned()
                else value
                for key, value in self.items()
            }
        )
