"""The end-to-end section of ``python -m fastpad bench``: the model's own work, count batches
against token-budget batches.

all-MiniLM-L6-v2 (transformers ``AutoModel`` + mean pooling + L2 normalisation, which is what
sentence-transformers computes for this model) embeds a mixed-length workload generated here
(70% short queries, 30% passages up to 256 tokens) twice per repeat:

- **count batches**, the code users write today: the texts in arrival order, 32 at a time,
  ``tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")``,
  then the model; every batch pads to its longest row, so a batch holding one passage pads its
  queries to the passage's length;
- **token batches**: the texts tokenized once without padding, then
  ``fastpad.token_batches(encoded, max_tokens=MAX_TOKENS, tokenizer=tokenizer)``: rows grouped
  by length under a budget of padded cells, each batch padded by fastpad, embeddings written
  back to the rows' positions.

Both passes are timed from the texts to the last embedding, tokenization included, alternately
(count, tokens, count, tokens, ...) so that load from other processes hits both alike; the
report gives texts/s per pass (median, min, max over the repeats), the per-repeat speed-up, the
padded cells the model computed on against the real tokens, and the largest difference between
the two passes' embeddings (must stay within `TOLERANCE`, else the bench fails).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._token_batches import token_batches
from .measure import format_seconds
from .workloads import _WORDS

__all__ = ["MAX_TOKENS", "TOLERANCE", "make_mixed_texts", "measure", "table_lines"]

MAX_LENGTH = 256  # the model's max_seq_length
COUNT_BATCH = 32  # the batch size users pass today (sentence-transformers' default too)
# The token budget: 2048 padded cells. On a CPU the model's cost per cell hardly depends on the
# batch's shape (all-MiniLM-L6-v2 on one thread of the 2-core VM: 1.4-1.8k cells/s over shapes
# from 128 x 16 to 8 x 256), so the smallest budget that still batches rows wins: 2048 pads the
# 512 texts to 34.7k cells in 18 batches, 4096 to 37.1k in 10, 8192 to 38.7k in 5 (128 queries
# or 8 full passages per batch at 2048). On a GPU, where a bigger batch costs little more,
# choose more.
MAX_TOKENS = 2048
TOLERANCE = 1e-5  # max abs difference between the two passes' embeddings
QUERY_SHARE = 0.7
# (texts, repeats): --quick takes the first texts of the same workload.
FULL = (512, 3)
QUICK = (32, 1)


def make_mixed_texts(count: int, seed: int = 0) -> list[str]:
    """`count` texts, 70% short queries (3-12 words), 30% passages (60-300 words, so that a
    part of them reaches the 256-token limit); text i is the same whatever `count`."""
    rng = np.random.default_rng([seed, 24])
    words = np.array(_WORDS)
    texts = []
    for _ in range(count):
        query = rng.random() < QUERY_SHARE
        size = int(rng.integers(3, 13)) if query else int(rng.integers(60, 301))
        chosen = words[rng.integers(0, len(words), size)]
        text = " ".join(chosen.tolist()).capitalize()
        texts.append(text + ("?" if query else "."))
    return texts


def _embed(model: Any, batch: Any) -> Any:
    """Mean pooling over the real tokens, then L2 normalisation (the sentence-transformers
    pipeline of all-MiniLM-L6-v2)."""
    import torch

    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def _count_pass(model: Any, tokenizer: Any, texts: list[str]) -> tuple[Any, int]:
    """Today's code: arrival-order batches of `COUNT_BATCH`, padded by the tokenizer call."""
    import torch

    out = torch.empty(len(texts), model.config.hidden_size)
    cells = 0
    for start in range(0, len(texts), COUNT_BATCH):
        chunk = texts[start : start + COUNT_BATCH]
        batch = tokenizer(
            chunk, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        cells += batch["input_ids"].numel()
        out[start : start + len(chunk)] = _embed(model, batch)
    return out, cells


def _token_pass(model: Any, tokenizer: Any, texts: list[str]) -> tuple[Any, int]:
    """Token-budget batches: tokenize once, unpadded; `token_batches`; embeddings to `rows`."""
    import torch

    out = torch.empty(len(texts), model.config.hidden_size)
    seen = np.zeros(len(texts), dtype=np.int64)
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    cells = 0
    for rows, batch in token_batches(encoded, max_tokens=MAX_TOKENS, tokenizer=tokenizer):
        cells += batch["input_ids"].numel()
        seen[rows] += 1
        out[torch.from_numpy(rows)] = _embed(model, batch)
    if not (seen == 1).all():
        raise AssertionError("end to end: token_batches did not give every row exactly once")
    return out, cells


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def measure(config: Any, tokenizer: Any, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The section's figures (JSON-ready); None without a real tokenizer or transformers,
    when ``--paths`` chose a subset of the padding paths, or with no texts asked for.

    Raises AssertionError when the two passes' embeddings differ by more than `TOLERANCE`.
    """
    texts_count, repeats = QUICK if config.quick else FULL
    if config.e2e_texts is not None:
        texts_count = config.e2e_texts
    if tokenizer is None or config.paths is not None or texts_count < 1:
        return None
    import torch
    from transformers import AutoModel

    texts = make_mixed_texts(texts_count, config.seed)
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    ]
    say(f"end to end: {texts_count} mixed texts, count batches vs token batches, {repeats}x")
    model: Any = AutoModel.from_pretrained(tokenizer.name_or_path)
    model.eval()
    passes = {"count": _count_pass, "tokens": _token_pass}
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    embeddings: dict[str, Any] = {}
    cells: dict[str, int] = {}
    difference = 0.0
    with torch.inference_mode():
        _embed(model, tokenizer(texts[:4], padding=True, return_tensors="pt"))  # warm-up
        for _ in range(repeats):
            for name, run_pass in passes.items():
                start = time.perf_counter()
                embeddings[name], cells[name] = run_pass(model, tokenizer, texts)
                seconds[name].append(time.perf_counter() - start)
            # Every repeat's outputs compared; NaN fails too.
            current = float((embeddings["count"] - embeddings["tokens"]).abs().max())
            if not current <= TOLERANCE:
                raise AssertionError(
                    f"end to end: embeddings of count and token batches differ by {current:.3g} "
                    f"(max abs), more than {TOLERANCE:g}"
                )
            difference = max(difference, current)
    speedups = [
        count / tokens for count, tokens in zip(seconds["count"], seconds["tokens"], strict=True)
    ]
    real = int(sum(lengths))
    queries = sum(text.endswith("?") for text in texts)
    return {
        "model": "all-MiniLM-L6-v2 (AutoModel + mean pooling + L2 normalisation)",
        "model_threads": torch.get_num_threads(),
        "texts": texts_count,
        "queries": queries,
        "passages": texts_count - queries,
        "max_length": MAX_LENGTH,
        "mean_tokens": real / texts_count,
        "longest": max(lengths),
        "at_max_length": sum(length == MAX_LENGTH for length in lengths),
        "real_tokens": real,
        "repeats": repeats,
        "count": {
            "batch_size": COUNT_BATCH,
            "batches": math.ceil(texts_count / COUNT_BATCH),
            "padded_cells": cells["count"],
            "seconds": seconds["count"],
            "texts_per_s": _spread([texts_count / value for value in seconds["count"]]),
        },
        "tokens": {
            "max_tokens": MAX_TOKENS,
            "padded_cells": cells["tokens"],
            "seconds": seconds["tokens"],
            "texts_per_s": _spread([texts_count / value for value in seconds["tokens"]]),
        },
        "speedup": _spread(speedups),
        "max_abs_diff": difference,
        "tolerance": TOLERANCE,
    }


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    """Markdown for the section (nothing when it did not run)."""
    section = report.get("end_to_end")
    if not section:
        return
    count, tokens, speedup = section["count"], section["tokens"], section["speedup"]
    real = section["real_tokens"]

    def rate(part: dict[str, Any]) -> str:
        spread = part["texts_per_s"]
        if section["repeats"] == 1:
            return f"{spread['median']:.1f}"
        return f"{spread['median']:.1f} ({spread['min']:.1f}-{spread['max']:.1f})"

    def time_of(part: dict[str, Any]) -> str:
        return format_seconds(statistics.median(part["seconds"]))

    yield ""
    yield (
        f"**End to end**: {section['model']}, {section['model_threads']} torch thread(s), "
        f"{section['texts']} mixed texts ({section['queries']} queries, {section['passages']} "
        f"passages; mean {section['mean_tokens']:.0f} tokens, {section['at_max_length']} at the "
        f"{section['max_length']}-token limit), texts to embeddings, tokenization included; "
        f"{section['repeats']} alternating repeat(s), median (min-max)"
    )
    yield ""
    yield "| batches | padded cells (real tokens: share) | time | texts/s |"
    yield "|---|---:|---:|---:|"
    for label, part in (
        (
            f"count: arrival order, {count['batch_size']} per batch, tokenizer padding",
            count,
        ),
        (f"tokens: `token_batches(max_tokens={tokens['max_tokens']})`", tokens),
    ):
        share = 100 * real / part["padded_cells"]
        yield (
            f"| {label} | {part['padded_cells']:,} ({share:.0f}%) | {time_of(part)} | "
            f"{rate(part)} |"
        )
    spread = (
        f"{speedup['median']:.2f}x"
        if section["repeats"] == 1
        else f"{speedup['median']:.2f}x ({speedup['min']:.2f}-{speedup['max']:.2f}x)"
    )
    yield ""
    yield (
        f"Token batches: {spread} the texts/s of count batches (per repeat), "
        f"{count['padded_cells'] / tokens['padded_cells']:.1f}x fewer padded cells; embeddings "
        f"within {section['max_abs_diff']:.2g} (max abs, limit {section['tolerance']:g})."
    )
