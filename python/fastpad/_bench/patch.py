"""The `fastpad.patch_transformers` section of ``python -m fastpad bench``: end-to-end figures.

Unchanged user code, unpatched then patched, in one process:

- the micro-benchmarks that decide the gain: ``tokenizer.pad`` at B=256 (a dict of lists, and
  the list of examples DataCollatorWithPadding hands it) and the padded tokenizer call
  ``tokenizer(texts, padding=True, truncation=True, return_tensors="pt")`` at B=256, timed in
  interleaved rounds by calling the original method and the wrapper side by side;
- ``SentenceTransformer.encode`` over a few thousand texts (all-MiniLM-L6-v2 on this machine);
- a training-style loop: DataCollatorWithPadding (through ``tokenizer.pad``) + the model's
  forward and backward pass, batch after batch.

For the last two, the total time and the host-side preparation (tokenize + pad + tensors, timed
inside the same run) with its share. The figure (`plot`) draws the host-prep speed-ups, which
are medians of paired timings; the totals of single runs stay in the table. On a CPU the model
dominates the total; on a GPU, where the model step takes milliseconds, the host preparation per
batch decides the throughput.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._patch_transformers import patch_transformers, unpatch_transformers
from .measure import format_seconds, time_interleaved
from .workloads import WORKLOADS, make_batch, make_texts

__all__ = ["MICRO_BATCH", "measure", "table_lines"]

MICRO_BATCH = 256
# (texts, batch size, repeats) for SentenceTransformer.encode; (examples, batch, steps, repeats)
# for the training-style loop. --quick keeps CI fast.
_FULL = {"encode": (2048, 32, 1), "train": (512, 32, 8, 2)}
_QUICK = {"encode": (64, 32, 1), "train": (64, 8, 2, 1)}


def _same(got: Any, expected: Any, label: str) -> None:
    """The patched result holds exactly the unpatched one's keys, dtypes, shapes and values."""
    import torch

    if list(got.keys()) != list(expected.keys()):
        raise AssertionError(f"{label}: keys {list(got.keys())} != {list(expected.keys())}")
    for key, want in expected.items():
        value = got[key]
        if value.dtype != want.dtype or value.shape != want.shape or not torch.equal(value, want):
            raise AssertionError(f"{label}: {key} differs patched and unpatched")


def _median_pair(samples: list[list[float]]) -> tuple[float, float]:
    return float(np.median(samples[0])), float(np.median(samples[1]))


def _micro(config: Any, tokenizer: Any) -> list[dict[str, Any]]:
    """Unpatched method and patched wrapper called side by side (no global switching)."""
    from transformers import PreTrainedTokenizerBase as base

    original_pad, original_call = base.__dict__["pad"], base.__dict__["__call__"]
    patch_transformers()
    try:
        patched_pad, patched_call = base.__dict__["pad"], base.__dict__["__call__"]
    finally:
        unpatch_transformers()
    if patched_pad is original_pad or patched_call is original_call:
        return []  # not patched on this transformers (warned already)
    batch = make_batch(WORKLOADS["sentences"], MICRO_BATCH, config.seed)
    mapping = {"input_ids": batch.kept_rows}
    texts = make_texts(MICRO_BATCH, config.seed)
    cases: list[tuple[str, str, Callable[..., Any], Callable[..., Any], tuple[Any, ...], Any]] = [
        (
            "tokenizer.pad (dict of lists)",
            "tokenizer.pad",
            original_pad,
            patched_pad,
            (tokenizer, mapping),
            {"padding": True, "return_tensors": "pt"},
        ),
        (
            "tokenizer.pad (list of examples, as DataCollatorWithPadding)",
            "tokenizer.pad (examples)",
            original_pad,
            patched_pad,
            (tokenizer, batch.features),
            {"padding": True, "return_tensors": "pt"},
        ),
        (
            "tokenizer(texts, padding=True, truncation=True, return_tensors='pt')",
            "tokenizer call",
            original_call,
            patched_call,
            (tokenizer, texts),
            {"padding": True, "truncation": True, "return_tensors": "pt"},
        ),
    ]
    results = []
    for label, short, unpatched, patched, arguments, options in cases:

        def run_unpatched(method: Any = unpatched, args: Any = arguments, kw: Any = options) -> Any:
            return method(*args, **kw)

        def run_patched(method: Any = patched, args: Any = arguments, kw: Any = options) -> Any:
            return method(*args, **kw)

        _same(run_patched(), run_unpatched(), label)
        samples = time_interleaved(
            [run_unpatched, run_patched], config.budget_seconds, min_rounds=config.min_rounds
        )
        before, after = _median_pair(samples)
        results.append(
            {
                "case": label,
                "short": short,
                "batch_size": MICRO_BATCH,
                "unpatched_s": before,
                "patched_s": after,
                "speedup": before / after,
            }
        )
    return results


