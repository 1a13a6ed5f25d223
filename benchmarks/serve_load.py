"""Ray Serve under load: the embedding example batched by tokens against the usual code, and
infinity-emb.

One local Ray (every port on 127.0.0.1, no dashboard) serves examples/serve_embeddings.py twice,
one replica each (``num_cpus=1``, so torch runs 1 thread): ``--batching tokens --padding
fastpad`` (the example's default) and ``--batching count --padding tokenizer`` (``@serve.batch``
+ ``tokenizer(texts, padding=True, truncation=True, max_length=256)``, the code users write).
With ``--infinity``, infinity-emb (``infinity_emb v2 --engine torch --device cpu``, the same
model directory) runs beside them from its own virtual environment, made on first use under
``.venv-infinity/`` (git-ignored): torch 2.13.0 (CPU) first, then ``infinity-emb[server,torch]``.

The load: ``--clients`` concurrent clients in a closed loop (each sends its next request when
its last one is answered, over a kept-alive connection), ``--requests`` requests per server and
round, interleaved over ``--rounds`` rounds so that load from other processes hits every server
alike. The texts are mixed traffic: 60% queries (3-12 words), 25% sentences (15-40 words),
15% passages (120-300 words, many truncated to 256 tokens), shuffled. Reported per server:
requests/s (median, min-max over rounds), p50/p99 latency (all rounds pooled) and, for the
Ray servers, the replica's counters (model calls, rows per call, padded cells per real token).

Checked on every run: the two Ray servers' embeddings of the same texts (sent concurrently, so
they are batched) agree within 1e-4, and with infinity's where it runs; bad bodies (not JSON,
no text, a non-string text) get 400 and the server answers the next request.

Run:  python benchmarks/serve_load.py                    (3 rounds x 320 requests, 64 clients)
      python benchmarks/serve_load.py --infinity         (and infinity-emb)
      python benchmarks/serve_load.py --quick            (a smoke run: a few requests, no peer)
Only 127.0.0.1 is used. benchmarks/test_serve_load.py runs the ``--quick`` form in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "serve_embeddings.py"
INFINITY_VENV = ROOT / ".venv-infinity"
INFINITY_VERSION = "0.0.78"
TORCH_VERSION = "2.13.0"
# name -> the example's options
SERVERS: dict[str, dict[str, Any]] = {
    "tokens": {"batching": "tokens", "padding": "fastpad"},
    "count": {"batching": "count", "padding": "tokenizer"},
}
LABELS = {
    "tokens": "example --batching tokens --padding fastpad",
    "count": "example --batching count --padding tokenizer",
    "infinity": "infinity-emb v2 --engine torch --device cpu",
}
ATOL = 1e-4
BAD_BODIES = (b"not json", b"{}", b'{"text": 5}', b'["a list"]', b'{"text": null}', b"\xff\xfe")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastpad_serve_embeddings_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mixed_texts(count: int, seed: int) -> list[str]:
    """Mixed traffic: 60% queries, 25% sentences, 15% passages, in random order."""
    from fastpad._bench.workloads import _WORDS

    rng = np.random.default_rng(seed)
    words = np.array(_WORDS)
    kinds = rng.choice(3, size=count, p=[0.60, 0.25, 0.15])
    bounds = {0: (3, 12), 1: (15, 40), 2: (120, 300)}
    texts = []
    for kind in kinds:
        low, high = bounds[int(kind)]
        chosen = words[rng.integers(0, len(words), int(rng.integers(low, high + 1)))]
        texts.append(" ".join(chosen.tolist()).capitalize() + ".")
    return texts


class Server:
    """Where a server answers, how a text is sent and how its embedding is read back."""

    def __init__(self, name: str, url: str, infinity_model: str | None = None) -> None:
        self.name = name
        self.url = url
        self.infinity_model = infinity_model

    def body(self, text: str) -> bytes:
        if self.infinity_model is not None:
            return json.dumps({"input": [text], "model": self.infinity_model}).encode()
        return json.dumps({"text": text}).encode()

    def embedding(self, reply: Any) -> list[float]:
        if self.infinity_model is not None:
            return list(reply["data"][0]["embedding"])
        return list(reply["embedding"])


async def _load(
    server: Server, texts: Sequence[str], clients: int
) -> tuple[float, list[float], list[list[float]]]:
    import aiohttp

    latencies = [0.0] * len(texts)
    embeddings: list[list[float]] = [[] for _ in texts]
    cursor = iter(range(len(texts)))
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            for index in cursor:
                start = time.perf_counter()
                async with session.post(
                    server.url,
                    data=server.body(texts[index]),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    reply = await response.json(content_type=None)
                    if response.status != 200:
                        raise RuntimeError(f"{server.name}: HTTP {response.status}: {reply}")
                latencies[index] = time.perf_counter() - start
                embeddings[index] = server.embedding(reply)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, embeddings


def closed_loop(
    server: Server, texts: Sequence[str], clients: int
) -> tuple[float, list[float], np.ndarray]:
    """Seconds for all `texts` with `clients` concurrent senders, each request's latency and
    the embeddings (in the order of `texts`)."""
    elapsed, latencies, embeddings = asyncio.run(_load(server, texts, clients))
    return elapsed, latencies, np.array(embeddings, dtype=np.float32)


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_bad_bodies(server: Server) -> list[int]:
    """The statuses of the bad bodies; raises unless all are 400 and the server still answers."""
    statuses = [post(server.url, body)[0] for body in BAD_BODIES]
    if statuses != [400] * len(BAD_BODIES):
        raise AssertionError(f"{server.name}: bad bodies answered {statuses}, expected 400s")
    status, reply = post(server.url, server.body("Still serving after bad bodies."))
    if status != 200 or len(server.embedding(reply)) != 384:
        raise AssertionError(f"{server.name}: HTTP {status} after the bad bodies")
    return statuses


# -- infinity-emb --------------------------------------------------------------------------------


def infinity_executable() -> Path:
    """``infinity_emb`` from `INFINITY_VENV`, installed there first if missing."""
    executable = INFINITY_VENV / "bin" / "infinity_emb"
    if executable.exists():
        return executable
    pip = [str(INFINITY_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    print(f"making {INFINITY_VENV} (torch {TORCH_VERSION}, then infinity-emb)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
    # torch first, from the CPU build: else infinity-emb's requirement pulls the CUDA build.
    subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
    subprocess.run([*pip, f"infinity-emb[server,torch]=={INFINITY_VERSION}"], check=True)
    return executable


def start_infinity(model_dir: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(infinity_executable()),
        "v2",
        "--model-id",
        model_dir,
        "--served-model-name",
        "minilm",
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-model-warmup",
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    log = open(ROOT / ".venv-infinity" / "server.log", "wb")  # noqa: SIM115 (lives with it)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"infinity_emb exited ({process.returncode}): see {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(1)
    process.terminate()
    raise RuntimeError(f"infinity_emb did not answer /health in 180 s: see {log.name}")


# -- the run -------------------------------------------------------------------------------------


def deploy(example: ModuleType, args: argparse.Namespace) -> dict[str, Server]:
    """Serve (HTTP on 127.0.0.1, a free port) and the example's applications named in
    ``args.servers``, one replica each."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    servers = {}
    targets = []
    for name in args.servers:
        if name not in SERVERS:
            continue
        application = example.EmbeddingDeployment.options(
            ray_actor_options={"num_cpus": args.replica_cpus}
        ).bind(
            max_batch_size=args.max_batch_size,
            max_batch_tokens=args.max_batch_tokens,
            max_gather_tokens=args.max_gather_tokens,
            **SERVERS[name],
        )
        targets.append((application, f"embed-{name}", f"/{name}"))
        servers[name] = Server(name, f"http://127.0.0.1:{port}/{name}")
    if hasattr(serve, "run_many"):  # the replicas start side by side
        serve.run_many(
            [serve.RunTarget(app, name=name, route_prefix=route) for app, name, route in targets]
        )
    else:
        for application, name, route in targets:
            serve.run(application, name=name, route_prefix=route)
    return servers


