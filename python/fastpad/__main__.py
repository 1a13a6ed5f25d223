"""Command line: ``python -m fastpad bench`` (also installed as the ``fastpad`` command)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

_DESCRIPTION = (
    "fastpad pads ragged batches of token ids into input_ids / attention_mask tensors in one C++ "
    "pass. Commands: 'bench' times it side by side with what people use today on this machine."
)
_DEFAULT_OUT = "fastpad-bench"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sorted(set(sizes))


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastpad", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"fastpad {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="time fastpad side by side with transformers, torch and numpy on this machine",
        description=(
            "Pad the same ragged batches with fastpad and with what people use today "
            "(fastpad.reference, tokenizer.pad, DataCollatorWithPadding, pad_sequence, numpy, a "
            "copy floor), check every output equal, then print medians and ratios and write "
            "bench.png and bench.json into --out. Then, with transformers and the bundled "
            "all-MiniLM-L6-v2: the transformers patch end to end, and the model on mixed-length "
            "texts in count batches against fastpad.token_batches (texts/s, padded cells, "
            "embeddings compared). No downloads: the batches and texts are generated, the "
            "tokenizer and model are the bundled all-MiniLM-L6-v2 when installed."
        ),
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="every path and section, with a small budget, B <= 256 and small end-to-end workloads",
    )
    bench.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        help=f"folder for bench.png and bench.json, created if missing (default {_DEFAULT_OUT}/)",
    )
    bench.add_argument(
        "--batch-sizes",
        type=_sizes,
        default=None,
        metavar="B,B,...",
        help="batch sizes (default 1,8,32,256,1024,4096; --quick: 1,8,32,256)",
    )
    bench.add_argument(
        "--workloads",
        default="short,sentences,documents",
        metavar="W,W,...",
        help=(
            "length distributions: short (mean 20), sentences (mean 90, cap 512), documents "
            "(mean 1200, cap 4096, truncated to 512), or MEAN[:CAP[:TRUNCATE]] for a custom "
            "log-normal one"
        ),
    )
    bench.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for fastpad and torch in the main table (default 1); the thread-scaling "
        "table always runs 1..usable cores",
    )
    bench.add_argument(
        "--paths", default=None, metavar="P,P,...", help="only these paths (names as in the JSON)"
    )
    bench.add_argument(
        "--budget", type=float, default=None, help="seconds per batch size and workload"
    )
    bench.add_argument(
        "--e2e-texts",
        type=int,
        default=None,
        metavar="N",
        help="texts of the end-to-end section (all-MiniLM-L6-v2 on mixed queries and passages, "
        "count batches vs fastpad.token_batches; default 512 in 3 repeats, --quick: 32 in 1; "
        "0 skips it)",
    )
    bench.add_argument("--seed", type=int, default=0, help="seed of the generated batches")
    bench.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    bench.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (fastpad's, and those of transformers and huggingface_hub)",
    )
    bench.add_argument("--no-plot", action="store_true", help="write no PNG")
    return parser


@contextlib.contextmanager
def _progress_bars_off() -> Iterator[None]:
    """Silence the progress bars of transformers and huggingface_hub (e.g. "Loading weights"),
    restoring their previous state afterwards."""
    restore: list[Any] = []
    previous = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        with contextlib.suppress(ImportError):
            hub: Any = importlib.import_module("huggingface_hub.utils")
            if not hub.are_progress_bars_disabled():
                hub.disable_progress_bars()
                restore.append(hub.enable_progress_bars)
        if importlib.util.find_spec("transformers") is not None:
            logs: Any = importlib.import_module("transformers.utils.logging")
            if logs.is_progress_bar_enabled():
                logs.disable_progress_bar()
                restore.append(logs.enable_progress_bar)
        yield
    finally:
        for undo in reversed(restore):
            undo()
        if previous is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = previous


def _missing_requirements(plot: bool) -> str | None:
    """What `bench` needs and this environment lacks, as a message; None when all is there."""
    try:
        import torch  # noqa: F401  (the bench imports it anyway)
    except ImportError:
        return (
            "needs torch, which is not installed (fastpad.pad itself works without it with "
            "return_tensors='np'). Install the bench requirements with "
            "pip install 'fastpad[bench]'"
        )
    try:
        if plot:
            import matplotlib  # noqa: F401
    except ImportError:
        return (
            "needs matplotlib for bench.png, which is not installed: pass --no-plot, or "
            "pip install 'fastpad[bench]'"
        )
    return None


def bench(arguments: argparse.Namespace) -> int:
    """Run the benchmark described by parsed `arguments`; returns the exit status."""
    from ._bench.paths import available_paths
    from ._bench.plot import plot
    from ._bench.report import table_lines, write_json
    from ._bench.run import BenchConfig, run
    from ._bench.workloads import BATCH_SIZES, QUICK_BATCH_SIZES, parse_workload

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        workloads = [parse_workload(name) for name in arguments.workloads.split(",")]
        paths = arguments.paths.split(",") if arguments.paths else None
        if paths is not None:
            available_paths("tokenizer", paths)  # unknown names fail here, before any work
    except ValueError as error:
        print(f"fastpad bench: {error}", file=sys.stderr)
        return 2
    if arguments.e2e_texts is not None and arguments.e2e_texts < 0:
        print("fastpad bench: --e2e-texts must be >= 0", file=sys.stderr)
        return 2
    if arguments.threads < 1:
        print("fastpad bench: --threads must be >= 1", file=sys.stderr)
        return 2
    missing = _missing_requirements(plot=not arguments.no_plot)
    if missing is not None:
        print(f"fastpad bench: {missing}", file=sys.stderr)
        return 2
    quick = arguments.quick
    sizes = arguments.batch_sizes or list(QUICK_BATCH_SIZES if quick else BATCH_SIZES)
    config = BenchConfig(
        workloads=workloads,
        batch_sizes=sizes,
        paths=paths,
        threads=arguments.threads,
        budget_seconds=arguments.budget or (0.2 if quick else 2.0),
        memory=not arguments.no_memory,
        # --quick: memory at one batch size, the largest up to 256 (pure Python is slow there).
        memory_batch_sizes=[max([size for size in sizes if size <= 256] or sizes[:1])]
        if quick
        else None,
        min_rounds=3 if quick else 5,
        encode_batch_sizes=[256] if quick else [32, 256],
        quick=quick,
        e2e_texts=arguments.e2e_texts,
        seed=arguments.seed,
    )
    try:
        os.makedirs(arguments.out, exist_ok=True)
    except OSError as error:
        print(f"fastpad bench: cannot create --out {arguments.out!r}: {error}", file=sys.stderr)
        return 2
    files = "bench.json" if arguments.no_plot else "bench.json and bench.png"
    print(f"fastpad bench: writing {files} to {os.path.abspath(arguments.out)}")
    started = time.perf_counter()
    quiet = _progress_bars_off() if arguments.no_progress else contextlib.nullcontext()
    with quiet:
        report = run(config, progress=not arguments.no_progress)
    report["command"] = "python -m fastpad bench " + " ".join(sys.argv[2:])
    report["elapsed_s"] = time.perf_counter() - started
    machine = report["machine"]
    print(
        f"fastpad {machine['fastpad']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['machine']}), Python {machine['python']}, torch {machine['torch']}, "
        f"numpy {machine['numpy']}, transformers {machine['transformers']}; "
        f"{config.threads} thread(s)"
    )
    print(report["tokenizer"])
    for line in table_lines(report):
        print(line)
    for note in report["notes"]:
        print(f"- {note}")
    json_path = os.path.join(arguments.out, "bench.json")
    write_json(report, json_path)
    print(f"\nwrote {json_path}")
    if not arguments.no_plot:
        png_path = os.path.join(arguments.out, "bench.png")
        plot(report, png_path)
        print(f"wrote {png_path}")
    print(f"({report['elapsed_s']:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastpad`` and of the ``fastpad`` console script."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "bench":
        return bench(arguments)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
