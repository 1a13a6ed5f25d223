"""`fastpad.encode_overlapped`: ``SentenceTransformer.encode`` with host prep behind the model.

sentence-transformers' own ``encode`` runs the call: it reads the arguments (a single input or
a list, prompts, ``precision``, the conversions, a multi-process pool...) exactly as installed.
fastpad replaces only its per-batch loop (``_inference``, the local single-device path) for that
one call, through a view of the model: the model itself is never modified, so other threads may
use it meanwhile. The loop fastpad runs is sentence-transformers' loop (``preprocess``, forward,
truncation, normalization, the same post-processing) with each batch's ``preprocess`` and
host-to-device copy run by `fastpad.prefetch` while the model runs the batch before it; with
``max_tokens`` the batches are token-budget batches (`fastpad.plan_batches` over the inputs'
token counts) instead of ``batch_size`` rows of the length-sorted inputs.

Where that loop would not reproduce the model's (a subclass with its own ``encode`` or
``_inference``, padding-free flattened inputs, an HPU, inputs that are not texts, a
sentence-transformers release whose ``_inference`` takes other arguments), the model's own loop
runs, unchanged.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._plan import plan_batches
from ._prefetch import prefetch

__all__ = ["encode_overlapped"]

# The keyword arguments sentence-transformers' encode hands to ``_inference`` (6.x), which the
# loop below reads; a release whose ``_inference`` takes others runs its own loop.
_INFERENCE_ARGUMENTS = frozenset(
    {
        "inputs",
        "prompt",
        "batch_size",
        "show_progress_bar",
        "output_value",
        "save_to_cpu",
        "normalize_embeddings",
        "truncate_dim",
        "device",
    }
)


def _sentence_transformer_class() -> Any:
    """sentence_transformers.SentenceTransformer when sentence-transformers is importable."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    return SentenceTransformer


def _loop_is_reproducible(model: Any) -> bool:
    """True when `model` runs sentence-transformers' own ``encode`` and ``_inference`` with the
    arguments the loop below reproduces."""
    base = _sentence_transformer_class()
    if base is None or not isinstance(model, base):
        return False
    model_class = type(model)
    if model_class.encode is not base.encode or model_class._inference is not base._inference:
        return False
    try:
        parameters = inspect.signature(base._inference).parameters
    except (TypeError, ValueError):
        return False
    names = {name for name in parameters if name != "self"}
    named = {
        name
        for name, parameter in parameters.items()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD and name != "self"
    }
    needed = ("preprocess", "_input_length", "_can_flatten_inputs", "_resolve_inference_device")
    return (
        named == _INFERENCE_ARGUMENTS
        and len(names) == len(named) + 1  # and **kwargs (forwarded to preprocess and forward)
        and all(callable(getattr(model, name, None)) for name in needed)
    )


class _LoopView:
    """The model as ``encode`` sees it, with ``_inference`` replaced by fastpad's loop; every
    other attribute is the model's own (read through, never set)."""

    def __init__(self, model: Any, inference: Callable[..., Any]) -> None:
        self.__dict__["_model"] = model
        self.__dict__["_inference"] = inference

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_model"], name)


def _check_max_tokens(max_tokens: Any) -> int | None:
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
        raise TypeError(
            f"fastpad.encode_overlapped: max_tokens must be an int, got {type(max_tokens).__name__}"
        )
    if max_tokens <= 0:
        raise ValueError(f"fastpad.encode_overlapped: max_tokens must be > 0, got {max_tokens}")
    return int(max_tokens)


