"""Truncation as the tokenizer truncates: ``fastpad.pad(tokenizer(texts[, pairs]), tokenizer=...,
truncation=..., max_length=n)`` against ``tokenizer(texts[, pairs], truncation=..., max_length=n)``
(the fast, Rust tokenizer), every field compared, on the real all-MiniLM-L6-v2 tokenizer (BERT:
``[CLS] A [SEP] B [SEP]`` with token_type_ids) and on tokenizers built here with other templates:
RoBERTa's ``<s> A </s></s> B </s>`` (no token_type_ids), a suffix-only ``A </s> B </s>`` and none
at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastpad
import fastpad.reference

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = [f"w{index}" for index in range(40)]
STRATEGIES = [True, "longest_first", "only_first", "only_second"]
SIDES = ["right", "left"]
# Labels: a per-token field the tokenizer does not make, derived from the ids so that the
# expected labels follow from the tokenizer's ids.
LABEL_SHIFT = 1000


def _local_tokenizer(kind: str) -> Any:
    """A WordLevel tokenizer over WORDS with the named post-processor, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {token: index for index, token in enumerate([*specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    names = ["input_ids", "attention_mask"]
    if kind == "roberta":
        backend.post_processor = processors.RobertaProcessing(
            ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"])
        )
    elif kind == "suffix":
        backend.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
    elif kind == "none":
        names = ["input_ids", "token_type_ids", "attention_mask"]
    else:
        raise AssertionError(kind)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        model_input_names=names,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": []})
    return tokenizer


@pytest.fixture(scope="module")
def tokenizers_by_name(tokenizer: Any) -> dict[str, Any]:
    return {
        "minilm": tokenizer,
        "roberta": _local_tokenizer("roberta"),
        "suffix": _local_tokenizer("suffix"),
        "none": _local_tokenizer("none"),
    }


def _texts(lengths: list[int], seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=length).tolist()) for length in lengths]


def _call(tokenizer: Any, texts: list[str], pairs: list[str] | None, **kwargs: Any) -> Any:
    return tokenizer(
        texts,
        pairs,
        return_special_tokens_mask=True,
        return_token_type_ids=True if "token_type_ids" in tokenizer.model_input_names else None,
        **kwargs,
    )


def _with_labels(encoding: Any) -> dict[str, Any]:
    fields = dict(encoding)
    fields["labels"] = [[token + LABEL_SHIFT for token in row] for row in fields["input_ids"]]
    return fields


def _expected(tokenizer: Any, texts: list[str], pairs: list[str] | None, **kwargs: Any) -> Any:
    """The tokenizer's own truncation, padded by the tokenizer, labels added; or its exception."""
    try:
        encoding = _call(tokenizer, texts, pairs, **kwargs)
    except Exception as error:  # the Rust tokenizer raises a plain Exception
        return error
    padded = tokenizer.pad(encoding, return_tensors="np")
    expected = {key: np.asarray(value) for key, value in padded.items()}
    ids = expected["input_ids"]
    expected["labels"] = np.where(expected["attention_mask"] == 1, ids + LABEL_SHIFT, -100)
    return expected


def _check(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    truncation: Any,
    max_length: int,
    side: str,
) -> None:
    tokenizer.truncation_side = side
    try:
        expected = _expected(tokenizer, texts, pairs, truncation=truncation, max_length=max_length)
        fields = _with_labels(_call(tokenizer, texts, pairs))
        specials = tokenizer.num_special_tokens_to_add(pair=pairs is not None)
        options: dict[str, Any] = {
            "tokenizer": tokenizer,
            "truncation": truncation,
            "max_length": max_length,
            "pad_values": {"labels": -100},
            "return_tensors": "np",
        }
        longest = max(len(row) for row in fields["input_ids"])
        if max_length < specials and longest > max_length:
            # The tokenizer leaves such rows uncut; fastpad refuses to drop special tokens.
            with pytest.raises(ValueError, match=r"row \d+: max_length=.* special tokens"):
                fastpad.pad(fields, **options)
            return
        if isinstance(expected, Exception):
            message = (
                "Second sequence not provided"
                if "Second sequence" in str(expected)
                else "Sequence to truncate too short"
            )
            if pairs is not None and "" in pairs and truncation == "only_second":
                # An empty second text leaves no trace without middle tokens: the row reads as a
                # single one, an error either way (documented in fastpad._truncate).
                message = "Second sequence not provided|Sequence to truncate too short"
            with pytest.raises(ValueError, match=rf"row \d+.*{message}"):
                fastpad.pad(fields, **options)
            with pytest.raises(ValueError, match=message):
                fastpad.reference.pad(fields, **options)
            return
        actual = fastpad.pad(fields, **options)
        assert set(actual) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(actual[key], value, err_msg=key)
        reference = fastpad.reference.pad(fields, **options)
        for key, value in expected.items():
            np.testing.assert_array_equal(reference[key], value, err_msg=f"reference {key}")
    finally:
        tokenizer.truncation_side = "right"


@pytest.mark.parametrize("name", ["minilm", "roberta", "suffix", "none"])
@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("truncation", STRATEGIES)
@pytest.mark.parametrize("side", SIDES)
def test_every_max_length(
    tokenizers_by_name: dict[str, Any], name: str, pair: bool, truncation: Any, side: str
) -> None:
    """A fixed batch (an empty text, short and long ones), every max_length from 0 to past the
    longest row."""
    tokenizer = tokenizers_by_name[name]
    texts = _texts([0, 3, 9, 14], seed=1)
    pairs = _texts([6, 0, 11, 2], seed=2) if pair else None
    for max_length in range(0, 32):
        _check(tokenizer, texts, pairs, truncation, max_length, side)


@given(
    name=st.sampled_from(["minilm", "roberta", "suffix", "none"]),
    first=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    second=st.lists(st.integers(0, 12), min_size=4, max_size=4),
    pair=st.booleans(),
    truncation=st.sampled_from(STRATEGIES),
    side=st.sampled_from(SIDES),
    slack=st.integers(0, 16),
    seed=st.integers(0, 2**16),
)
def test_hypothesis(
    tokenizers_by_name: dict[str, Any],
    name: str,
    first: list[int],
    second: list[int],
    pair: bool,
    truncation: Any,
    side: str,
    slack: int,
    seed: int,
) -> None:
    """Random lengths; max_length from the number of special tokens upwards."""
    tokenizer = tokenizers_by_name[name]
    texts = _texts(first, seed)
    pairs = _texts(second[: len(first)], seed + 1) if pair else None
    max_length = tokenizer.num_special_tokens_to_add(pair=pair) + slack
    _check(tokenizer, texts, pairs, truncation, max_length, side)


def test_issue_example(tokenizer: Any) -> None:
    texts = ["I've been waiting for a HuggingFace course my whole life.", "So have I!"]
    batch = fastpad.pad(tokenizer(texts), tokenizer=tokenizer, truncation=True, max_length=8)
    assert batch["input_ids"][0].tolist() == [101, 1045, 1005, 2310, 2042, 3403, 2005, 102]
    expected = tokenizer(texts, truncation=True, max_length=8, padding=True, return_tensors="pt")
    for key, value in expected.items():
        assert batch[key].tolist() == value.tolist(), key


def test_rows_without_the_template_are_cut_as_they_are(tokenizer: Any) -> None:
    """add_special_tokens=False or no tokenizer: a plain cut at max_length (as documented)."""
    texts = ["a b c d e f g h i j", "k l"]
    plain = tokenizer(texts, add_special_tokens=False)
    batch = fastpad.pad(plain, tokenizer=tokenizer, truncation=True, max_length=4)
    assert batch["input_ids"].tolist()[0] == plain["input_ids"][0][:4]
    with_specials = tokenizer(texts)["input_ids"]
    batch = fastpad.pad(with_specials, pad_token_id=0, truncation=True, max_length=4)
    assert batch["input_ids"].tolist()[0] == with_specials[0][:4]
    # only_second needs a second segment, which a row without the template does not show.
    with pytest.raises(ValueError, match="row 0 does not carry the tokenizer's special-token"):
        fastpad.pad(plain, tokenizer=tokenizer, truncation="only_second", max_length=4)


def test_input_forms_and_packer(tokenizer: Any) -> None:
    """Ragged, arrays, tensors and per-example mappings are cut alike; so does the Packer."""
    import torch

    texts = _texts([10, 2, 7], seed=3)
    pairs = _texts([4, 9, 1], seed=4)
    options = {"tokenizer": tokenizer, "truncation": "longest_first", "max_length": 9}
    expected = tokenizer(texts, pairs, padding=True, return_tensors="pt", **options)
    encoding = tokenizer(texts, pairs)
    forms = {
        "ragged": {
            key: fastpad.Ragged(
                np.concatenate([np.asarray(row, dtype=np.int64) for row in rows]),
                np.cumsum([0, *(len(row) for row in rows)]),
            )
            for key, rows in encoding.items()
        },
        "arrays": {key: [np.asarray(row) for row in rows] for key, rows in encoding.items()},
        "tensors": {key: [torch.tensor(row) for row in rows] for key, rows in encoding.items()},
        "examples": [
            dict(zip(encoding, values, strict=True))
            for values in zip(*encoding.values(), strict=True)
        ],
    }
    del options["tokenizer"]
    for form, inputs in forms.items():
        actual = fastpad.pad(inputs, tokenizer=tokenizer, **options)
        for key, value in expected.items():
            assert torch.equal(actual[key], value), (form, key)
    packer = fastpad.Packer("cpu", tokenizer=tokenizer, **options)
    actual = packer(encoding)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), ("packer", key)


