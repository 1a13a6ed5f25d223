"""Ray Serve: the embedding example under a bounded closed-loop load on loopback.

Two applications of examples/serve_embeddings.py run side by side on one local Ray, one replica
each: ``padding="fastpad"`` (tokenizer without padding, then a `fastpad.Packer`) and
``padding="tokenizer"`` (``tokenizer(texts, padding=True, return_tensors="pt")``, the usual
code). Everything else (model, pooling, ``@serve.batch``) is the same code. A closed loop of
``--clients`` threads, each sending its next request (one short text) when the last one
answered, runs ``--requests`` requests against one application, then the other, for
``--rounds`` rounds (interleaved, so load from other processes hits both alike). Requests go to
127.0.0.1 only.

Reported per application: requests/s, p50 and p99 latency (all rounds pooled), and where the
replica's time went (its own counters: tokenizing, padding, the model), so the host-side share
is stated rather than guessed. On a CPU the model dominates and fastpad can only win the
padding share.

Run:  python benchmarks/ray_serve_load.py                      (2 x 3 rounds of 400 requests)
      python benchmarks/ray_serve_load.py --requests 100 --rounds 1
Not collected by pytest; tests/test_ray_cluster.py tests the example's answers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import socket
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fastpad._bench.workloads import make_texts

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve_embeddings.py"
APPS = ("fastpad", "tokenizer")


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


def post(url: str, text: str) -> list[float]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        embedding: list[float] = json.loads(response.read())["embedding"]
        return embedding


def closed_loop(url: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """Seconds for all `texts` with `clients` concurrent senders, and every request's latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(texts)))

    def client() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            start = time.perf_counter()
            post(url, texts[index])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per application and round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    import ray
    from ray import serve

    example = load_example()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    urls = {}
    handles = {}
    for name in APPS:
        application = example.EmbeddingDeployment.bind(
            padding=name, max_batch_size=args.max_batch_size
        )
        serve.run(application, name=name, route_prefix=f"/{name}")
        urls[name] = f"http://127.0.0.1:{port}/{name}"
        handles[name] = serve.get_app_handle(name)

    texts = make_texts(args.requests, seed=1, mean_words=12)
    # Same answers from both (a tolerance: the batches they form differ between runs).
    check = texts[:8]
    answers = {name: np.array([post(urls[name], text) for text in check]) for name in APPS}
    np.testing.assert_allclose(answers["fastpad"], answers["tokenizer"], rtol=0, atol=1e-5)
    for name in APPS:  # warm-up: the first batches allocate
        closed_loop(urls[name], texts[:64], args.clients)

    before = {name: handles[name].stats.remote().result() for name in APPS}
    seconds = {name: 0.0 for name in APPS}
    latencies: dict[str, list[float]] = {name: [] for name in APPS}
    rates: dict[str, list[float]] = {name: [] for name in APPS}
    for _ in range(args.rounds):
        for name in APPS:
            elapsed, times = closed_loop(urls[name], texts, args.clients)
            seconds[name] += elapsed
            latencies[name] += times
            rates[name].append(len(texts) / elapsed)
    after = {name: handles[name].stats.remote().result() for name in APPS}
    serve.shutdown()
    ray.shutdown()

    print(
        f"{args.rounds} rounds x {args.requests} requests per application, {args.clients} "
        f"clients in a closed loop on 127.0.0.1, one replica each (num_cpus=1), "
        f"@serve.batch max {args.max_batch_size}; texts mean "
        f"{np.mean([len(text.split()) for text in texts]):.0f} words; {os.cpu_count()} CPUs, "
        f"ray {ray.__version__}, {platform.machine()}"
    )
    print(
        "| padding | requests/s | p50 | p99 | mean batch | tokenize | pad | model "
        "| host share (tokenize + pad) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    figures: dict[str, Any] = {}
    for name in APPS:
        delta = {key: after[name][key] - before[name][key] for key in after[name]}
        threads = after[name]["torch_threads"]
        batches = delta["batches"]
        per_batch = {key: delta[f"{key}_s"] / batches for key in ("tokenize", "pad", "model")}
        total = sum(per_batch.values())
        host = per_batch["tokenize"] + per_batch["pad"]
        p50, p99 = np.percentile(latencies[name], [50, 99])
        figures[name] = {
            "requests_per_s": rates[name],
            "p50_s": p50,
            "p99_s": p99,
            "mean_batch": delta["rows"] / batches,
            "per_batch_s": per_batch,
            "torch_threads": threads,
        }
        label = "fastpad.Packer" if name == "fastpad" else "tokenizer(padding=True)"
        pad_cell = f"{per_batch['pad'] * 1e3:.2f} ms" if name == "fastpad" else "(in tokenize)"
        print(
            f"| {label} | {np.median(rates[name]):.1f} ({min(rates[name]):.1f}-"
            f"{max(rates[name]):.1f}) | {p50 * 1e3:.0f} ms | {p99 * 1e3:.0f} ms | "
            f"{delta['rows'] / batches:.1f} | {per_batch['tokenize'] * 1e3:.2f} ms | {pad_cell} | "
            f"{per_batch['model'] * 1e3:.1f} ms | {host / total:.1%} |"
        )
    print(f"torch threads in the replicas: {[figures[name]['torch_threads'] for name in APPS]}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle)


if __name__ == "__main__":
    main()