def _token_counts(model: Any, texts: list[str], prompt: str | None) -> npt.NDArray[np.int64]:
    """Token count of every text as the model's tokenizer makes it (prompt prepended, special
    tokens added, truncated to ``max_seq_length``): the lengths the token budget is planned on."""
    tokenizer = model.tokenizer
    if prompt:
        texts = [prompt + text for text in texts]
    max_length = getattr(model, "max_seq_length", None)
    encoded = tokenizer(
        texts,
        truncation=max_length is not None,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


def _batches(
    model: Any,
    inputs: list[Any],
    prompt: str | None,
    batch_size: int,
    max_tokens: int | None,
    rows_limit: int | None,
) -> list[npt.NDArray[np.int64]]:
    """Positions of the inputs of each batch, in the order the loop runs them."""
    if not inputs:
        return []
    if max_tokens is not None:
        lengths = _token_counts(model, inputs, prompt)
        return plan_batches(lengths, max_tokens=max_tokens, max_batch_size=rows_limit)
    # sentence-transformers' order: longest first by its size estimate, batch_size at a time.
    order = np.argsort([-model._input_length(item) for item in inputs])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _overlapped_inference(
    model: Any, max_tokens: int | None, rows_limit: int | None, depth: int
) -> Callable[..., Any]:
    """The replacement of ``model._inference`` for one ``encode`` call."""

    def inference(
        inputs: list[Any],
        *,
        prompt: str | None,
        batch_size: int,
        show_progress_bar: bool,
        output_value: str | None,
        save_to_cpu: bool,
        normalize_embeddings: bool,
        truncate_dim: int | None,
        device: Any = None,
        **kwargs: Any,
    ) -> Any:
        arguments = {
            "prompt": prompt,
            "batch_size": batch_size,
            "show_progress_bar": show_progress_bar,
            "output_value": output_value,
            "save_to_cpu": save_to_cpu,
            "normalize_embeddings": normalize_embeddings,
            "truncate_dim": truncate_dim,
            "device": device,
            **kwargs,
        }
        countable = callable(getattr(model, "tokenizer", None)) and all(
            isinstance(item, str) for item in inputs
        )
        if model._can_flatten_inputs() or (max_tokens is not None and not countable):
            # Padding-free batches interleave lengths, and a token budget needs the token counts
            # of texts from the model's tokenizer: the model's own loop, unchanged.
            return model._inference(inputs, **arguments)
        target = model._resolve_inference_device(device)
        if target.type == "hpu":  # HPU graphs pad every batch to a power of two: its own loop
            return model._inference(inputs, **arguments)
        return _run_loop(
            model,
            inputs,
            _batches(model, inputs, prompt, batch_size, max_tokens, rows_limit),
            target,
            depth,
            arguments,
        )

    return inference


def _run_loop(
    model: Any,
    inputs: list[Any],
    batches: list[npt.NDArray[np.int64]],
    device: Any,
    depth: int,
    arguments: dict[str, Any],
) -> Any:
    """sentence-transformers' ``_inference`` loop over `batches`, ``preprocess`` and the copy to
    `device` run ahead by `prefetch`."""
    import torch
    from sentence_transformers.util import truncate_embeddings

    prompt = arguments.pop("prompt")
    output_value = arguments.pop("output_value")
    save_to_cpu = arguments.pop("save_to_cpu")
    normalize_embeddings = arguments.pop("normalize_embeddings")
    truncate_dim = arguments.pop("truncate_dim")
    show_progress_bar = arguments.pop("show_progress_bar")
    for name in ("batch_size", "device"):
        arguments.pop(name)
    kwargs = arguments  # what encode forwards to preprocess and to the forward pass
    on_cuda = device.type == "cuda"
    model.eval()

    def prepare(rows: npt.NDArray[np.int64]) -> Any:
        features = model.preprocess([inputs[row] for row in rows], prompt=prompt, **kwargs)
        if not on_cuda:
            return features
        # Pinned here; prefetch then copies each tensor with non_blocking=True (the host goes on
        # while the copy runs), on the current stream of the model's device.
        return {
            key: value.pin_memory() if isinstance(value, torch.Tensor) else value
            for key, value in features.items()
        }

    results: list[Any] = [None] * len(inputs)
    target = device if device.type != "cpu" else None
    progress = None
    if show_progress_bar:
        from tqdm.autonotebook import tqdm

        progress = tqdm(total=len(batches), desc="Batches")
    try:
        with prefetch(batches, prepare, device=target, depth=depth) as prepared:
            for rows, features in zip(batches, prepared, strict=True):
                out_features = model(features, **kwargs)
                if truncate_dim is not None:
                    out_features["sentence_embedding"] = truncate_embeddings(
                        out_features["sentence_embedding"], truncate_dim
                    )
                embeddings: Any
                if output_value == "token_embeddings":
                    embeddings = [
                        token_states[attention.bool()]
                        for token_states, attention in zip(
                            out_features[output_value], out_features["attention_mask"], strict=True
                        )
                    ]
                elif output_value is None:
                    embeddings = [
                        {
                            name: value[index] if _batch_first(value, len(rows)) else value
                            for name, value in out_features.items()
                        }
                        for index in range(len(rows))
                    ]
                else:
                    embeddings = out_features[output_value]
                    if normalize_embeddings:
                        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
                    if save_to_cpu:
                        embeddings = embeddings.cpu()
                for row, embedding in zip(rows.tolist(), embeddings, strict=True):
                    results[row] = embedding
                if progress is not None:
                    progress.update(1)
    finally:
        if progress is not None:
            progress.close()
    if output_value == "sentence_embedding":
        return torch.stack(results) if results else torch.tensor([], device=device)
    return results


def _batch_first(value: Any, rows: int) -> bool:
    """A tensor whose first axis is the batch's rows (sentence-transformers' test for it)."""
    return bool(getattr(value, "ndim", 0) > 0 and value.shape[0] == rows)


def encode_overlapped(
    model: Any,
    /,
    *args: Any,
    max_tokens: int | None = None,
    depth: int = 2,
    **kwargs: Any,
) -> Any:
    """``model.encode(*args, **kwargs)`` with host prep hidden behind the model, and optionally
    token-budget batches.

    Takes what ``SentenceTransformer.encode`` takes and returns what it returns: a single text
    gives one embedding, a list gives one per text; ``prompt``, ``prompt_name``,
    ``batch_size``, ``show_progress_bar``, ``output_value``, ``precision``,
    ``convert_to_numpy``, ``convert_to_tensor``, ``device``, ``normalize_embeddings``,
    ``truncate_dim``, ``pool``, ``chunk_size`` and the model's own keyword arguments mean what
    they mean there (sentence-transformers' ``encode`` itself reads them). What changes is the
    loop over the batches: each batch's ``preprocess`` and its host-to-device copy (pinned,
    ``non_blocking=True``) run in a background thread (`fastpad.prefetch`) while the model runs
    the batch before it. Without `max_tokens` the batches are those of ``encode`` and the
    results are equal to its results; with ``fastpad.patch_transformers()`` active,
    ``preprocess`` pads with fastpad too.

    Parameters
    ----------
    model : sentence_transformers.SentenceTransformer
        The model.
    *args, **kwargs
        The arguments of ``model.encode``: the inputs (a text or a list of texts; ``inputs=``
        by keyword), then ``prompt_name``, ``prompt``, ``batch_size``... as there.
    max_tokens : int, optional
        Token-budget batches: rows grouped by token count (`fastpad.plan_batches` over the
        texts' token counts as the model's tokenizer makes them, prompt included, truncated to
        ``max_seq_length``) so that each batch pads to at most `max_tokens` cells (rows x padded
        length); a text longer than the budget gets a batch of its own. ``batch_size``, when
        given, caps the rows of a batch; otherwise the budget alone sizes the batches. The
        embeddings equal ``model.encode``'s up to float summation order (within 1e-5 for
        float32 models). Pays on texts of mixed lengths (see the serving guide).
    depth : int, default 2
        Batches prepared ahead (see `fastpad.prefetch`).

    Returns
    -------
    numpy.ndarray, torch.Tensor, list or dict
        What ``model.encode`` returns for these arguments.

    Raises
    ------
    TypeError
        `model` has no ``encode`` method, or `max_tokens` is not an int.
    ValueError
        `max_tokens` or `depth` is not positive.

    Notes
    -----
    Anything else is raised as ``model.encode`` raises it. Where fastpad's loop would not
    reproduce the model's own, the model's loop runs, unchanged (and `max_tokens` does not
    apply): a model class with its own ``encode`` or ``_inference``, padding-free flattened
    inputs, an HPU, inputs that are not texts or a model without a tokenizer (with
    `max_tokens`), a multi-process pool or a list of devices, and a sentence-transformers
    release whose ``encode`` hands its loop other arguments than 6.x does. With `max_tokens`
    and ``output_value=None``, each row's padded fields (``input_ids``, ``token_embeddings``...)
    are padded to its own batch's length, which differs from ``encode``'s batches.

    Examples
    --------
    >>> embedding = fastpad.encode_overlapped(model, "one text")  # doctest: +SKIP
    >>> embeddings = fastpad.encode_overlapped(model, texts, max_tokens=8192)  # doctest: +SKIP
    """
    budget = _check_max_tokens(max_tokens)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"fastpad.encode_overlapped: depth must be an int >= 1, got {depth!r}")
    encode = getattr(model, "encode", None)
    if not callable(encode):
        raise TypeError(
            "fastpad.encode_overlapped: model must be a sentence_transformers.SentenceTransformer "
            f"(it has no encode method), got {type(model).__name__}"
        )
    if not _loop_is_reproducible(model):
        return encode(*args, **kwargs)
    encode_function = type(model).encode
    # encode takes its inputs as ``sentences=`` too (a deprecated name it renames itself).
    named = dict(kwargs)
    if "sentences" in named:
        renamed = named.pop("sentences")
        named.setdefault("inputs", renamed)
    try:
        bound = inspect.signature(encode_function).bind(model, *args, **named)
    except TypeError:
        return encode(*args, **kwargs)  # raises the TypeError encode raises
    # encode's extra keywords are the model's forward arguments: it validates them itself, and
    # its message names the model's class, so a call with ones it refuses goes to it unchanged.
    extra = bound.arguments.get("kwargs", {})
    allowed = set(model.get_model_kwargs()) | {"task", "processing_kwargs"}
    if set(extra) - allowed:
        return encode(*args, **kwargs)
    given_batch_size = bound.arguments.get("batch_size") if budget is not None else None
    rows_limit: int | None = None
    if given_batch_size is not None:
        if (
            isinstance(given_batch_size, bool)
            or not isinstance(given_batch_size, numbers.Integral)
            or given_batch_size <= 0
        ):
            return encode(*args, **kwargs)  # encode's own message for a bad batch_size
        rows_limit = int(given_batch_size)
    view = _LoopView(model, _overlapped_inference(model, budget, rows_limit, depth))
    return encode_function(view, *args, **kwargs)
