"""DataLoader collators with the outputs of transformers' padding collators, padded by the core.

`DataCollatorWithPadding` and `DataCollatorForTokenClassification` take the list of feature
dicts a DataLoader hands its ``collate_fn`` and return what the transformers classes of the same
names return: the fields ``tokenizer.pad`` pads (the model's main input, ``attention_mask``,
``token_type_ids``, ``special_tokens_mask``) padded in one C++ pass, other fields converted to
tensors as they are, ``label``/``label_ids`` renamed to ``labels`` (token classification: labels
padded with -100).

Both are plain dataclasses holding the tokenizer, so they pickle into DataLoader worker
processes. In a worker they never pin (pinning there would start CUDA in the worker, and the
batch is moved through shared memory anyway); in the main process they pin when an accelerator
is there, so ``DataLoader(pin_memory=True)`` finds the tensors pinned and does not copy them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._batch import Batch
from ._options import accelerator_available, require_torch, resolve_tokenizer
from ._pad import pad

__all__ = ["DataCollatorForTokenClassification", "DataCollatorWithPadding"]

# Fields `PreTrainedTokenizerBase._pad` pads; the model's main input name is added per tokenizer.
_PADDED_FIELDS = ("attention_mask", "token_type_ids", "special_tokens_mask")


def _columns(features: Sequence[Mapping[str, Any]], owner: str) -> dict[str, list[Any]]:
    """Features (one Mapping per example) to one list per key, keys in example 0's order."""
    if isinstance(features, Mapping) or not isinstance(features, Sequence):
        raise TypeError(
            f"fastpad.{owner}: expected a list of feature mappings, got {type(features).__name__}"
        )
    if len(features) == 0:
        raise ValueError(f"fastpad.{owner}: got an empty list of features")
    keys = list(features[0].keys()) if isinstance(features[0], Mapping) else []
    columns: dict[str, list[Any]] = {key: [] for key in keys}
    for index, example in enumerate(features):
        if not isinstance(example, Mapping):
            raise TypeError(
                f"fastpad.{owner}: example {index} is a {type(example).__name__}, not a mapping"
            )
        for key in keys:
            if key not in example:
                raise ValueError(f"fastpad.{owner}: example {index} has no field {key!r}")
            columns[key].append(example[key])
    return columns


def _as_tensor(key: str, column: list[Any], return_tensors: str, owner: str) -> Any:
    """Convert an unpadded field the way ``BatchEncoding.convert_to_tensors`` does."""
    first = column[0]
    try:
        if return_tensors == "np":
            if hasattr(first, "detach"):
                return np.stack([np.asarray(value.detach().cpu()) for value in column])
            return np.asarray(column)
        import torch

        if torch.is_tensor(first):
            return torch.stack(column)
        if isinstance(first, np.ndarray):
            return torch.from_numpy(np.array(column))
        return torch.tensor(column)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"fastpad.{owner}: field {key!r} cannot become one tensor (rows of different "
            f"lengths, or values that are not numbers): {error}"
        ) from error


def _check_collator(collator: Any, owner: str) -> None:
    """Construction-time checks: a tokenizer (object, name or path) and return_tensors."""
    if collator.tokenizer is None:
        raise TypeError(
            f"fastpad.{owner}: tokenizer is required (a transformers tokenizer, or its name or "
            "path), got None"
        )
    collator.tokenizer = resolve_tokenizer(collator.tokenizer, f"fastpad.{owner}")
    if collator.return_tensors not in ("pt", "np"):
        raise ValueError(
            f"fastpad.{owner}: return_tensors must be 'pt' or 'np', got {collator.return_tensors!r}"
        )
    if collator.return_tensors == "pt":
        require_torch(f"fastpad.{owner}")


def _pin_default(pin_memory: bool | None, return_tensors: str) -> bool | None:
    """Pin in the main process when an accelerator is there; never by default in a worker."""
    if pin_memory is not None or return_tensors != "pt":
        return pin_memory
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        return False
    return accelerator_available()