def test_token_type_ids_decide_the_segments(tokenizer: Any) -> None:
    """A [SEP] inside the first text: token_type_ids still say where the second segment starts."""
    texts = ["one two [SEP] three four five six seven"]
    pairs = ["eight nine ten eleven"]
    expected = tokenizer(texts, pairs, truncation=True, max_length=10, return_tensors="np")
    actual = fastpad.pad(
        tokenizer(texts, pairs), tokenizer=tokenizer, truncation=True, max_length=10,
        return_tensors="np",
    )  # fmt: skip
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


def test_no_mark_between_segments_is_one_segment(tokenizers_by_name: dict[str, Any]) -> None:
    """A template without middle tokens and rows without token_type_ids: nothing shows where the
    second segment starts, so the row is cut as one segment (documented)."""
    tokenizer = tokenizers_by_name["none"]
    texts, pairs = _texts([8], seed=5), _texts([8], seed=6)
    rows = tokenizer(texts, pairs, return_token_type_ids=False)
    batch = fastpad.pad(rows, tokenizer=tokenizer, truncation=True, max_length=6)
    assert batch["input_ids"].tolist() == [rows["input_ids"][0][:6]]


@pytest.mark.parametrize("name", ["minilm", "roberta", "suffix"])
@pytest.mark.parametrize("side", SIDES)
def test_windows_of_rows_with_special_tokens(
    tokenizers_by_name: dict[str, Any], name: str, side: str
) -> None:
    """fastpad.windows on tokenizer(texts) rows equals the tokenizer's overflow with stride: the
    template's special tokens around every window."""
    tokenizer = tokenizers_by_name[name]
    texts = _texts([0, 3, 9, 25], seed=7)
    rows = tokenizer(texts)["input_ids"]
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    tokenizer.truncation_side = side
    try:
        for max_length in (specials + 1, specials + 2, specials + 5, 16):
            for stride in range(0, max_length - specials, 2):
                expected = tokenizer(
                    texts,
                    max_length=max_length,
                    truncation=True,
                    stride=stride,
                    return_overflowing_tokens=True,
                    padding=True,
                    return_tensors="np",
                )
                actual = fastpad.windows(
                    rows, max_length=max_length, stride=stride, tokenizer=tokenizer,
                    return_tensors="np",
                )  # fmt: skip
                assert set(actual) == set(expected)
                for key, value in expected.items():
                    np.testing.assert_array_equal(actual[key], value, err_msg=key)
    finally:
        tokenizer.truncation_side = "right"