def measure(
    example: ModuleType, servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, Any]:
    """The checks (same embeddings, bad bodies) and the load rounds against `servers`."""
    from ray import serve

    handles = {name: serve.get_app_handle(f"embed-{name}") for name in servers if name in SERVERS}
    texts = mixed_texts(args.requests, seed=args.seed)
    check = mixed_texts(args.check, seed=args.seed + 1)
    figures: dict[str, Any] = {"servers": {}, "texts": texts_summary(example, texts)}

    # Same answers: the check texts sent concurrently (so batched) to every server.
    answers = {
        name: closed_loop(server, check, args.clients)[2] for name, server in servers.items()
    }
    reference = next(iter(servers))
    differences = {
        name: float(np.abs(answers[name] - answers[reference]).max()) for name in servers
    }
    figures["reference"] = reference
    figures["max_difference"] = differences
    for name, difference in differences.items():
        if difference > ATOL:
            raise AssertionError(f"{name}: embeddings differ from {reference}'s by {difference}")
    figures["bad_bodies"] = {name: check_bad_bodies(servers[name]) for name in handles}

    for server in servers.values():  # warm-up: the first batches allocate
        closed_loop(server, texts[: args.clients], args.clients)
    before = {name: handle.stats.remote().result() for name, handle in handles.items()}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    latencies: dict[str, list[float]] = {name: [] for name in servers}
    load = []
    for _ in range(args.rounds):
        for name, server in servers.items():
            elapsed, times, _ = closed_loop(server, texts, args.clients)
            rates[name].append(len(texts) / elapsed)
            latencies[name] += times
            load.append(os.getloadavg()[0])
    after = {name: handle.stats.remote().result() for name, handle in handles.items()}
    for name in servers:
        p50, p99 = np.percentile(latencies[name], [50, 99])
        entry: dict[str, Any] = {
            "requests_per_s": rates[name],
            "p50_s": float(p50),
            "p99_s": float(p99),
        }
        if name in handles:
            counters = ("calls", "model_calls", "rows", "cells", "tokens", "model_s", "turns")
            entry["replica"] = {
                key: after[name][key] - before[name][key] for key in counters if key in after[name]
            }
            entry["replica"]["torch_threads"] = after[name]["torch_threads"]
        figures["servers"][name] = entry
    figures["load_average"] = load
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    """A local Ray (unless one runs), the servers, `measure`; everything stopped after."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    import ray
    from ray import serve

    example = load_example()
    own_ray = not ray.is_initialized()
    if own_ray:
        example.init_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    infinity = None
    try:
        servers = deploy(example, args)
        if "infinity" in args.servers:
            infinity_port = free_port()
            infinity = start_infinity(example.default_model_dir(), infinity_port)
            servers["infinity"] = Server(
                "infinity", f"http://127.0.0.1:{infinity_port}/embeddings", "minilm"
            )
        return measure(example, servers, args)
    finally:
        if infinity is not None:
            infinity.terminate()
            infinity.wait(30)
        serve.shutdown()
        if own_ray:
            ray.shutdown()


def texts_summary(example: ModuleType, texts: list[str]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(example.default_model_dir())
    lengths = [
        len(ids)
        for ids in tokenizer(texts, truncation=True, max_length=example.MAX_SEQ_LENGTH)["input_ids"]
    ]
    return {
        "count": len(texts),
        "mean_tokens": float(np.mean(lengths)),
        "at_256": int(sum(length == example.MAX_SEQ_LENGTH for length in lengths)),
    }


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    import ray

    summary = figures["texts"]
    print(
        f"{args.rounds} rounds x {args.requests} mixed texts per server (mean "
        f"{summary['mean_tokens']:.0f} tokens, {summary['at_256']} truncated to 256), "
        f"{args.clients} clients in a closed loop on 127.0.0.1; {os.cpu_count()} CPUs, "
        f"ray {ray.__version__}, {platform.machine()}; load average during the rounds "
        f"{min(figures['load_average']):.1f}-{max(figures['load_average']):.1f}"
    )
    print("| server | requests/s | p50 | p99 | model calls | rows/call | cells/token |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, entry in figures["servers"].items():
        rates = entry["requests_per_s"]
        replica = entry.get("replica")
        calls = rows = cells = "-"
        if replica:
            calls = str(replica["model_calls"])
            rows = f"{replica['rows'] / max(replica['model_calls'], 1):.1f}"
            cells = f"{replica['cells'] / max(replica['tokens'], 1):.2f}"
        print(
            f"| {LABELS[name]} | {np.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
            f"{entry['p50_s'] * 1e3:.0f} ms | {entry['p99_s'] * 1e3:.0f} ms | {calls} | {rows} | "
            f"{cells} |"
        )
    served = figures["servers"]
    if "tokens" in served:
        tokens = served["tokens"]
        for name in ("count", "infinity"):
            if name in served:
                ratio = np.median(tokens["requests_per_s"]) / np.median(
                    served[name]["requests_per_s"]
                )
                print(
                    f"tokens / {name}: {ratio:.2f}x requests/s; p99 {tokens['p99_s'] * 1e3:.0f} ms "
                    f"vs {served[name]['p99_s'] * 1e3:.0f} ms"
                )
    differences = ", ".join(
        f"{name} {value:.1e}" for name, value in figures["max_difference"].items()
    )
    print(
        f"embeddings, largest difference from {figures['reference']}'s: {differences} "
        f"(limit {ATOL:g})"
    )
    print(
        f"bad bodies: all {len(BAD_BODIES)} answered 400, then 200 "
        f"({', '.join(figures['bad_bodies'])})"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320, help="per server and round")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", type=int, default=48, help="texts compared across servers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=2048)
    parser.add_argument("--max-gather-tokens", type=int, default=8192)
    parser.add_argument("--replica-cpus", type=float, default=1)
    parser.add_argument("--infinity", action="store_true", help="also load infinity-emb")
    parser.add_argument(
        "--servers", default="tokens,count", help="comma-separated: tokens, count (and infinity)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few requests")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    if args.infinity and "infinity" not in args.servers:
        args.servers.append("infinity")
    if args.quick:
        args.requests, args.clients, args.rounds, args.check = 16, 8, 1, 8
        args.servers = [name for name in args.servers if name != "infinity"]
    unknown = set(args.servers) - {*SERVERS, "infinity"}
    if unknown or not args.servers:
        parser.error(f"--servers: choose from tokens, count, infinity (got {args.servers})")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    figures = run(args)
    report(figures, args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)
    return figures


if __name__ == "__main__":
    main()