class _Timed:
    """Wraps a callable, adds up the seconds spent in it and keeps its first arguments."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0
        self.inputs: list[Any] = []

    def __call__(self, first: Any, *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(first)
        start = time.perf_counter()
        try:
            return self.function(first, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def _alternate(repeats: int, run: Callable[[bool], dict[str, Any]]) -> dict[bool, list[Any]]:
    """`run(patched)` unpatched and patched, alternately, `repeats` times each."""
    runs: dict[bool, list[Any]] = {False: [], True: []}
    for _ in range(repeats):
        for patched in (False, True):
            if patched:
                patch_transformers()
            try:
                runs[patched].append(run(patched))
            finally:
                unpatch_transformers()
    return runs


def _paired(calls: list[Callable[[], Any]], rounds: int) -> tuple[float, float]:
    """Seconds of all `calls` unpatched and patched: each call is timed unpatched, then
    patched, round after round, so that load drifting on a shared machine hits both alike;
    the sums of the per-call medians."""
    before: list[list[float]] = [[] for _ in calls]
    after: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for index, call in enumerate(calls):
            start = time.perf_counter()
            call()
            before[index].append(time.perf_counter() - start)
            patch_transformers()
            try:
                start = time.perf_counter()
                call()
                after[index].append(time.perf_counter() - start)
            finally:
                unpatch_transformers()
    return (
        float(sum(statistics.median(times) for times in before)),
        float(sum(statistics.median(times) for times in after)),
    )


def _summary(
    runs: dict[bool, list[dict[str, Any]]], batches: int, paired: tuple[float, float]
) -> dict[str, Any]:
    """Totals and in-run host prep (medians over the runs) with its share; the paired host
    prep, per pass and per batch, and the speed-ups."""
    summary: dict[str, Any] = {"batches": batches}
    for patched, name in ((False, "unpatched"), (True, "patched")):
        total = statistics.median(item["total_s"] for item in runs[patched])
        prep = statistics.median(item["prep_s"] for item in runs[patched])
        summary[name] = {
            "total_s": total,
            "prep_s": prep,
            "prep_share": prep / total,
            "prep_paired_s": paired[patched],
            "prep_per_batch_s": paired[patched] / batches,
        }
    summary["total_speedup"] = summary["unpatched"]["total_s"] / summary["patched"]["total_s"]
    summary["prep_speedup"] = paired[0] / paired[1]
    return summary


def _sentence_transformers(config: Any, path: str, say: Callable[[str], None]) -> dict[str, Any]:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return {"skipped": "sentence-transformers is not installed"}
    texts_count, batch_size, repeats = (_QUICK if config.quick else _FULL)["encode"]
    say(f"patch_transformers: SentenceTransformer.encode of {texts_count} texts")
    model: Any = SentenceTransformer(path, device="cpu")
    texts = make_texts(texts_count, config.seed, mean_words=30)
    model.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    embeddings: dict[bool, Any] = {}
    batches: list[Any] = []

    def run(patched: bool) -> dict[str, Any]:
        # The host-side preparation of every batch happens in `preprocess` (tokenize, pad,
        # tensors); an instance attribute times it inside the real encode loop.
        timed = _Timed(model.preprocess)
        model.preprocess = timed
        try:
            start = time.perf_counter()
            embeddings[patched] = model.encode(
                texts, batch_size=batch_size, show_progress_bar=False
            )
            total = time.perf_counter() - start
        finally:
            del model.preprocess
        batches[:] = timed.inputs  # the batches as encode formed them (sorted by length)
        return {"total_s": total, "prep_s": timed.seconds}

    runs = _alternate(repeats, run)
    if embeddings[True].tobytes() != embeddings[False].tobytes():
        raise AssertionError("SentenceTransformer embeddings differ patched and unpatched")
    paired = _paired(
        [functools.partial(model.preprocess, batch) for batch in batches], 2 if config.quick else 3
    )
    return {
        "texts": texts_count,
        "batch_size": batch_size,
        "repeats": repeats,
        "mean_tokens": _mean_tokens(model.tokenizer, texts),
        **_summary(runs, len(batches), paired),
        "bit_identical": True,
    }


def _mean_tokens(tokenizer: Any, texts: list[str]) -> float:
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"]]
    return float(np.mean(lengths))


def _training_loop(config: Any, tokenizer: Any, say: Callable[[str], None]) -> dict[str, Any]:
    from transformers import AutoModel, DataCollatorWithPadding

    examples, batch_size, steps, repeats = (_QUICK if config.quick else _FULL)["train"]
    say(f"patch_transformers: training-style loop, {steps} steps of {batch_size}")
    texts = make_texts(examples, config.seed + 1, mean_words=40)
    encoded = tokenizer(texts, truncation=True, max_length=128)
    features = [
        {**{key: encoded[key][index] for key in encoded}, "label": index % 2}
        for index in range(examples)
    ]
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(examples)
    batches = [
        [features[index] for index in order[start : start + batch_size]]
        for start in range(0, steps * batch_size, batch_size)
    ]
    model = AutoModel.from_pretrained(tokenizer.name_or_path)
    model.train()
    collator = DataCollatorWithPadding(tokenizer)
    collated: dict[bool, Any] = {}

    def run(patched: bool) -> dict[str, Any]:
        collate = _Timed(collator)
        start = time.perf_counter()
        for features_batch in batches:
            batch = collate(features_batch)
            del batch["labels"]  # the bare encoder takes no labels: a stand-in loss
            loss = model(**batch).last_hidden_state[:, 0].mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
        total = time.perf_counter() - start
        collated[patched] = collator(batches[0])
        return {"total_s": total, "prep_s": collate.seconds}

    runs = _alternate(repeats, run)
    _same(collated[True], collated[False], "DataCollatorWithPadding")
    paired = _paired([functools.partial(collator, batch) for batch in batches], 3)
    return {
        "examples": examples,
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        **_summary(runs, len(batches), paired),
    }


def measure(config: Any, tokenizer: Any, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The section's figures; patching is undone after.

    None without a real tokenizer, and when ``--paths`` chose a subset of the padding paths.
    """
    if tokenizer is None or config.paths is not None:
        return None
    import torch
    import transformers

    path = tokenizer.name_or_path
    try:
        say("patch_transformers: tokenizer.pad and the tokenizer call at B=256")
        micro = _micro(config, tokenizer)
        # The models run on the bench's torch threads (--threads): on a shared machine more
        # threads than free cores make torch's timings erratic.
        encode = _sentence_transformers(config, path, say)
        training = _training_loop(config, tokenizer, say)
    finally:
        unpatch_transformers()
    return {
        "transformers": transformers.__version__,
        "model_threads": torch.get_num_threads(),
        "micro": micro,
        "sentence_transformers": encode,
        "training_loop": training,
    }


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    """Markdown for the section (nothing when it did not run)."""
    section = report.get("patch_transformers")
    if not section:
        return
    seconds = format_seconds
    yield ""
    yield (
        f"**fastpad.patch_transformers()**: unchanged transformers code, unpatched vs patched "
        f"(transformers {section['transformers']})"
    )
    yield ""
    yield "| call | unpatched | patched | speed-up |"
    yield "|---|---:|---:|---:|"
    for item in section["micro"]:
        yield (
            f"| {item['case']}, B={item['batch_size']} | {seconds(item['unpatched_s'])} | "
            f"{seconds(item['patched_s'])} | {item['speedup']:.1f}x |"
        )
    encode = section["sentence_transformers"]
    training = section["training_loop"]
    threads = section["model_threads"]
    if "skipped" in encode:
        yield ""
        yield f"SentenceTransformer.encode: skipped ({encode['skipped']})"
    else:
        yield ""
        yield (
            f"**SentenceTransformer.encode**, {encode['texts']} texts (mean "
            f"{encode['mean_tokens']:.0f} tokens), batch {encode['batch_size']}, "
            f"all-MiniLM-L6-v2 on the CPU, {threads} torch thread(s); embeddings bit-identical"
        )
        yield from _end_to_end_rows(encode, "tokenize + pad + tensors (`preprocess`)")
    yield ""
    yield (
        f"**Training-style loop**: DataCollatorWithPadding + forward/backward, "
        f"{training['steps']} steps of {training['batch_size']}, {threads} torch thread(s)"
    )
    yield from _end_to_end_rows(training, "collate (`tokenizer.pad`)")
    yield ""
    parts = []
    for name, part in (("encode", encode), ("training loop", training)):
        if "skipped" in part:
            continue
        before, after = part["unpatched"], part["patched"]
        saved = before["prep_paired_s"] - after["prep_paired_s"]
        parts.append(
            f"{name}: host prep {100 * before['prep_share']:.1f}% of the time; the patch saves "
            f"{'-' if saved < 0 else ''}{seconds(abs(saved))} per pass "
            f"({100 * saved / before['total_s']:.1f}% of it)"
        )
    yield (
        "On this CPU the model dominates the total: "
        + "; ".join(parts)
        + ". The totals of single runs differ by more than that (model-step noise). On a GPU, "
        "where the model step takes milliseconds, the host prep per batch decides the throughput."
    )


def _end_to_end_rows(part: dict[str, Any], prep_label: str) -> Iterator[str]:
    seconds = format_seconds
    before, after = part["unpatched"], part["patched"]
    yield ""
    yield "| | unpatched | patched | speed-up |"
    yield "|---|---:|---:|---:|"
    yield (f"| total, one run | {seconds(before['total_s'])} | {seconds(after['total_s'])} | |")
    yield (
        f"| host prep in that run: {prep_label} (share) | {seconds(before['prep_s'])} "
        f"({100 * before['prep_share']:.1f}%) | {seconds(after['prep_s'])} "
        f"({100 * after['prep_share']:.1f}%) | |"
    )
    yield (
        f"| host prep per batch, paired timing | {seconds(before['prep_per_batch_s'])} | "
        f"{seconds(after['prep_per_batch_s'])} | {part['prep_speedup']:.1f}x |"
    )
