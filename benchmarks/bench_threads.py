"""fastpad.pad with one thread against two and against the default (``threads=None``), side by side.

Run: ``PYTHONPATH=python python benchmarks/bench_threads.py [--repeats 15] [--sizes 256,1024,4096]``
(repeat it in a few fresh processes: the figures move with the machine's load). For every shape
(workload x batch size, `Ragged` input, the bench's workloads) the three calls run interleaved in
a rotating order; the table gives the medians and their ratios to one thread (above 1: faster),
and the thread count the default chose.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from typing import Any

import fastpad
from fastpad._bench.workloads import WORKLOADS, make_batch


def _time(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", default="256,1024,4096,16384")
    parser.add_argument("--workloads", default="short,sentences,documents")
    arguments = parser.parse_args()
    cores = fastpad.default_threads()
    print(f"usable cores {cores}, load average {os.getloadavg()}")
    print(
        f"{'shape':>20} {'cells':>9} {'1 thread':>10} {'2 threads':>10} {'x':>6} "
        f"{'default':>10} {'x':>6} {'chose':>5}"
    )
    for name in arguments.workloads.split(","):
        workload = WORKLOADS[name]
        for size in (int(text) for text in arguments.sizes.split(",")):
            batch = make_batch(workload, size)
            options: dict[str, Any] = {"pad_token_id": 0}
            if workload.truncate is not None:
                options.update(truncation=True, max_length=workload.truncate)
            calls = {
                threads: functools.partial(fastpad.pad, batch.ragged, threads=threads, **options)
                for threads in (1, 2, None)
            }
            expected = calls[1]()
            for call in calls.values():
                got = call()
                assert all(got[key].equal(expected[key]) for key in expected)
            samples: dict[Any, list[float]] = {key: [] for key in calls}
            order = list(calls)
            for repeat in range(arguments.repeats):
                for key in order[repeat % 3 :] + order[: repeat % 3]:
                    samples[key].append(_time(calls[key]))
            median = {key: statistics.median(values) for key, values in samples.items()}
            cells = batch.size * int(expected["input_ids"].shape[1])
            print(
                f"{name + ' B=' + str(size):>20} {cells:>9} {median[1] * 1e3:>8.2f}ms "
                f"{median[2] * 1e3:>8.2f}ms {median[1] / median[2]:>5.2f}x "
                f"{median[None] * 1e3:>8.2f}ms {median[1] / median[None]:>5.2f}x "
                f"{fastpad.default_threads(cells):>5}"
            )

    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
