"""The tokenizer path, lean (issue 26): options resolved once per tokenizer state and fields, a
tokenizer's BatchEncoding normalized without per-field abc checks or per-row work; counted with
cProfile on the simulated device, and the cache invalidated by every tokenizer setting it reads.

Print the counts: ``HF_HUB_OFFLINE=1 PYTHONPATH=python python tests/tokenizer_call_counts.py``
(at the commit before this work: 211 for `fastpad.pad` and 230 for the Packer; now 44 and 63).
"""

from __future__ import annotations

import copy
import cProfile
import pstats
from collections import UserDict
from typing import Any

import numpy as np
import pytest

import fastpad
import fastpad._ring
from fastpad import _options
from fastpad._inputs import normalize_inputs

torch = pytest.importorskip("torch")
from test_packer import FakeTorch, assert_same  # noqa: E402

# Issue 26's bounds for 64 rows on the simulated device (before: 208 and 227).
MAX_PAD_CALLS = 60
MAX_PACKER_CALLS = 70


def python_calls(call: Any) -> tuple[int, pstats.Stats]:
    for _ in range(4):  # warm: caches filled, every ring slot allocated
        call()
    profile = cProfile.Profile()
    profile.enable()
    call()
    profile.disable()
    stats = pstats.Stats(profile)
    return stats.total_calls - 1, stats  # less the profiler's own disable()


@pytest.fixture
def texts() -> list[str]:
    rng = np.random.default_rng(0)
    words = ["padding", "ragged", "batch", "token", "the", "GPU", "runs", "while", "we", "wait"]
    return [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(3, 60, size=64)]


def test_counts_with_a_tokenizer(
    monkeypatch: pytest.MonkeyPatch, tokenizer: Any, texts: list[str]
) -> None:
    monkeypatch.setattr(fastpad._ring, "_torch", lambda: FakeTorch())
    encoded = tokenizer(texts)
    assert len(encoded["input_ids"]) == 64
    pad_calls, pad_stats = python_calls(
        lambda: fastpad.pad(encoded, tokenizer=tokenizer, pin_memory=False)
    )
    assert pad_calls <= MAX_PAD_CALLS, pad_stats.sort_stats("ncalls").print_stats(40)
    packer = fastpad.Packer("cuda", tokenizer=tokenizer)
    packer_calls, packer_stats = python_calls(lambda: packer(encoded))
    assert packer_calls <= MAX_PACKER_CALLS, packer_stats.sort_stats("ncalls").print_stats(40)
    expected = tokenizer.pad(encoded, return_tensors="pt")
    for result in (fastpad.pad(encoded, tokenizer=tokenizer, pin_memory=False), packer(encoded)):
        assert list(result) == list(expected)
        for key in expected:
            assert torch.equal(result[key], expected[key]), key


