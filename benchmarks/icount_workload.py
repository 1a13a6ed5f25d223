"""A fixed fastpad workload for instruction counts (``benchmarks/compare_builds.sh``).

``python benchmarks/icount_workload.py N PATH`` pads the same generated batch N times; run under
``valgrind --tool=callgrind`` with N and with 0, the difference divided by N is the count per
call, the same on every run of the same build (unlike time on a shared machine). PATH:
``lists`` (256 sentence-length rows of Python ints), ``ragged`` (the same rows as a
``fastpad.Ragged``, truncated to 128) or ``fields`` (a dict of two fields, int32,
``pad_to_multiple_of=8``). numpy outputs: torch is not imported, so its start-up does not count.
"""

from __future__ import annotations

import sys

import numpy as np

import fastpad


def main() -> None:
    calls, path = int(sys.argv[1]), sys.argv[2]
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(90), 0.6, 256).astype(np.int64), 1, 512)
    rows = [[int(v) for v in rng.integers(0, 30000, n)] for n in lengths]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ragged = fastpad.Ragged(np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]), offsets)
    fields = {"input_ids": rows, "token_type_ids": [[0] * len(row) for row in rows]}
    for _ in range(calls):
        if path == "lists":
            fastpad.pad(rows, pad_token_id=0, return_tensors="np")
        elif path == "ragged":
            fastpad.pad(
                ragged, pad_token_id=0, return_tensors="np", truncation=True, max_length=128
            )
        elif path == "fields":
            fastpad.pad(
                fields, pad_token_id=0, return_tensors="np", dtype="int32", pad_to_multiple_of=8
            )
        else:
            raise SystemExit(f"unknown path {path!r}: lists, ragged or fields")


if __name__ == "__main__":
    main()