def test_windows_refuses_mixed_and_pair_rows(tokenizer: Any) -> None:
    texts = _texts([9, 4], seed=8)
    rows = tokenizer(texts)["input_ids"]
    plain = tokenizer(texts, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="row 1 does not carry the tokenizer's special tokens"):
        fastpad.windows([rows[0], plain[1]], max_length=6, tokenizer=tokenizer)
    pairs = tokenizer(texts, texts)["input_ids"]
    with pytest.raises(ValueError, match="row 0 carries the tokenizer's pair template"):
        fastpad.windows(pairs, max_length=6, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="no room for content"):
        fastpad.windows(rows, max_length=2, tokenizer=tokenizer)
    # Rows without the template, or with prefix/suffix given, are windowed as they are.
    batch = fastpad.windows(plain, max_length=4, tokenizer=tokenizer, return_tensors="np")
    assert batch["input_ids"][0].tolist() == plain[0][:4]
    batch = fastpad.windows(
        rows, max_length=4, prefix=[7], tokenizer=tokenizer, return_tensors="np"
    )
    assert batch["input_ids"][0].tolist() == [7, *rows[0][:3]]


def test_strategy_names_and_enums(tokenizer: Any) -> None:
    """The strategies as names, True and transformers' TruncationStrategy; others refused."""
    from transformers.tokenization_utils_base import TruncationStrategy

    texts, pairs = _texts([12, 10], seed=9), _texts([10, 14], seed=10)
    rows = tokenizer(texts, pairs)
    max_length = max(len(row) for row in rows["input_ids"]) - 3
    for strategy in TruncationStrategy:
        if strategy.value == "do_not_truncate":
            continue
        expected = tokenizer(
            texts, pairs, truncation=strategy.value, max_length=max_length, padding=True,
            return_tensors="np",
        )  # fmt: skip
        actual = fastpad.pad(
            rows, tokenizer=tokenizer, truncation=strategy, max_length=max_length,
            return_tensors="np",
        )  # fmt: skip
        for key, value in expected.items():
            np.testing.assert_array_equal(actual[key], value, err_msg=f"{strategy} {key}")
    with pytest.raises(ValueError, match="unknown truncation='only_third'"):
        fastpad.pad(rows, tokenizer=tokenizer, truncation="only_third", max_length=12)
    # Without a tokenizer: a plain cut for every strategy but only_second.
    ids = rows["input_ids"]
    batch = fastpad.pad(ids, pad_token_id=0, truncation="only_first", max_length=5)
    assert batch["input_ids"].tolist() == [row[:5] for row in ids]
    with pytest.raises(ValueError, match="row 0 does not carry"):
        fastpad.pad(ids, pad_token_id=0, truncation="only_second", max_length=5)
    # Rows that fit are never touched, whatever the strategy (as the tokenizer: nothing to cut).
    short = tokenizer(_texts([2], seed=11))
    batch = fastpad.pad(short, tokenizer=tokenizer, truncation="only_second", max_length=50)
    assert batch["input_ids"].tolist() == short["input_ids"]