def _collate(
    collator: Any,
    features: Sequence[Mapping[str, Any]],
    *,
    ragged_labels: str | None,
    label_pad_token_id: int,
    owner: str,
) -> Batch:
    """Pad the tokenizer fields (and `ragged_labels`, when given) into one `Batch`."""
    tokenizer = collator.tokenizer
    columns = _columns(features, owner)
    main_key = tokenizer.model_input_names[0]
    if main_key not in columns:
        raise ValueError(
            f"fastpad.{owner}: the features must include {main_key!r}, the tokenizer's main "
            f"input; got {list(columns)}"
        )
    padded_keys = [key for key in columns if key == main_key or key in _PADDED_FIELDS]
    pin = _pin_default(collator.pin_memory, collator.return_tensors)
    to_pad = {key: columns[key] for key in padded_keys}
    pad_values: dict[str, int] | None = None
    labels_separately = False
    if ragged_labels is not None:
        rows = columns[main_key]
        labels = columns[ragged_labels]
        for index, label in enumerate(labels):
            if isinstance(label, str | bytes) or not hasattr(label, "__len__"):
                raise TypeError(
                    f"fastpad.{owner}: example {index}: {ragged_labels!r} must be a sequence of "
                    f"per-token labels, got {type(label).__name__}"
                )
        if all(len(label) == len(row) for label, row in zip(labels, rows, strict=True)):
            # One pass for ids and labels: labels follow the rows they label.
            to_pad[ragged_labels] = labels
            pad_values = {ragged_labels: label_pad_token_id}
        else:
            labels_separately = True
    padded = pad(
        to_pad,
        tokenizer=tokenizer,
        padding=collator.padding,
        max_length=collator.max_length,
        pad_to_multiple_of=collator.pad_to_multiple_of,
        return_tensors=collator.return_tensors,
        pad_values=pad_values,
        pin_memory=pin,
    )
    batch = Batch()
    for key, column in columns.items():
        if key == ragged_labels:
            continue  # labels go last, as in transformers
        if key in padded:
            batch[key] = padded[key]
        else:
            value = _as_tensor(key, column, collator.return_tensors, owner)
            batch[key] = value.pin_memory() if pin and not value.is_pinned() else value
    for key, value in padded.items():
        if key not in batch and key != ragged_labels:
            batch[key] = value  # the attention mask pad() created, after the input fields
    if ragged_labels is not None:
        if labels_separately:
            # Labels of other lengths than their rows: padded on their own to the batch width,
            # as transformers does (a label longer than the batch is an error there too).
            batch[ragged_labels] = pad(
                {ragged_labels: columns[ragged_labels]},
                padding="max_length",
                max_length=int(batch[main_key].shape[1]),
                padding_side=tokenizer.padding_side,
                pad_values={ragged_labels: label_pad_token_id},
                return_attention_mask=False,
                return_tensors=collator.return_tensors,
                pin_memory=pin,
            )[ragged_labels]
        else:
            batch[ragged_labels] = padded[ragged_labels]
    return batch


@dataclass
class DataCollatorWithPadding:
    """Collate feature dicts into padded tensors, like `transformers.DataCollatorWithPadding`.

    Parameters
    ----------
    tokenizer : transformers tokenizer, str or os.PathLike
        Supplies the pad ids, padding side, field names and ``model_max_length``. A name or
        path is loaded with ``AutoTokenizer.from_pretrained`` (once per process).
    padding : bool or {"longest", "max_length", "do_not_pad"}, default True
        As in `fastpad.pad`.
    max_length : int, optional
        Length for ``padding="max_length"`` (default the tokenizer's ``model_max_length``).
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this.
    return_tensors : {"pt", "np"}, default "pt"
        Torch tensors or numpy arrays.
    pin_memory : bool, optional
        Keyword only. Allocate the outputs in pinned memory. None: pin in the main process when
        an accelerator is available, never in a DataLoader worker process.

    Examples
    --------
    A DataLoader with worker processes; the loader's pin_memory thread finds pinned tensors
    only when collating in the main process (``num_workers=0``)::

        loader = DataLoader(dataset, batch_size=32, num_workers=2, pin_memory=True,
                            collate_fn=fastpad.DataCollatorWithPadding(tokenizer))
        for batch in loader:
            loss = model(**batch.to("cuda", non_blocking=True)).loss
    """

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    pin_memory: bool | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_collator(self, "DataCollatorWithPadding")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> Batch:
        """Pad a list of feature dicts.

        Parameters
        ----------
        features : list of Mapping
            One dict per example (``input_ids`` and friends as lists, arrays or 1-D tensors;
            other fields such as ``label`` as scalars or equal-length lists).

        Returns
        -------
        Batch
            Padded fields, the created ``attention_mask``, other fields as tensors, and
            ``label``/``label_ids`` as ``labels``.
        """
        batch = _collate(
            self,
            features,
            ragged_labels=None,
            label_pad_token_id=0,
            owner="DataCollatorWithPadding",
        )
        for old_key in ("label", "label_ids"):
            if old_key in batch:
                batch["labels"] = batch.pop(old_key)
        return batch


@dataclass
class DataCollatorForTokenClassification:
    """Collate token-classification features like `transformers.DataCollatorForTokenClassification`.

    The per-token labels (``labels``, or ``label`` when example 0 has that key; the name is
    kept) are padded with `label_pad_token_id` on the tokenizer's padding side to the padded
    length of the inputs, as int64.

    Parameters
    ----------
    tokenizer : transformers tokenizer, str or os.PathLike
        Supplies the pad ids, padding side, field names and ``model_max_length``. A name or
        path is loaded with ``AutoTokenizer.from_pretrained`` (once per process).
    padding : bool or {"longest", "max_length", "do_not_pad"}, default True
        As in `fastpad.pad`.
    max_length : int, optional
        Length for ``padding="max_length"``.
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this.
    label_pad_token_id : int, default -100
        Pad value of the labels (ignored by PyTorch's cross-entropy loss).
    return_tensors : {"pt", "np"}, default "pt"
        Torch tensors or numpy arrays.
    pin_memory : bool, optional
        Keyword only; as in `DataCollatorWithPadding`.
    """

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"
    pin_memory: bool | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_collator(self, "DataCollatorForTokenClassification")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> Batch:
        """Pad a list of feature dicts and their per-token labels.

        Parameters
        ----------
        features : list of Mapping
            One dict per example with the tokenizer fields and, optionally, per-token labels.

        Returns
        -------
        Batch
            Padded fields, the created ``attention_mask``, then the padded labels.
        """
        first = features[0] if isinstance(features, Sequence) and len(features) > 0 else {}
        label_name = "label" if "label" in first else "labels"
        batch = _collate(
            self,
            features,
            ragged_labels=label_name if label_name in first else None,
            label_pad_token_id=self.label_pad_token_id,
            owner="DataCollatorForTokenClassification",
        )
        return batch