def assert_like_transformers(tokenizer: Any, encoded: Any, **kwargs: Any) -> None:
    """fastpad.pad equals tokenizer.pad with the tokenizer as it is now."""
    expected = tokenizer.pad(copy.deepcopy(encoded), return_tensors="pt", **kwargs)
    got = fastpad.pad(encoded, tokenizer=tokenizer, pin_memory=False, **kwargs)
    assert list(got) == list(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_the_cache_follows_the_tokenizers_settings(tokenizer: Any, texts: list[str]) -> None:
    """Every setting resolve_options reads, changed between calls: the next call sees it."""
    tok = copy.deepcopy(tokenizer)  # changed below; the session's tokenizer stays as it is
    encoded = tok(texts[:8])
    packer = fastpad.Packer("cpu", tokenizer=tok)

    def check(**kwargs: Any) -> None:
        # With whatever the cache holds, then resolved afresh: the same batch.
        got = fastpad.pad(encoded, tokenizer=tok, pin_memory=False, **kwargs)
        from_packer = packer(encoded, **kwargs)
        _options._OPTIONS_CACHE.clear()
        fresh = fastpad.pad(encoded, tokenizer=tok, pin_memory=False, **kwargs)
        assert_same(got, fresh)
        assert_same(from_packer, fresh)
        if "truncation" not in kwargs:  # tokenizer.pad does not truncate
            assert_like_transformers(tok, encoded, **kwargs)

    check()
    tok.padding_side = "left"
    check()
    tok.pad_token = "[UNK]"  # another pad token (in the vocabulary)
    check()
    padded = fastpad.pad(encoded, tokenizer=tok)
    cells = padded["input_ids"][padded["attention_mask"] == 0]
    assert len(cells) > 0 and bool((cells == tok.unk_token_id).all())
    tok.pad_token_id = 7  # set by id
    check()
    tok.model_max_length = 5
    check(truncation=True)
    check(truncation=True, padding="max_length")
    assert fastpad.pad(encoded, tokenizer=tok, truncation=True)["input_ids"].shape[1] == 5
    tok.truncation_side = "left"
    check(truncation=True)
    tok._pad_token_type_id = 3  # what pad_token_type_id reads
    check()
    tok.model_input_names = ["input_ids", "token_type_ids"]  # no attention mask by default
    del encoded["attention_mask"]  # transformers then leaves a given one unpadded
    check()
    assert "attention_mask" not in fastpad.pad(encoded, tokenizer=tok)
    assert "attention_mask" in fastpad.pad(encoded, tokenizer=tok, return_attention_mask=True)
    tok.padding_side = "right"
    check()


def test_a_pad_token_outside_the_vocabulary_is_never_cached(
    tokenizer: Any, texts: list[str]
) -> None:
    """A pad token not in the vocabulary has no id of its own yet: adding it later gives it
    one, under the same token, so such a resolution is not cached."""
    tok = copy.deepcopy(tokenizer)
    encoded = tok(texts[:4])
    tok.pad_token = "[MYPAD]"
    before = tok.pad_token_id
    assert_like_transformers(tok, encoded)
    tok.add_tokens(["[MYPAD]"])
    assert tok.pad_token_id != before
    assert_like_transformers(tok, encoded)
    padded = fastpad.pad(encoded, tokenizer=tok)
    cells = padded["input_ids"][padded["attention_mask"] == 0]
    assert len(cells) > 0 and bool((cells == tok.pad_token_id).all())


def test_a_tokenizer_without_pad_token_then_with_one(tokenizer: Any, texts: list[str]) -> None:
    tok = copy.deepcopy(tokenizer)
    encoded = tok(texts[:4])
    tok.pad_token = None
    with pytest.raises(ValueError, match="the tokenizer has no pad token"):
        fastpad.pad(encoded, tokenizer=tok)
    tok.pad_token = "[PAD]"
    assert_like_transformers(tok, encoded)


def test_two_tokenizers_never_share_an_entry(tokenizer: Any, texts: list[str]) -> None:
    """Equal settings, another tokenizer object: its own entry (its own vocabulary)."""
    other = copy.deepcopy(tokenizer)
    encoded = tokenizer(texts[:4])
    fastpad.pad(encoded, tokenizer=tokenizer)
    before = len(_options._OPTIONS_CACHE)
    fastpad.pad(encoded, tokenizer=other)
    assert len(_options._OPTIONS_CACHE) == before + 1
    del other  # its entry's weak reference dies; a later tokenizer never matches it
    assert_like_transformers(tokenizer, encoded)


class PlainUserDict(UserDict):  # type: ignore[type-arg]
    pass


class ReversedUserDict(UserDict):  # type: ignore[type-arg]
    """A UserDict that presents its items differently from its data: never taken as its data."""

    def __iter__(self) -> Any:
        return reversed(list(self.data))


@pytest.mark.parametrize(
    "fields",
    [
        {"input_ids": [[1, 2, 3], [4]], "attention_mask": [[1, 1, 1], [1]]},
        {"input_ids": [[1, 2, 3], [4]], "attention_mask": [[1, 1, 1]]},  # row counts differ
        {"input_ids": [[1, 2], []], "label": [0, 1]},
        {"input_ids": [], "attention_mask": []},
        {"input_ids": [1, 2, 3]},  # one example
        {"input_ids": [[1, 2]], 5: [[1, 1]]},
        {"input_ids": [[1, 2]], "labels": [(1, 2)]},
    ],
)
@pytest.mark.parametrize("container", [dict, PlainUserDict, ReversedUserDict, "BatchEncoding"])
def test_the_mapping_fast_path_equals_the_general_one(
    monkeypatch: pytest.MonkeyPatch, fields: Any, container: Any
) -> None:
    """dict, UserDict and BatchEncoding inputs give what the general path (the only one before)
    gives for the same object: the same fields in the same order, or the same exception."""
    if container == "BatchEncoding":
        transformers = pytest.importorskip("transformers")
        encoded = transformers.BatchEncoding(dict(fields))
    else:
        encoded = container(fields)
    kwargs: dict[str, Any] = {"pad_token_id": 0, "pad_values": {"labels": -100}}

    def outcome() -> Any:
        try:
            return list(normalize_inputs(encoded).fields), fastpad.pad(
                encoded, pin_memory=False, **kwargs
            )
        except Exception as error:
            return type(error), str(error)

    fast = outcome()
    with monkeypatch.context() as patch:
        patch.setattr(fastpad._inputs, "_DICT_DATA", {})
        patch.setattr(fastpad._inputs, "_plain_mapping_data", lambda kind: None)
        general = outcome()
    if isinstance(general[0], type):
        assert fast == general
    else:
        assert fast[0] == general[0]
        assert_same(fast[1], general[1])
