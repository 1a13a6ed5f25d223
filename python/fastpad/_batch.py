"""`Batch`: the dict of padded tensors that `fastpad.pad` returns."""

from __future__ import annotations

from typing import Any

__all__ = ["Batch"]


class Batch(dict[str, Any]):
    """A dict of field name to padded tensor (or numpy array); ``model(**batch)`` works.

    Keys follow `transformers.PreTrainedTokenizerBase.pad`: the input fields in their order, then
    ``attention_mask`` when it was created from the row lengths.

    Fields are also attributes, as in `transformers.BatchEncoding`: ``batch.input_ids`` is
    ``batch["input_ids"]``. A field whose name is a dict method (``batch.items``) is reached by
    key only.
    """

    def __getattr__(self, name: str) -> Any:
        """Return the field `name` (called only when no real attribute has that name).

        Raises
        ------
        AttributeError
            No field has that name; the message lists the fields the batch has.
        """
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"'Batch' object has no attribute or field {name!r}; fields: {sorted(self)}"
            ) from None

    def __dir__(self) -> list[str]:
        """List the attributes and the fields whose names are identifiers."""
        return sorted(set(super().__dir__()) | {key for key in self if key.isidentifier()})

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
