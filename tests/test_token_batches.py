"""fastpad.token_batches: every row once, each batch fastpad.pad (and tokenizer.pad) of its rows,
padded cells within the budget, and model outputs per row as for the row alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal, tokenizer_path
from hypothesis import given
from hypothesis import strategies as st

import fastpad
from fastpad import reference

torch = pytest.importorskip("torch")


def _rows_strategy() -> Any:
    return st.lists(
        st.lists(st.integers(1, 30_000), min_size=0, max_size=40), min_size=0, max_size=40
    )


def _check_plan(plan: list[np.ndarray], rows: int) -> None:
    seen = np.concatenate(plan) if plan else np.zeros(0, dtype=np.int64)
    assert seen.dtype == np.int64
    assert sorted(seen.tolist()) == list(range(rows))  # every row exactly once


@given(
    rows=_rows_strategy(),
    max_tokens=st.integers(1, 200),
    max_batch_size=st.none() | st.integers(1, 8),
    multiple=st.none() | st.integers(1, 8),
    max_length=st.none() | st.integers(0, 30),
    side=st.sampled_from(["left", "right"]),
    sort=st.booleans(),
)
def test_every_row_once_each_batch_padded_as_pad_within_budget(
    rows: list[list[int]],
    max_tokens: int,
    max_batch_size: int | None,
    multiple: int | None,
    max_length: int | None,
    side: str,
    sort: bool,
) -> None:
    options: dict[str, Any] = dict(
        pad_token_id=0,
        pad_to_multiple_of=multiple,
        padding_side=side,
        truncation_side=side,
        return_tensors="np",
    )
    if max_length is not None:
        options.update(truncation=True, max_length=max_length)
    batches = fastpad.token_batches(
        rows, max_tokens=max_tokens, max_batch_size=max_batch_size, sort=sort, **options
    )
    _check_plan(batches.plan, len(rows))
    got = list(batches)
    assert [positions.tolist() for positions, _ in got] == [p.tolist() for p in batches.plan]
    cells = 0
    for positions, batch in got:
        subset = [rows[int(i)] for i in positions]
        assert_batches_equal(batch, reference.pad(subset, **options))
        if max_batch_size is not None:
            assert positions.size <= max_batch_size
        size = batch["input_ids"].size
        cells += size
        if positions.size > 1:
            assert size <= max_tokens
    assert cells == batches.padded_cells
    kept = [min(len(r), max_length) if max_length is not None else len(r) for r in rows]
    assert batches.real_tokens == sum(kept)
    if not sort and rows:  # arrival order, only cut
        assert np.concatenate(batches.plan).tolist() == list(range(len(rows)))


def test_a_row_longer_than_the_budget_is_alone_and_never_cut() -> None:
    rows = [[1] * 50, [2] * 3, [3] * 4]
    batches = list(fastpad.token_batches(rows, max_tokens=10, pad_token_id=0, return_tensors="np"))
    assert [p.tolist() for p, _ in batches] == [[0], [2, 1]]  # longest first
    assert batches[0][1]["input_ids"].shape == (1, 50)


def test_padding_max_length_counts_max_length_per_row() -> None:
    rows = [[1, 2], [3], [4, 5, 6]]
    batches = fastpad.token_batches(
        rows, max_tokens=16, padding="max_length", max_length=8, pad_token_id=0
    )
    assert [p.size for p in batches.plan] == [2, 1]
    assert batches.padded_cells == 24
    for _, batch in batches:
        assert batch["input_ids"].shape[1] == 8


def _forms(tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    encoding = tokenizer(texts)
    ids = encoding["input_ids"]
    examples = [
        {"input_ids": row, "attention_mask": [1] * len(row), "labels": i}
        for i, row in enumerate(ids)
    ]
    return {
        "BatchEncoding": encoding,
        "dict of lists": {key: list(value) for key, value in encoding.items()},
        "list of dicts": examples,
        "list of rows": ids,
        "Ragged": fastpad.Ragged.from_rows(ids),
        "list of arrays": [np.asarray(row) for row in ids],
        "dict with Ragged and scalars": {
            "input_ids": fastpad.Ragged.from_rows(ids),
            "labels": np.arange(len(ids)),
        },
    }


@pytest.mark.parametrize(
    "form",
    [
        "BatchEncoding",
        "dict of lists",
        "list of dicts",
        "list of rows",
        "Ragged",
        "list of arrays",
        "dict with Ragged and scalars",
    ],
)
def test_each_input_form_batches_equal_pad_of_its_rows(
    tokenizer: Any, sentences: list[str], form: str
) -> None:
    encoded = _forms(tokenizer, sentences)[form]
    batches = fastpad.token_batches(encoded, max_tokens=96, tokenizer=tokenizer)
    _check_plan(batches.plan, len(sentences))
    assert len(batches) == len(batches.plan) > 1
    for positions, batch in batches:
        expected = fastpad.pad(_select(encoded, positions), tokenizer=tokenizer)
        assert_batches_equal(batch, expected)


def _select(encoded: Any, positions: np.ndarray) -> Any:
    """The rows at `positions`, written out the long way (the oracle for token_batches' take)."""
    if isinstance(encoded, fastpad.Ragged):
        return fastpad.Ragged.from_rows([encoded[int(i)] for i in positions])
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        return {key: _select(value, positions) for key, value in encoded.items()}
    if isinstance(encoded, np.ndarray):
        return np.asarray([encoded[int(i)] for i in positions])
    return [encoded[int(i)] for i in positions]


def test_batches_equal_tokenizer_pad_of_their_rows(tokenizer: Any, sentences: list[str]) -> None:
    encoding = tokenizer(sentences, return_token_type_ids=True)
    for positions, batch in fastpad.token_batches(encoding, max_tokens=128, tokenizer=tokenizer):
        subset = {key: [value[int(i)] for i in positions] for key, value in encoding.items()}
        expected = tokenizer.pad(subset, return_tensors="pt")
        assert list(batch) == list(expected)
        for key in expected:
            assert batch[key].dtype == expected[key].dtype
            assert torch.equal(batch[key], expected[key]), key


def test_arrays_and_tensors_and_one_example(tokenizer: Any) -> None:
    array = np.array([[101, 5, 6, 102], [101, 7, 102, 0], [101, 102, 0, 0]])
    for positions, batch in fastpad.token_batches(array, max_tokens=8, pad_token_id=0):
        assert torch.equal(batch["input_ids"], torch.from_numpy(array[positions]))
    tensors = {"input_ids": torch.from_numpy(array), "attention_mask": torch.ones(3, 4)}
    tensors["attention_mask"] = tensors["attention_mask"].long()
    for positions, batch in fastpad.token_batches(tensors, max_tokens=8, tokenizer=tokenizer):
        assert torch.equal(batch["input_ids"], tensors["input_ids"][torch.from_numpy(positions)])
    single = tokenizer("one example")
    (only,) = list(fastpad.token_batches(single, max_tokens=4, tokenizer=tokenizer))
    assert only[0].tolist() == [0]
    assert_batches_equal(only[1], fastpad.pad(single, tokenizer=tokenizer))


def test_empty_input_gives_no_batch() -> None:
    batches = fastpad.token_batches([], max_tokens=8, pad_token_id=0)
    assert len(batches) == 0 and list(batches) == [] and batches.padded_cells == 0


def test_device_path_equals_plain_path_and_closes(tokenizer: Any, sentences: list[str]) -> None:
    encoding = tokenizer(sentences)
    plain = list(fastpad.token_batches(encoding, max_tokens=128, tokenizer=tokenizer))
    with fastpad.token_batches(
        encoding, max_tokens=128, tokenizer=tokenizer, device="cpu", depth=3
    ) as batches:
        first = list(batches)
        again = list(batches)  # a second iteration runs its own prefetch thread
        assert len(first) == len(again) == len(plain)
        for (rows_a, batch_a), (rows_b, batch_b), (rows_c, batch_c) in zip(
            first, again, plain, strict=True
        ):
            assert rows_a.tolist() == rows_b.tolist() == rows_c.tolist()
            assert_batches_equal(batch_a, batch_c)
            assert_batches_equal(batch_b, batch_c)
        # leaving a loop early, then closing, stops the thread
        iterator = iter(batches)
        next(iterator)
    assert batches._prefetcher is None


def test_model_outputs_per_row_equal_the_row_alone(tokenizer: Any, sentences: list[str]) -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(tokenizer_path()).eval()
    texts = [*sentences[:8], "a much longer passage " * 30]
    encoding = tokenizer(texts, truncation=True, max_length=128)
    out = torch.zeros(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for rows, batch in fastpad.token_batches(encoding, max_tokens=256, tokenizer=tokenizer):
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            out[torch.from_numpy(rows)] = (states * mask).sum(1) / mask.sum(1)
        for index, text in enumerate(texts):
            alone = tokenizer(text, truncation=True, max_length=128, return_tensors="pt")
            states = model(**alone).last_hidden_state
            torch.testing.assert_close(out[index], states[0].mean(0), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
        ({"max_tokens": 8, "max_batch_size": 0}, ValueError, "max_batch_size must be >= 1"),
        ({"max_tokens": 8, "depth": 0}, ValueError, "depth must be >= 1"),
        ({"max_tokens": 8, "padding": False}, ValueError, "padding=False"),
        ({"max_tokens": 8, "device": "cpu", "return_tensors": "np"}, ValueError, "device"),
        ({"max_tokens": 8, "seed": -1, "shuffle": True}, ValueError, "token_batches: seed"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        fastpad.token_batches([[1, 2], [3]], pad_token_id=0, **kwargs)


def test_bad_rows_are_reported_by_pad_with_the_row() -> None:
    with pytest.raises(TypeError, match="row"):
        list(fastpad.token_batches([[1, 2], [3, None]], max_tokens=8, pad_token_id=0))
    with pytest.raises(ValueError, match="pad_token_id"):
        fastpad.token_batches([[1, 2]], max_tokens=8)