def test_rows_with_and_without_the_template_in_one_batch(tokenizer: Any) -> None:
    """Each row is judged alone: template rows as the tokenizer cuts, the others as they are."""
    texts = _texts([14, 12, 2], seed=12)
    with_specials = tokenizer(texts)["input_ids"]
    plain = tokenizer(texts, add_special_tokens=False)["input_ids"]
    expected = tokenizer(texts, truncation=True, max_length=6)["input_ids"]
    batch = fastpad.pad(
        [with_specials[0], plain[1], with_specials[2]],
        tokenizer=tokenizer,
        truncation=True,
        max_length=6,
        return_tensors="np",
    )
    ids = batch["input_ids"].tolist()
    assert ids[0] == expected[0]
    assert ids[1] == plain[1][:6]
    assert ids[2][: len(expected[2])] == expected[2]
    # A special_tokens_mask that does not mark the special positions: not the template.
    fields = tokenizer(texts[:1], return_special_tokens_mask=True)
    fields["special_tokens_mask"] = [[0] * len(fields["input_ids"][0])]
    batch = fastpad.pad(fields, tokenizer=tokenizer, truncation=True, max_length=6)
    assert batch["input_ids"].tolist() == [fields["input_ids"][0][:6]]


@pytest.mark.cuda
@pytest.mark.parametrize("ragged_transfer", [False, True])
def test_packer_on_cuda(tokenizer: Any, ragged_transfer: bool) -> None:
    """The CUDA Packer (padded and ragged transfers) cuts as the tokenizer does."""
    import torch

    texts = _texts([10, 2, 7], seed=13)
    pairs = _texts([4, 9, 1], seed=14)
    expected = tokenizer(
        texts, pairs, truncation=True, max_length=9, padding=True, return_tensors="pt"
    )
    packer = fastpad.Packer(
        "cuda", tokenizer=tokenizer, truncation=True, max_length=9, ragged_transfer=ragged_transfer
    )
    actual = packer(tokenizer(texts, pairs))
    torch.cuda.synchronize()
    for key, value in expected.items():
        assert torch.equal(actual[key].cpu(), value), key
