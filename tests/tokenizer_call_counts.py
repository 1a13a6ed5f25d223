"""Print the Python function calls (cProfile) of one call with a tokenizer, 64 rows, on the
simulated device of tests/test_packer.py: the figures tests/test_tokenizer_lean.py bounds.

Run from the repository root: ``HF_HUB_OFFLINE=1 PYTHONPATH=python python
tests/tokenizer_call_counts.py`` (``-v`` prints each profile).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import transformers
from conftest import tokenizer_path
from test_packer import FakeTorch

import fastpad
import fastpad._ring


def python_calls(call: Callable[[], Any], verbose: bool) -> int:
    for _ in range(4):  # warm: caches filled, every ring slot allocated
        call()
    profile = cProfile.Profile()
    profile.enable()
    call()
    profile.disable()
    stats = pstats.Stats(profile)
    if verbose:
        stats.sort_stats("ncalls").print_stats(30)
    return int(stats.total_calls) - 1  # less the profiler's own disable()


def main() -> None:
    verbose = "-v" in sys.argv
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path())
    rng = np.random.default_rng(0)
    words = ["padding", "ragged", "batch", "token", "the", "GPU", "runs", "while", "we", "wait"]
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(3, 60, size=64)]
    encoded = tokenizer(texts)
    simulated = FakeTorch()
    fastpad._ring._torch = lambda: simulated  # type: ignore[attr-defined]
    packer = fastpad.Packer("cuda", tokenizer=tokenizer)
    calls = {
        "fastpad.pad(encoding, tokenizer=tok)": lambda: fastpad.pad(
            encoded, tokenizer=tokenizer, pin_memory=False
        ),
        "Packer('cuda', tokenizer=tok)(encoding)": lambda: packer(encoded),
        "fastpad.pad(list rows, pad_token_id=0)": lambda: fastpad.pad(
            encoded["input_ids"], pad_token_id=0, pin_memory=False
        ),
        "Packer('cuda', tokenizer=tok)(list rows)": lambda: packer(encoded["input_ids"]),
    }
    for label, call in calls.items():
        print(f"{python_calls(call, verbose):4d}  {label}")


if __name__ == "__main__":
    main()
