"""Token-budget batch planning: padding waste and speed of `fastpad.plan_batches`.

Waste = padded cells that hold no token / all padded cells, over all batches. Compared with
random batches and transformers' ``LengthGroupedSampler`` (``group_by_length=True``) at the same
mean batch size, on log-normal sentence lengths.

Run:  python -m pytest benchmarks/bench_plan.py --benchmark-only   (timings + checks)
      python benchmarks/bench_plan.py                               (waste table)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import fastpad

ROWS = 5000
BUDGETS = (4096, 8192, 16384)


def sentence_lengths(rows: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Log-normal token counts of English sentences (median ~27 tokens, long tail to 512)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(27), 0.6, rows)), 1, 512).astype(np.int64)


def waste(batches: Sequence[Any], lengths: npt.NDArray[np.int64], multiple_of: int = 1) -> float:
    cells = 0
    for batch in batches:
        longest = int(lengths[np.asarray(batch)].max())
        cells += len(batch) * (-(-longest // multiple_of) * multiple_of)
    return 1.0 - float(lengths.sum()) / cells


def over_budget(batches: Sequence[Any], lengths: npt.NDArray[np.int64], budget: int) -> float:
    """Largest padded batch relative to the budget (> 1: a fixed batch size overshoots it)."""
    return max(len(batch) * int(lengths[np.asarray(batch)].max()) for batch in batches) / budget


def fixed_batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    order = list(order)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def random_batches(rows: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    return fixed_batches(np.random.default_rng(seed).permutation(rows).tolist(), batch_size)


def length_grouped_batches(
    lengths: npt.NDArray[np.int64], batch_size: int, seed: int = 0
) -> list[list[int]]:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    sampler = LengthGroupedSampler(batch_size, lengths=lengths.tolist(), generator=generator)
    return fixed_batches(list(sampler), batch_size)


def waste_table(rows: int = ROWS, multiple_of: int | None = None) -> list[dict[str, Any]]:
    lengths = sentence_lengths(rows)
    table = []
    for budget in BUDGETS:
        plan = fastpad.plan_batches(
            lengths, max_tokens=budget, multiple_of=multiple_of, shuffle=True, seed=0
        )
        batch_size = max(1, round(rows / len(plan)))
        rounding = multiple_of or 1
        randoms = random_batches(rows, batch_size)
        grouped = length_grouped_batches(lengths, batch_size)
        table.append(
            {
                "budget": budget,
                "batches": len(plan),
                "mean_batch_size": batch_size,
                "fastpad_waste": waste(plan, lengths, rounding),
                "random_waste": waste(randoms, lengths, rounding),
                "length_grouped_waste": waste(grouped, lengths, rounding),
                "fastpad_max_over_budget": over_budget(plan, lengths, budget),
                "random_max_over_budget": over_budget(randoms, lengths, budget),
                "length_grouped_max_over_budget": over_budget(grouped, lengths, budget),
            }
        )
    return table


@pytest.mark.parametrize("budget", BUDGETS)
def test_waste_beats_random_and_length_grouped(budget: int) -> None:
    lengths = sentence_lengths(ROWS)
    plan = fastpad.plan_batches(lengths, max_tokens=budget, shuffle=True, seed=0)
    batch_size = max(1, round(ROWS / len(plan)))
    fastpad_waste = waste(plan, lengths)
    assert fastpad_waste < waste(length_grouped_batches(lengths, batch_size), lengths)
    assert fastpad_waste < waste(random_batches(ROWS, batch_size), lengths)
    assert over_budget(plan, lengths, budget) <= 1.0


@pytest.mark.parametrize(("rows", "budget"), [(5000, 4096), (100_000, 16384)])
def test_waste_under_five_percent(rows: int, budget: int) -> None:
    # With 5000 rows, bigger budgets make each batch a wider slice of the length distribution
    # (8192: 7.4%, 16384: 12.4%); with more rows per length the waste drops for every budget.
    lengths = sentence_lengths(rows)
    assert waste(fastpad.plan_batches(lengths, max_tokens=budget), lengths) <= 0.05


@pytest.mark.parametrize("rows", [5000, 1_000_000])
def test_plan_speed(benchmark: Any, rows: int) -> None:
    lengths = sentence_lengths(rows)
    plan = benchmark(fastpad.plan_batches, lengths, max_tokens=4096, shuffle=True, seed=0)
    assert sum(batch.size for batch in plan) == rows


def test_length_grouped_sampler_speed(benchmark: Any) -> None:
    """transformers' group_by_length index order for the same 1M rows (the baseline)."""
    lengths = sentence_lengths(1_000_000)
    batch_size = 128
    benchmark.pedantic(length_grouped_batches, args=(lengths, batch_size), rounds=1, iterations=1)


def main() -> None:
    for multiple_of in (None, 8):
        print(f"\n{ROWS} log-normal sentence lengths, pad_to_multiple_of={multiple_of}")
        print(
            f"{'budget':>7} {'batches':>8} {'rows/b':>7} {'fastpad':>8} {'grouped':>8} "
            f"{'random':>8}   max cells / budget (fastpad, grouped, random)"
        )
        for row in waste_table(multiple_of=multiple_of):
            print(
                f"{row['budget']:>7} {row['batches']:>8} {row['mean_batch_size']:>7} "
                f"{row['fastpad_waste']:>8.2%} {row['length_grouped_waste']:>8.2%} "
                f"{row['random_waste']:>8.2%}   {row['fastpad_max_over_budget']:.2f}, "
                f"{row['length_grouped_max_over_budget']:.2f}, "
                f"{row['random_max_over_budget']:.2f}"
            )
    # Waste falls with the number of rows per distinct length: the same budgets on more rows.
    for rows in (100_000, 1_000_000):
        lengths = sentence_lengths(rows)
        figures = ", ".join(
            f"{budget}: {waste(fastpad.plan_batches(lengths, max_tokens=budget), lengths):.2%}"
            for budget in BUDGETS
        )
        print(f"{rows} rows, fastpad waste by budget: {figures}")
    lengths = sentence_lengths(1_000_000)
    for label, run in (
        (
            "fastpad.plan_batches sort+shuffle",
            lambda: fastpad.plan_batches(lengths, max_tokens=4096, shuffle=True, seed=0),
        ),
        ("fastpad.plan_batches sort", lambda: fastpad.plan_batches(lengths, max_tokens=4096)),
        (
            "fastpad.plan_batches unsorted",
            lambda: fastpad.plan_batches(lengths, max_tokens=4096, sort=False),
        ),
        ("LengthGroupedSampler (bs=128)", lambda: length_grouped_batches(lengths, 128)),
    ):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        print(f"1M lengths, {label}: {best * 1000:.1f} ms (best of 3)")


if __name__ == "__main__":
    main()
