"""`fastpad.encode` against the tokenizer's own padded call, with the real all-MiniLM-L6-v2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastpad

torch = pytest.importorskip("torch")


def _assert_same(ours: Any, theirs: Any) -> None:
    assert list(ours.keys()) == list(theirs.keys())
    for key in theirs:
        expected = theirs[key]
        got = ours[key]
        assert type(got) is type(expected), key
        assert got.dtype == expected.dtype, key
        assert tuple(got.shape) == tuple(expected.shape), key
        assert got.tolist() == expected.tolist(), key


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"truncation": True, "max_length": 12},
        {"padding": "max_length", "max_length": 40, "truncation": True},
        {"padding": "longest", "pad_to_multiple_of": 8},
        {"padding_side": "left"},
        {"padding_side": "left", "truncation": True, "max_length": 8, "pad_to_multiple_of": 4},
        {"return_tensors": "np"},
        {"return_special_tokens_mask": True},
        {"return_token_type_ids": False},
        {"return_attention_mask": False},
        {"add_special_tokens": False},
    ],
    ids=repr,
)
def test_batch_matches_tokenizer(
    tokenizer: Any, sentences: list[str], options: dict[str, Any]
) -> None:
    options = {"return_tensors": "pt", **options}
    padding = options.pop("padding", True)
    expected = tokenizer(sentences, padding=padding, **options)
    got = fastpad.encode(tokenizer, sentences, padding=padding, **options)
    _assert_same(got, expected)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"truncation": True, "max_length": 16},
        {"truncation": "only_second", "max_length": 48},
        {"truncation": "longest_first", "max_length": 11, "padding_side": "left"},
        {"padding": "max_length", "max_length": 48, "truncation": True},
    ],
    ids=repr,
)
def test_pairs_match_tokenizer(
    tokenizer: Any, sentences: list[str], options: dict[str, Any]
) -> None:
    firsts = sentences[:16]
    seconds = list(reversed(sentences[:16]))
    padding = options.pop("padding", True)
    expected = tokenizer(firsts, seconds, padding=padding, return_tensors="pt", **options)
    got = fastpad.encode(tokenizer, firsts, seconds, padding=padding, **options)
    _assert_same(got, expected)
    assert "token_type_ids" in got and int(got["token_type_ids"].max()) == 1


def test_single_text_is_a_batch_of_one(tokenizer: Any) -> None:
    expected = tokenizer("Hello world.", padding=True, return_tensors="pt")
    got = fastpad.encode(tokenizer, "Hello world.")
    _assert_same(got, expected)
    assert tuple(got["input_ids"].shape) == (1, 5)


def test_pre_split_words(tokenizer: Any) -> None:
    words = [["Hello", "world"], ["A", "much", "longer", "pre", "split", "example"]]
    expected = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    got = fastpad.encode(tokenizer, words, is_split_into_words=True)
    _assert_same(got, expected)


def test_result_is_a_batch_encoding(tokenizer: Any, sentences: list[str]) -> None:
    from transformers import BatchEncoding

    got = fastpad.encode(tokenizer, sentences[:4])
    assert isinstance(got, BatchEncoding)
    assert got.input_ids is got["input_ids"]
    moved = got.to("cpu")
    assert moved["attention_mask"].tolist() == got["attention_mask"].tolist()


def test_mask_comes_from_lengths_even_when_pad_id_is_a_token(tokenizer: Any) -> None:
    # "[PAD]" typed in the text is a real token: the mask must count it.
    texts = ["[PAD] [PAD]", "a much longer sentence here"]
    expected = tokenizer(texts, padding=True, return_tensors="pt")
    got = fastpad.encode(tokenizer, texts)
    _assert_same(got, expected)


@pytest.mark.parametrize(
    "options",
    [
        {"return_tensors": None},
        {"return_offsets_mapping": True},
        {"return_length": True},
    ],
    ids=repr,
)
def test_other_arguments_go_to_the_tokenizer(
    tokenizer: Any, sentences: list[str], options: dict[str, Any]
) -> None:
    expected = tokenizer(sentences[:5], padding=True, **{"return_tensors": "pt", **options})
    got = fastpad.encode(tokenizer, sentences[:5], **options)
    assert list(got.keys()) == list(expected.keys())
    for key in expected:
        value = expected[key]
        assert (value.tolist() if hasattr(value, "tolist") else value) == (
            got[key].tolist() if hasattr(got[key], "tolist") else got[key]
        )


def test_truncation_length_not_a_multiple_raises_like_the_tokenizer(
    tokenizer: Any, sentences: list[str]
) -> None:
    options = {"truncation": True, "max_length": 7, "pad_to_multiple_of": 4}
    with pytest.raises(ValueError, match="multiple"):
        tokenizer(sentences, padding=True, return_tensors="pt", **options)
    with pytest.raises(ValueError, match="multiple"):
        fastpad.encode(tokenizer, sentences, **options)


def test_padding_false_on_ragged_rows_raises(tokenizer: Any) -> None:
    texts = ["short", "a much longer sentence"]
    with pytest.raises(ValueError):
        tokenizer(texts, padding=False, return_tensors="pt")
    with pytest.raises(ValueError):
        fastpad.encode(tokenizer, texts, padding=False)


def test_padding_false_on_equal_rows(tokenizer: Any) -> None:
    texts = ["hello world", "hello there"]
    expected = tokenizer(texts, padding=False, return_tensors="pt")
    got = fastpad.encode(tokenizer, texts, padding=False)
    _assert_same(got, expected)


def test_numpy_output_dtypes(tokenizer: Any, sentences: list[str]) -> None:
    got = fastpad.encode(tokenizer, sentences[:3], return_tensors="np")
    assert all(isinstance(value, np.ndarray) for value in got.values())
