"""fastpad.pad against transformers' tokenizer.pad on real all-MiniLM-L6-v2 tokenizer output, and
the course chapter's experiment on the real model: with the mask a padded row gives the same
hidden states as the row alone, without it different ones."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path

import fastpad

torch = pytest.importorskip("torch")


def assert_same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert actual[key].shape == value.shape, key
        assert torch.equal(actual[key], value), key


@pytest.fixture(scope="module")
def encodings(tokenizer: Any, sentences: list[str]) -> dict[str, Any]:
    singles = tokenizer(sentences, return_special_tokens_mask=True)
    pairs = tokenizer(sentences[:16], sentences[16:32][::-1])  # token_type_ids of 0s and 1s
    return {"singles": singles, "pairs": pairs}


PADDINGS = [
    {"padding": True},
    {"padding": "longest"},
    {"padding": "longest", "pad_to_multiple_of": 8},
    {"padding": "max_length", "max_length": 64},
    {"padding": "max_length", "max_length": 60, "pad_to_multiple_of": 16},
]


@pytest.mark.parametrize(
    ("options", "side", "which"),
    list(itertools.product(PADDINGS, [None, "left", "right"], ["singles", "pairs"])),
)
def test_batch_encoding_matches_tokenizer_pad(
    tokenizer: Any, encodings: dict[str, Any], options: dict[str, Any], side: str | None, which: str
) -> None:
    encoded = encodings[which]
    expected = tokenizer.pad(encoded, padding_side=side, return_tensors="pt", **options)
    actual = fastpad.pad(encoded, tokenizer=tokenizer, padding_side=side, **options)
    assert_same(actual, expected)
    # The plain dict and the list-of-examples forms give the same result.
    assert_same(
        fastpad.pad(dict(encoded), tokenizer=tokenizer, padding_side=side, **options), expected
    )
    examples = [
        dict(zip(encoded.keys(), values, strict=True))
        for values in zip(*encoded.values(), strict=True)
    ]
    assert_same(
        fastpad.pad(examples, tokenizer=tokenizer, padding_side=side, **options),
        tokenizer.pad(examples, padding_side=side, return_tensors="pt", **options),
    )


def test_tokenizer_padding_side_is_the_default(tokenizer: Any, encodings: dict[str, Any]) -> None:
    left = type(tokenizer).from_pretrained(tokenizer_path(), padding_side="left")
    expected = left.pad(encodings["singles"], return_tensors="pt")
    assert_same(fastpad.pad(encodings["singles"], tokenizer=left), expected)
    assert expected["attention_mask"][:, 0].min() == 0  # really left-padded


def test_examples_with_labels_match_tokenizer_pad(tokenizer: Any, sentences: list[str]) -> None:
    examples = [dict(tokenizer(text), label=index % 3) for index, text in enumerate(sentences)]
    expected = tokenizer.pad(examples, return_tensors="pt")
    assert_same(fastpad.pad(examples, tokenizer=tokenizer), expected)


def test_ids_only_mask_created_and_arrays(tokenizer: Any, sentences: list[str]) -> None:
    ids = tokenizer(sentences)["input_ids"]
    expected = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    assert_same(fastpad.pad(ids, tokenizer=tokenizer), expected)
    assert_same(fastpad.pad([np.array(row) for row in ids], tokenizer=tokenizer), expected)
    assert_same(fastpad.pad([torch.tensor(row) for row in ids], tokenizer=tokenizer), expected)
    assert_same(fastpad.pad(fastpad.Ragged.from_rows(ids), tokenizer=tokenizer), expected)


def test_truncation_matches_tokenizer_call(tokenizer: Any, sentences: list[str]) -> None:
    # Rows that carry the tokenizer's template are cut as tokenizer(..., truncation=True) cuts:
    # [CLS] and [SEP] kept, the text cut from the truncation side (tests/test_truncation_parity.py
    # covers pairs, strategies and other templates); rows without it by plain slicing.
    ids = tokenizer(sentences)["input_ids"]
    plain = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    for side in ("right", "left"):
        tokenizer.truncation_side = side
        try:
            expected = tokenizer(
                sentences, truncation=True, max_length=8, padding=True, return_tensors="pt"
            )
        finally:
            tokenizer.truncation_side = "right"
        del expected["token_type_ids"]
        actual = fastpad.pad(
            ids, tokenizer=tokenizer, truncation=True, max_length=8, truncation_side=side
        )
        assert_same(actual, expected)
        cut = [row[:8] if side == "right" else row[-8:] for row in plain]
        actual = fastpad.pad(
            plain, tokenizer=tokenizer, truncation=True, max_length=8, truncation_side=side
        )
        assert_same(actual, tokenizer.pad({"input_ids": cut}, return_tensors="pt"))


def test_tokenizer_without_pad_token_needs_pad_token_id(tokenizer: Any) -> None:
    no_pad = type(tokenizer).from_pretrained(tokenizer_path())
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        fastpad.pad([[101, 102]], tokenizer=no_pad)
    batch = fastpad.pad([[101, 102], [101]], tokenizer=no_pad, pad_token_id=7)
    assert batch["input_ids"].tolist() == [[101, 102], [101, 7]]


@pytest.fixture(scope="module")
def model() -> Any:
    transformers = pytest.importorskip("transformers")
    loaded = transformers.AutoModel.from_pretrained(tokenizer_path())
    loaded.eval()
    return loaded


def test_mask_makes_padded_rows_equal_to_rows_alone(tokenizer: Any, model: Any) -> None:
    # Hugging Face course, "Handling multiple sequences", on the real all-MiniLM-L6-v2 model.
    texts = [
        "I've been waiting for a HuggingFace course my whole life.",
        "I hate this so much!",
        "Padding must not change what the model computes.",
    ]
    ids = tokenizer(texts)["input_ids"]
    batch = fastpad.pad(ids, tokenizer=tokenizer)
    assert batch["input_ids"].shape[1] == max(len(row) for row in ids)
    with torch.no_grad():
        masked = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        unmasked = model(input_ids=batch["input_ids"]).last_hidden_state
        for row, row_ids in enumerate(ids):
            alone = model(input_ids=torch.tensor([row_ids])).last_hidden_state[0]
            length = len(row_ids)
            torch.testing.assert_close(masked[row, :length], alone, atol=1e-5, rtol=1e-4)
            if length < batch["input_ids"].shape[1]:
                # Without the mask the row attends to its padding and its states change.
                assert not torch.allclose(unmasked[row, :length], alone, atol=1e-3)
