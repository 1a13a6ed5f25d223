"""`fastpad.patch_transformers()`: patched transformers returns what unpatched transformers does.

Every comparison runs the same call twice on deep copies of its inputs, unpatched then patched,
and checks: the result (type, keys and their order, every value's type, dtype, shape, strides and
contents; a BatchEncoding's encodings and n_sequences), or the exception (type and message); the
warnings and transformers log records emitted; and the inputs after the call (transformers
mutates some in place). Counts of the fast path make sure the comparisons are not vacuous.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import tokenizer_path
from patch_compare import Records, observe

import fastpad
from fastpad import _patch_transformers as patch_module
from fastpad._patch_transformers import collators as patch_collators
from fastpad._patch_transformers import common as patch_common
from fastpad._patch_transformers import fingerprints as patch_fingerprints
from fastpad._patch_transformers import install as patch_install
from fastpad._patch_transformers import tokenizer_pad as patch_tokenizer_pad

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from transformers import BatchEncoding  # noqa: E402
from transformers.utils import PaddingStrategy, TensorType  # noqa: E402

# 4.44 warns on loading a tokenizer that does not set clean_up_tokenization_spaces, and
# 4.44-4.51 on building a DataCollatorWithFlattening (the compared calls record every warning).
pytestmark = [
    pytest.mark.filterwarnings("ignore:`clean_up_tokenization_spaces` was not set:FutureWarning"),
    pytest.mark.filterwarnings(
        "ignore:Using `DataCollatorWithFlattening` will flatten:UserWarning"
    ),
]

PAD, CALL = "tokenizer.pad", "tokenizer.__call__"
TOKENS, FLAT = "DataCollatorForTokenClassification", "DataCollatorWithFlattening"


def _recognised() -> dict[str, bool]:
    tf = patch_common.load_transformers()
    if tf is None:
        return dict.fromkeys(patch_common.ENTRY_POINTS, False)
    return {
        entry: not (entry == FLAT and tf.flattening is None)
        and not patch_fingerprints.unrecognised(entry, tf)
        for entry in patch_common.ENTRY_POINTS
    }


# Entry points this transformers lets fastpad patch (see docs/transformers-support.md); tests
# of the others are skipped, with the reason. benchmarks/transformers_matrix.py runs this file
# with the fingerprint gate off (its pytest plugin), to judge behaviour on its own, and reads
# which entry points each test exercises from the `patch_entry` marker `needs` adds.
RECOGNISED = _recognised()
FAMILY = 4 if transformers.__version__.startswith("4.") else 5
# 4.40-4.44: pad and the call take no padding_side (an unknown keyword: TypeError).
_BASE = transformers.PreTrainedTokenizerBase
PAD_SIDE = "padding_side" in inspect.signature(_BASE.pad).parameters
CALL_SIDE = "padding_side" in inspect.signature(_BASE.__call__).parameters


def _marks(*entries: str) -> list[pytest.MarkDecorator]:
    missing = [entry for entry in entries if not RECOGNISED[entry]]
    skip = pytest.mark.skipif(
        bool(missing),
        reason=f"transformers {transformers.__version__}: patch_transformers leaves {missing} "
        "unpatched (docs/transformers-support.md)",
    )
    return [skip, pytest.mark.patch_entry(*entries)]


def needs(*entries: str) -> Callable[[Any], Any]:
    """Skip the test where `entries` are not patched; mark it as exercising them."""

    def mark(test: Any) -> Any:
        for decorator in _marks(*entries):
            test = decorator(test)
        return test

    return mark


def _others_warned() -> set[str]:
    """The entry points other than tokenizer.pad and the call that warned already (left
    unpatched on this release): they stay quiet in tests of the warnings."""
    return set(patch_install._WARNED) - {PAD, CALL}


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    """Every test starts and ends unpatched, with zeroed statistics."""
    with warnings.catch_warnings():
        # Once per process for entry points this transformers does not let fastpad patch.
        warnings.simplefilter("ignore", patch_module.PatchWarning)
        fastpad.patch_transformers()
    fastpad.unpatch_transformers()
    fastpad.patch_transformers.reset_stats()
    yield
    fastpad.unpatch_transformers()


# --------------------------------------------------------------------------------------------
# Running a call both ways and comparing everything observable
# --------------------------------------------------------------------------------------------


# transformers 4.x logs this advice on the first pad of each ...Fast tokenizer; the fast path
# leaves that first call to the original (test_pad_advice_of_4x), the comparisons start after.
ADVICE = "Asking-to-pad-a-fast-tokenizer"


def both(
    call: Callable[[Any], Any], inputs: Any, tokenizers: tuple[Any, ...] = ()
) -> tuple[Any, Any]:
    """`call(inputs)` unpatched then patched (on deep copies); asserts the two runs equal.

    Returns the unpatched result and the statistics of the patched run.
    """
    original_inputs = copy.deepcopy(inputs)
    patched_inputs = copy.deepcopy(inputs)
    assert not any(fastpad.patch_transformers.is_patched().values())
    expected = observe(lambda: call(original_inputs), tokenizers, [ADVICE])
    fastpad.patch_transformers.reset_stats()
    with fastpad.transformers_patched():
        got = observe(lambda: call(patched_inputs), tokenizers, [ADVICE])
    stats = fastpad.patch_transformers.stats()
    assert got["warnings"] == expected["warnings"]
    assert got["logs"] == expected["logs"]
    assert_identical(patched_inputs, original_inputs)
    assert got["outcome"][0] == expected["outcome"][0], (got["outcome"], expected["outcome"])
    if expected["outcome"][0] == "error":
        assert got["outcome"] == expected["outcome"]
    else:
        assert_identical(got["outcome"][1], expected["outcome"][1])
    return expected["outcome"], stats


def _plain(value: Any) -> Any:
    """Nested lists of Python values, for object arrays and containers."""
    if isinstance(value, np.ndarray | torch.Tensor):
        return [_plain(item) for item in value] if value.ndim else value.item()
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    return value


def _assert_encodings(got: Any, expected: Any) -> None:
    assert (got is None) == (expected is None)
    if expected is None:
        return
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        for name in (
            "ids",
            "type_ids",
            "tokens",
            "offsets",
            "attention_mask",
            "special_tokens_mask",
            "word_ids",
            "sequence_ids",
            "n_sequences",
        ):
            assert getattr(mine, name) == getattr(theirs, name), name
        _assert_encodings(mine.overflowing, theirs.overflowing)


def assert_identical(got: Any, expected: Any, where: str = "result") -> None:
    """Same type, and recursively the same keys (in order), dtypes, shapes, strides, values."""
    assert type(got) is type(expected), (where, type(got), type(expected))
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        assert got.stride() == expected.stride(), where
        assert got.device == expected.device, where
        assert got.is_pinned() == expected.is_pinned(), where
        assert got.untyped_storage().resizable() == expected.untyped_storage().resizable(), where
        assert torch.equal(got, expected), where
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype, where
        assert got.shape == expected.shape, where
        assert got.strides == expected.strides, where
        assert got.flags.owndata == expected.flags.owndata, where
        if expected.dtype == object:
            assert _plain(got) == _plain(expected), where
        else:
            np.testing.assert_array_equal(got, expected, err_msg=where)
    elif isinstance(expected, BatchEncoding | dict):
        assert list(got.keys()) == list(expected.keys()), where
        for key in expected:
            assert_identical(got[key], expected[key], f"{where}[{key!r}]")
        if isinstance(expected, BatchEncoding):
            # (deep copies, which the inputs are, lose _n_sequences: BatchEncoding.__getstate__)
            assert vars(got).get("_n_sequences") == vars(expected).get("_n_sequences"), where
            assert got.is_fast == expected.is_fast, where
            _assert_encodings(got.encodings, expected.encodings)
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert_identical(mine, theirs, f"{where}[{index}]")
    else:
        assert got == expected, where


def _fast(stats: dict[str, Any], entry: str) -> int:
    return int(stats[entry]["fast"])


# --------------------------------------------------------------------------------------------
# tokenizer.pad
# --------------------------------------------------------------------------------------------

_OPTION_VALUES: dict[str, list[Any]] = {
    "padding": [
        True,
        "longest",
        "max_length",
        PaddingStrategy.LONGEST,
        PaddingStrategy.MAX_LENGTH,
        False,
        "do_not_pad",
    ],
    "max_length": [None, 0, 1, 5, 12, 20],
    "pad_to_multiple_of": [None, 1, 3, 8],
    "padding_side": [None, "left", "right"],
    "return_attention_mask": [None, True, False],
    "return_tensors": ["pt", "np", TensorType.PYTORCH, TensorType.NUMPY, None],
    "verbose": [True, False],
}
_FORMS = [
    "examples",  # a list of dicts, what a DataLoader collator receives
    "mapping",  # a dict of lists of rows
    "batch_encoding",  # a BatchEncoding of lists of rows
    "batch_encodings",  # a list of BatchEncoding examples
    "tensor_rows",  # a list of dicts holding 1-D int64 tensors
    "int32_tensor_rows",
    "array_rows",  # a list of dicts holding 1-D numpy arrays
    "mapping_of_tensors",  # transformers converts these in place: fallback
]
_PERTURBATIONS = [
    None,
    "tuple_row",  # transformers' `row + [pad]` fails on tuples
    "numpy_token",
    "bool_token",
    "float_token",
    "huge_token",  # does not fit int64
    "short_type_ids",  # a field shorter than its row
    "string_field",
    "unpadded_rows",  # rows transformers does not pad
    "float_label",
]


@st.composite
def pad_cases(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(1, 6))
    lengths = [draw(st.integers(0, 14)) for _ in range(size)]
    token = st.integers(-5, 30521) | st.sampled_from([0, 2**40, -(2**40)])
    extra = draw(
        st.lists(
            st.sampled_from(["token_type_ids", "attention_mask", "special_tokens_mask", "label"]),
            unique=True,
        )
    )
    examples = []
    for length in lengths:
        example: dict[str, Any] = {"input_ids": [draw(token) for _ in range(length)]}
        for key in extra:
            if key == "label":
                example[key] = draw(st.integers(0, 3))
            elif key == "attention_mask":
                example[key] = [1] * length
            else:
                example[key] = [draw(st.integers(0, 1)) for _ in range(length)]
        examples.append(example)
    # Half the cases are "friendly" (clean rows, options the fast path takes) so that it is
    # exercised often; the other half draw anything, one perturbation included.
    friendly = draw(st.booleans())
    perturbation = None if friendly else draw(st.sampled_from(_PERTURBATIONS))
    target = examples[draw(st.integers(0, size - 1))]
    if perturbation == "tuple_row":
        target["input_ids"] = tuple(target["input_ids"])
    elif perturbation in ("numpy_token", "bool_token", "float_token", "huge_token"):
        value = {"numpy_token": np.int64(7), "bool_token": True, "float_token": 7.0}.get(
            perturbation, 2**70
        )
        target["input_ids"] = [*target["input_ids"], value]
        for key in ("token_type_ids", "attention_mask", "special_tokens_mask"):
            if key in target:
                target[key] = [*target[key], 1]
    elif perturbation == "short_type_ids":
        target["token_type_ids"] = target["input_ids"][:-1]
        for example in examples:
            example.setdefault("token_type_ids", [0] * len(example["input_ids"]))
    elif perturbation == "string_field":
        for example in examples:
            example["text"] = "words"
    elif perturbation == "unpadded_rows":
        for example in examples:
            example["labels"] = list(example["input_ids"])
    elif perturbation == "float_label":
        for example in examples:
            example["label"] = 0.5
    options = {name: draw(st.sampled_from(values)) for name, values in _OPTION_VALUES.items()}
    if not PAD_SIDE:  # 4.40-4.44: pad takes no padding_side
        del options["padding_side"]
    drop = draw(st.lists(st.sampled_from(sorted(options)), unique=True))
    for name in drop:  # absent: transformers' default
        del options[name]
    form = draw(st.sampled_from(_FORMS))
    if friendly:
        form = "examples" if form == "mapping_of_tensors" else form
        options["return_tensors"] = draw(st.sampled_from(_OPTION_VALUES["return_tensors"][:4]))
        options["padding"] = draw(st.sampled_from(_OPTION_VALUES["padding"][:5]))
        if options.get("max_length") is not None:
            options["max_length"] = draw(st.sampled_from([16, 20]))
            options["verbose"] = False
        if options.get("return_attention_mask") is False and "attention_mask" in extra:
            del options["return_attention_mask"]
    return {"examples": examples, "form": form, "options": options}


def _to_form(examples: list[dict[str, Any]], form: str) -> Any:
    if form == "examples":
        return examples
    if form in ("mapping", "batch_encoding", "mapping_of_tensors"):
        columns = {key: [example[key] for example in examples] for key in examples[0]}
        if form == "mapping_of_tensors":
            columns["input_ids"] = [_tensor(row) for row in columns["input_ids"]]
        return BatchEncoding(columns) if form == "batch_encoding" else columns
    if form == "batch_encodings":
        return [BatchEncoding(dict(example)) for example in examples]
    converted = []
    for example in examples:
        row = example["input_ids"]
        if form == "array_rows":
            array = _tensor(row, np.asarray, dtype=np.int64)
        else:
            array = _tensor(row, dtype=torch.int32 if form.startswith("int32") else None)
        converted.append({**example, "input_ids": array})
    return converted


def _tensor(row: Any, make: Any = None, **options: Any) -> Any:
    """The row as a tensor (or array), or as it is when it cannot be one (perturbed rows)."""
    try:
        return (make or torch.tensor)(row, **options)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return row


@needs(PAD)
def test_pad_matches_transformers_on_random_batches(tokenizer: Any) -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None)
    @given(case=pad_cases())
    def check(case: dict[str, Any]) -> None:
        inputs = _to_form(case["examples"], case["form"])
        _, stats = both(
            lambda encoded: tokenizer.pad(encoded, **case["options"]), inputs, (tokenizer,)
        )
        outcomes["fast" if _fast(stats, "tokenizer.pad") else "fallback"] += 1

    check()
    # The comparison is not vacuous: many calls take the fast path, and many fall back.
    assert outcomes["fast"] >= 120, outcomes
    assert outcomes["fallback"] >= 80, outcomes


@needs(PAD)
@pytest.mark.parametrize("padding", [True, "longest", "max_length", PaddingStrategy.MAX_LENGTH])
@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
@pytest.mark.parametrize("padding_side", [None, "left"])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("form", ["examples", "mapping", "tensor_rows", "array_rows"])
def test_pad_real_tokenizer_output(
    tokenizer: Any,
    sentences: list[str],
    padding: Any,
    pad_to_multiple_of: Any,
    padding_side: Any,
    return_tensors: str,
    form: str,
) -> None:
    encoded = tokenizer(sentences[:24], sentences[5:29], return_special_tokens_mask=True)
    examples = [{key: encoded[key][index] for key in encoded} for index in range(24)]
    for index, example in enumerate(examples):
        example["label"] = index % 3
    options = {
        "padding": padding,
        "pad_to_multiple_of": pad_to_multiple_of,
        "return_tensors": return_tensors,
    }
    if PAD_SIDE or padding_side is not None:  # else the original raises TypeError (4.40-4.44)
        options["padding_side"] = padding_side
    if padding != True:  # noqa: E712 - the strategies, not True
        options["max_length"] = 96
    _, stats = both(
        lambda inputs: tokenizer.pad(inputs, **options), _to_form(examples, form), (tokenizer,)
    )
    # The to_py_obj of 4.51-4.57 and 5.0 marks tensor rows' storages not resizable: the
    # original runs on them.
    tensors = form != "tensor_rows" or not patch_tokenizer_pad._to_py_obj_takes_arrays()
    assert _fast(stats, "tokenizer.pad") == int((PAD_SIDE or padding_side is None) and tensors)


@needs(PAD)
def test_pad_advice_of_4x(tokenizer: Any, sentences: list[str]) -> None:
    """4.x logs advice on a fast tokenizer's first pad: that call runs the original."""
    features = _features(tokenizer, sentences, 6)
    logs = []
    for patched in (False, True):
        tokenizer.deprecation_warnings.clear()
        handler = Records()
        logger = logging.getLogger("transformers")
        logger.addHandler(handler)
        context: Any = fastpad.transformers_patched() if patched else contextlib.nullcontext()
        fastpad.patch_transformers.reset_stats()
        try:
            with context:
                first = tokenizer.pad(copy.deepcopy(features), return_tensors="pt")
                second = tokenizer.pad(copy.deepcopy(features), return_tensors="pt")
        finally:
            logger.removeHandler(handler)
        assert_identical(first, second)
        logs.append(handler.messages)
    assert logs[0] == logs[1]
    reasons = fastpad.patch_transformers.stats()["tokenizer.pad"]
    if FAMILY == 4:
        assert len(logs[0]) == 1 and "__call__` method is faster" in logs[0][0][1]
        assert reasons == {"fast": 1, "fallback": 1, "reasons": {"warning": 1}}
    else:
        assert reasons["fast"] == 2


@needs(PAD)
def test_pad_left_padding_tokenizer(sentences: list[str]) -> None:
    left = transformers.AutoTokenizer.from_pretrained(tokenizer_path(), padding_side="left")
    encoded = left(sentences[:16])
    _, stats = both(lambda inputs: left.pad(inputs, return_tensors="pt"), dict(encoded), (left,))
    assert _fast(stats, "tokenizer.pad") == 1


@needs(PAD)
def test_pad_single_example_runs_the_original(tokenizer: Any) -> None:
    single = dict(tokenizer("Hello world."))
    outcome, stats = both(
        lambda inputs: tokenizer.pad(
            inputs, padding="max_length", max_length=8, return_tensors="pt"
        ),
        single,
        (tokenizer,),
    )
    assert outcome[1]["input_ids"].shape == (8,)  # transformers returns 1-D values here
    assert stats["tokenizer.pad"]["reasons"] == {"single_example": 1}


# --------------------------------------------------------------------------------------------
# The tokenizer call
# --------------------------------------------------------------------------------------------


@needs(CALL)
@pytest.mark.parametrize("padding", [True, "longest", "max_length", False])
@pytest.mark.parametrize("truncation", [None, True, "longest_first", False])
@pytest.mark.parametrize("max_length", [None, 12])
@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
@pytest.mark.parametrize("padding_side", [None, "left"])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_call_option_grid(
    tokenizer: Any,
    sentences: list[str],
    padding: Any,
    truncation: Any,
    max_length: Any,
    pad_to_multiple_of: Any,
    padding_side: Any,
    return_tensors: str,
) -> None:
    options = {
        "padding": padding,
        "truncation": truncation,
        "max_length": max_length,
        "pad_to_multiple_of": pad_to_multiple_of,
        "return_tensors": return_tensors,
    }
    if CALL_SIDE or padding_side is not None:  # else the original raises TypeError (4.40-4.44)
        options["padding_side"] = padding_side
    texts = sentences[:12]
    outcome, stats = both(lambda batch: tokenizer(batch, **options), texts, (tokenizer,))
    if outcome[0] == "value":
        assert stats["tokenizer.__call__"]["fast"] + stats["tokenizer.__call__"]["fallback"] == 1
        assert stats["tokenizer.__call__"]["reasons"].keys() <= {"ragged"}


_CALL_FLAGS: dict[str, list[Any]] = {
    "add_special_tokens": [True, False],
    "return_token_type_ids": [None, True, False],
    "return_attention_mask": [None, True, False],
    "return_special_tokens_mask": [False, True],
    "return_offsets_mapping": [False, True],
    "return_length": [False, True],
    "return_overflowing_tokens": [False, True],
    "stride": [0, 2],
    "verbose": [True, False],
    "padding": [True, "max_length", False, PaddingStrategy.LONGEST],
    "truncation": [None, True, "only_second", "longest_first", "only_first"],
    "max_length": [None, 10, 24],
    "pad_to_multiple_of": [None, 4],
    "padding_side": [None, "left", "right"],
    "return_tensors": ["pt", "np", TensorType.PYTORCH],
}


@st.composite
def call_cases(draw: Any) -> dict[str, Any]:
    options = {name: draw(st.sampled_from(values)) for name, values in _CALL_FLAGS.items()}
    if not CALL_SIDE:  # 4.40-4.44: the call takes no padding_side
        del options["padding_side"]
    drop = draw(st.lists(st.sampled_from(sorted(options)), unique=True))
    for name in drop:
        if name != "return_tensors":
            del options[name]
    kind = draw(st.sampled_from(["texts", "pairs", "pair_tuples", "words", "word_pairs"]))
    return {"kind": kind, "options": options, "size": draw(st.integers(1, 8))}


@needs(CALL)
def test_call_matches_transformers_on_random_options(tokenizer: Any, sentences: list[str]) -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=250, deadline=None)
    @given(case=call_cases())
    def check(case: dict[str, Any]) -> None:
        size, options = case["size"], case["options"]
        firsts, seconds = sentences[:size], sentences[3 : 3 + size]
        kind = case["kind"]
        if kind == "texts":
            arguments: tuple[Any, ...] = (firsts,)
        elif kind == "pairs":
            arguments = (firsts, seconds)
        elif kind == "pair_tuples":
            arguments = (list(zip(firsts, seconds, strict=True)),)
        elif kind == "words":
            arguments = ([text.split() or ["x"] for text in firsts],)
            options = {**options, "is_split_into_words": True}
        else:
            arguments = (
                [text.split() or ["x"] for text in firsts],
                [text.split() or ["y"] for text in seconds],
            )
            options = {**options, "is_split_into_words": True}
        outcome, stats = both(lambda args: tokenizer(*args, **options), arguments, (tokenizer,))
        outcomes[f"{outcome[0]}-{'fast' if _fast(stats, 'tokenizer.__call__') else 'other'}"] += 1

    check()
    assert outcomes["value-fast"] >= 50, outcomes


@needs(CALL)
def test_call_keeps_the_backend_state(tokenizer: Any, sentences: list[str]) -> None:
    """The Rust tokenizer's padding and truncation settings end as transformers leaves them."""
    states = []
    for patched in (False, True):
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()
        context: Any = fastpad.transformers_patched() if patched else contextlib.nullcontext()
        with context:
            tokenizer(
                sentences[:8],
                padding="max_length",
                max_length=32,
                truncation=True,
                pad_to_multiple_of=8,
                **({"padding_side": "left"} if CALL_SIDE else {}),
                return_tensors="pt",
            )
        states.append((tokenizer.backend_tokenizer.padding, tokenizer.backend_tokenizer.truncation))
    assert states[0] == states[1]
    assert states[0][0] is not None


@needs(CALL)
def test_call_single_text_runs_the_original(tokenizer: Any) -> None:
    outcome, stats = both(
        lambda text: tokenizer(text, padding=True, return_tensors="pt"),
        "Hello world.",
        (tokenizer,),
    )
    assert outcome[1]["input_ids"].shape == (1, 5)
    assert stats["tokenizer.__call__"]["reasons"] == {"single_example": 1}


@needs(CALL)
def test_call_pairs_take_the_fast_path(tokenizer: Any, sentences: list[str]) -> None:
    outcome, stats = both(
        lambda texts: tokenizer(
            texts[:16], texts[16:32], padding=True, truncation="longest_first", max_length=20,
            return_tensors="pt",
        ),
        sentences,
        (tokenizer,),
    )  # fmt: skip
    assert int(outcome[1]["token_type_ids"].max()) == 1
    assert _fast(stats, "tokenizer.__call__") == 1
    assert outcome[1].encodings[0].n_sequences == 2


# --------------------------------------------------------------------------------------------
# Collators
# --------------------------------------------------------------------------------------------


def _features(tokenizer: Any, sentences: list[str], count: int = 20) -> list[dict[str, Any]]:
    encoded = tokenizer(sentences[:count], truncation=True, max_length=40)
    return [{key: encoded[key][index] for key in encoded} for index in range(count)]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"pad_to_multiple_of": 8},
        {"padding": "max_length", "max_length": 48},
        {"return_tensors": "np"},
        {"padding": "longest", "pad_to_multiple_of": 16, "return_tensors": "np"},
    ],
    ids=repr,
)
@pytest.mark.parametrize("label", [None, "label", "label_ids"])
@needs(PAD)
def test_data_collator_with_padding(
    tokenizer: Any, sentences: list[str], options: dict[str, Any], label: str | None
) -> None:
    features = _features(tokenizer, sentences)
    if label is not None:
        for index, feature in enumerate(features):
            feature[label] = index % 2 if label == "label" else [index % 2, 1]
    collator = transformers.DataCollatorWithPadding(tokenizer, **options)
    _, stats = both(collator, features, (tokenizer,))
    assert _fast(stats, "tokenizer.pad") == 1


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@needs(PAD)
def test_other_collators_reach_the_patched_pad(
    tokenizer: Any, sentences: list[str], return_tensors: str
) -> None:
    """Collators that call tokenizer.pad: Seq2Seq (labels padded first), language modeling."""
    features = _features(tokenizer, sentences)
    for feature in features:
        feature["labels"] = list(reversed(feature["input_ids"]))[:7]
    seq2seq = transformers.DataCollatorForSeq2Seq(
        tokenizer, pad_to_multiple_of=8, return_tensors=return_tensors
    )
    _, stats = both(seq2seq, features, (tokenizer,))
    assert _fast(stats, "tokenizer.pad") == 1
    plain = [{"input_ids": feature["input_ids"]} for feature in features]
    language = transformers.DataCollatorForLanguageModeling(
        tokenizer, mlm=False, return_tensors=return_tensors
    )
    _, stats = both(language, plain, (tokenizer,))
    assert _fast(stats, "tokenizer.pad") == 1


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("labels", ["lists", "arrays", "tensors", "label_key", "none"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8, "label_pad_token_id": -1}])
@needs(TOKENS)
def test_data_collator_for_token_classification(
    sentences: list[str], return_tensors: str, labels: str, padding_side: str, options: Any
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        tokenizer_path(), padding_side=padding_side
    )
    features = _features(tokenizer, sentences)
    for index, feature in enumerate(features):
        tags = [(index + position) % 5 for position in range(len(feature["input_ids"]))]
        if labels == "arrays":
            feature["labels"] = np.asarray(tags)
        elif labels == "tensors":
            feature["labels"] = torch.tensor(tags)
        elif labels == "label_key":
            feature["label"] = tags
        elif labels == "lists":
            feature["labels"] = tags
    collator = transformers.DataCollatorForTokenClassification(
        tokenizer, return_tensors=return_tensors, **options
    )
    _, stats = both(collator, features, (tokenizer,))
    # The older numpy_call (4.x, 5.0-5.15) fails on a "label" key: the original runs there,
    # and its tokenizer.pad returns lists (return_tensors=None), which fastpad leaves alone.
    older = return_tensors == "np" and patch_collators._pads_labels_itself(
        transformers.DataCollatorForTokenClassification.numpy_call
    )
    skipped = (labels == "tensors" and return_tensors == "np") or (older and labels == "label_key")
    assert _fast(stats, "DataCollatorForTokenClassification") == int(not skipped), stats
    assert _fast(stats, "tokenizer.pad") == int(RECOGNISED[PAD] and not (older and skipped))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"return_flash_attn_kwargs": True},
        {"return_seq_idx": True, "return_position_ids": False},
        {"return_flash_attn_kwargs": True, "return_seq_idx": True, "position_ids_start": 2},
        {"separator_id": -1, "return_tensors": "np", "return_flash_attn_kwargs": True},
        {"return_position_ids": False, "return_tensors": "np"},
    ],
    ids=repr,
)
@pytest.mark.parametrize("rows", ["lists", "tensors", "arrays", "with_labels", "empty_rows"])
@needs(FLAT)
def test_data_collator_with_flattening(
    tokenizer: Any, sentences: list[str], options: dict[str, Any], rows: str
) -> None:
    features = [{"input_ids": feature["input_ids"]} for feature in _features(tokenizer, sentences)]
    for index, feature in enumerate(features):
        if rows == "tensors":
            feature["input_ids"] = torch.tensor(feature["input_ids"])
        elif rows == "arrays":
            feature["input_ids"] = np.asarray(feature["input_ids"], dtype=np.int32)
        elif rows == "with_labels":
            feature["labels"] = [token % 7 for token in feature["input_ids"]]
        elif rows == "empty_rows" and index % 3 == 0:
            feature["input_ids"] = []
    form = _flattening_form()
    if "position_ids_start" in options and not form.position_ids_start:
        pytest.skip("this release's collator has no position_ids_start")
    if form.through_default_collator and options.keys() & {
        "return_flash_attn_kwargs",
        "return_seq_idx",
    }:
        pytest.skip("this release's collator has no flash-attention kwargs or seq_idx")
    if "separator_id" in options and not form.separator:
        pytest.skip("this release's collator has no separator_id")
    collator = transformers.DataCollatorWithFlattening(**options)
    _, stats = both(collator, features)
    # Before 5.24 an empty example adds a label and no token; before 5.0 array rows are
    # concatenated with `+`: the original runs there.
    left = (rows == "empty_rows" and not form.drops_empty) or (
        rows in ("tensors", "arrays") and not form.converts
    )
    assert _fast(stats, "DataCollatorWithFlattening") == int(not left)


def _flattening_form() -> Any:
    return patch_collators.flattening_form(transformers.DataCollatorWithFlattening.__call__)


@needs(FLAT)
def test_flattening_call_arguments(tokenizer: Any, sentences: list[str]) -> None:
    features = _features(tokenizer, sentences, 6)
    collator = transformers.DataCollatorWithFlattening()
    separator = _flattening_form().separator  # else the original raises TypeError (4.44)
    _, stats = both(lambda batch: collator(batch, "np", -7), features)
    assert _fast(stats, "DataCollatorWithFlattening") == int(separator)
    _, stats = both(lambda batch: collator(batch, return_tensors="pt", separator_id=3), features)
    assert _fast(stats, "DataCollatorWithFlattening") == int(separator)
    _, stats = both(lambda batch: collator(batch, "np"), features)
    assert _fast(stats, "DataCollatorWithFlattening") == 1


# --------------------------------------------------------------------------------------------
# Every fallback reason
# --------------------------------------------------------------------------------------------


# The other tokenizers of the cases (their once-per-tokenizer logs fire in both runs too).
_FALLBACK_TOKENIZERS: list[Any] = []


def _fallback_cases(tokenizer: Any, sentences: list[str]) -> list[tuple[str, str, Any, Any]]:
    """(entry point, reason, call, inputs) for every fallback reason."""
    features = _features(tokenizer, sentences, 8)
    texts = sentences[:8]
    cls = type(tokenizer)
    overriding = type(
        "OverridingPad", (cls,), {"_pad": lambda self, *a, **k: cls._pad(self, *a, **k)}
    )
    own_pad = overriding.from_pretrained(tokenizer_path())
    encode = "_batch_encode_plus" if FAMILY == 4 else "_encode_plus"
    overriding_call = type(
        "OverridingEncode",
        (cls,),
        {encode: lambda self, *a, **k: getattr(cls, encode)(self, *a, **k)},
    )
    own_encode = overriding_call.from_pretrained(tokenizer_path())
    no_pad = transformers.AutoTokenizer.from_pretrained(tokenizer_path())
    no_pad.pad_token = None
    _FALLBACK_TOKENIZERS[:] = [own_pad, own_encode, no_pad]
    if FAMILY == 4:
        slow = transformers.BertTokenizer.from_pretrained(tokenizer_path())
    else:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

        slow = BertTokenizerLegacy.from_pretrained(tokenizer_path())
    ragged = [
        {"input_ids": feature["input_ids"], "labels": feature["input_ids"]} for feature in features
    ]
    masked = [dict(feature) for feature in features]
    pad = "tokenizer.pad"
    call = "tokenizer.__call__"
    tokens = "DataCollatorForTokenClassification"
    flat = "DataCollatorWithFlattening"
    tagged = [{**feature, "labels": tuple(feature["input_ids"])} for feature in features]
    too_long = [{**feature, "labels": [*feature["input_ids"], 1, 2, 3] * 9} for feature in features]
    return [
        (
            pad,
            "arguments",
            lambda f: tokenizer.pad(f, True, None, None, None, None, "pt", True, 1),
            features,
        ),
        (
            call,
            "arguments",
            lambda t: tokenizer(t, text_target=t, padding=True, return_tensors="pt"),
            texts,
        ),
        (pad, "return_tensors", lambda f: tokenizer.pad(f), features),
        (pad, "return_tensors", lambda f: tokenizer.pad(f, return_tensors="tf"), features),
        (call, "return_tensors", lambda t: tokenizer(t, padding=True), texts),
        (
            flat,
            "return_tensors",
            lambda f: transformers.DataCollatorWithFlattening()(f, "tf"),
            features,
        ),
        (pad, "padding", lambda f: tokenizer.pad(f, padding=False, return_tensors="pt"), features),
        (
            pad,
            "padding",
            lambda f: tokenizer.pad(f, padding="do_not_pad", return_tensors="np"),
            features,
        ),
        (
            pad,
            "option",
            lambda f: (
                tokenizer.pad(f, padding_side="middle", return_tensors="pt")
                if PAD_SIDE
                else tokenizer.pad(f, verbose="yes", return_tensors="pt")
            ),
            features,
        ),
        (
            pad,
            "option",
            lambda f: tokenizer.pad(f, pad_to_multiple_of=np.int64(8), return_tensors="pt"),
            features,
        ),
        (
            pad,
            "option",
            lambda f: tokenizer.pad(f, padding="max_length", max_length=40.0, return_tensors="pt"),
            features,
        ),
        (
            tokens,
            "option",
            lambda f: transformers.DataCollatorForTokenClassification(
                tokenizer, label_pad_token_id=-100.0
            )(f),
            tagged,
        ),
        (
            flat,
            "option",
            lambda f: (
                transformers.DataCollatorWithFlattening(separator_id=-1.0)(f)
                if _flattening_form().separator
                else transformers.DataCollatorWithFlattening(return_position_ids=1)(f)
            ),
            features,
        ),
        (pad, "warning", lambda f: tokenizer.pad(f, max_length=10, return_tensors="pt"), features),
        (pad, "single_example", lambda f: tokenizer.pad(f[0], return_tensors="pt"), features),
        (
            call,
            "single_example",
            lambda t: tokenizer(t[0], padding=True, return_tensors="pt"),
            texts,
        ),
        (
            pad,
            "empty_batch",
            lambda f: tokenizer.pad({"input_ids": []}, return_tensors="pt"),
            features,
        ),
        (pad, "empty_batch", lambda f: tokenizer.pad([], return_tensors="pt"), features),
        (call, "empty_batch", lambda t: tokenizer([], padding=True, return_tensors="pt"), texts),
        (
            pad,
            "no_tokens",
            lambda f: tokenizer.pad([{"input_ids": []}, {"input_ids": []}], return_tensors="pt"),
            features,
        ),
        (
            tokens,
            "empty_batch",
            lambda f: transformers.DataCollatorForTokenClassification(tokenizer)([]),
            features,
        ),
        (
            flat,
            "empty_batch",
            lambda f: transformers.DataCollatorWithFlattening()([{"input_ids": []}]),
            features,
        ),
        (
            pad,
            "input_type",
            lambda f: tokenizer.pad(
                [{**x, "input_ids": tuple(x["input_ids"])} for x in f], return_tensors="pt"
            ),
            features,
        ),
        (
            pad,
            "input_type",
            lambda f: tokenizer.pad(
                {"input_ids": [torch.tensor(x["input_ids"]) for x in f]}, return_tensors="pt"
            ),
            features,
        ),
        (
            pad,
            "input_type",
            lambda f: tokenizer.pad(
                [
                    {
                        **x,
                        "input_ids": [np.int32(5), *x["input_ids"]],
                        "attention_mask": [1, *x["attention_mask"]],
                        "token_type_ids": [0, *x["token_type_ids"]],
                    }
                    for x in f
                ],
                return_tensors="pt",
            ),
            features,
        ),
        (tokens, "input_type", transformers.DataCollatorForTokenClassification(tokenizer), tagged),
        (
            flat,
            "input_type",
            lambda f: transformers.DataCollatorWithFlattening()(
                [{"input_ids": tuple(x["input_ids"])} for x in f]
            ),
            features,
        ),
        (pad, "unpadded_field", lambda f: tokenizer.pad(f, return_tensors="pt"), ragged),
        (
            pad,
            "attention_mask_kept",
            lambda f: tokenizer.pad(f, return_attention_mask=False, return_tensors="pt"),
            masked,
        ),
        (pad, "no_pad_token", lambda f: no_pad.pad(f, return_tensors="pt"), features),
        (call, "slow_tokenizer", lambda t: slow(t, padding=True, return_tensors="pt"), texts),
        (pad, "overridden", lambda f: own_pad.pad(f, return_tensors="pt"), features),
        (call, "overridden", lambda t: own_encode(t, padding=True, return_tensors="pt"), texts),
        (call, "ragged", lambda t: tokenizer(t, return_tensors="np"), texts),
        (call, "ragged", lambda t: tokenizer(t, return_tensors="pt"), texts),
        (
            pad,
            "error",
            lambda f: tokenizer.pad(f, padding="max_length", max_length=4, return_tensors="pt"),
            features,
        ),
        (
            pad,
            "error",
            lambda f: tokenizer.pad(f, padding="max_length", max_length=4, return_tensors="np"),
            features,
        ),
        (
            call,
            "error",
            lambda t: tokenizer(
                t, padding=True, truncation="only_second", max_length=3, return_tensors="pt"
            ),
            texts,
        ),
        (tokens, "error", transformers.DataCollatorForTokenClassification(tokenizer), too_long),
        (
            flat,
            "error",
            lambda f: transformers.DataCollatorWithFlattening()([{**x, "labels": [1]} for x in f]),
            features,
        ),
    ]


@pytest.mark.parametrize(
    "entry", [pytest.param(entry, marks=_marks(entry)) for entry in (PAD, CALL, TOKENS, FLAT)]
)
def test_every_fallback_reason(tokenizer: Any, sentences: list[str], entry: str) -> None:
    cases = [case for case in _fallback_cases(tokenizer, sentences) if case[0] == entry]
    assert cases
    for _, reason, call, inputs in cases:
        _, stats = both(call, inputs, (tokenizer, *_FALLBACK_TOKENIZERS))
        assert stats[entry]["reasons"].get(reason, 0) >= 1, (entry, reason, stats[entry])


def test_the_fallback_cases_cover_every_reason(tokenizer: Any, sentences: list[str]) -> None:
    reasons = {reason for _, reason, _, _ in _fallback_cases(tokenizer, sentences)}
    assert reasons == set(patch_module.FALLBACK_REASONS)


# --------------------------------------------------------------------------------------------
# Patching itself
# --------------------------------------------------------------------------------------------

_TARGETS = [
    (PAD, transformers.PreTrainedTokenizerBase, "pad"),
    (CALL, transformers.PreTrainedTokenizerBase, "__call__"),
    (TOKENS, transformers.DataCollatorForTokenClassification, "torch_call"),
    (TOKENS, transformers.DataCollatorForTokenClassification, "numpy_call"),
    *(
        [(FLAT, transformers.DataCollatorWithFlattening, "__call__")]
        if hasattr(transformers, "DataCollatorWithFlattening")  # 4.44 and later
        else []
    ),
]


def test_unpatch_restores_the_original_objects() -> None:
    originals = [owner.__dict__[name] for _, owner, name in _TARGETS]
    status = fastpad.patch_transformers()
    assert status == RECOGNISED
    wrappers = [owner.__dict__[name] for _, owner, name in _TARGETS]
    for (entry, _, _), new, old in zip(_TARGETS, wrappers, originals, strict=True):
        if RECOGNISED[entry]:
            assert new is not old and new.__wrapped__ is old
        else:
            assert new is old  # left alone
    assert fastpad.patch_transformers() == status  # idempotent: the same wrappers stay
    assert [owner.__dict__[name] for _, owner, name in _TARGETS] == wrappers
    fastpad.unpatch_transformers()
    assert all(
        owner.__dict__[name] is old
        for (_, owner, name), old in zip(_TARGETS, originals, strict=True)
    )
    fastpad.unpatch_transformers()  # idempotent
    assert all(
        owner.__dict__[name] is old
        for (_, owner, name), old in zip(_TARGETS, originals, strict=True)
    )
    assert not any(fastpad.patch_transformers.is_patched().values())


@needs(PAD)
def test_scoped_patch_nests_and_keeps_a_global_patch() -> None:
    pad = transformers.PreTrainedTokenizerBase.__dict__["pad"]
    with fastpad.transformers_patched():
        assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is not pad
        with fastpad.transformers_patched():
            pass
        assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is not pad  # outer still open
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is pad
    fastpad.patch_transformers()
    with fastpad.transformers_patched():
        pass
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is not pad  # the global patch stays
    fastpad.unpatch_transformers()
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is pad


@needs(PAD, CALL)
def test_unrecognised_internals_warn_once_and_stay_unpatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forms = copy.deepcopy(patch_fingerprints.validated())
    for form in forms[PAD]:
        form["fingerprints"]["PreTrainedTokenizerBase._pad"] = "0" * 16
    monkeypatch.setattr(patch_fingerprints, "_VALIDATED", forms)
    monkeypatch.setattr(patch_install, "_WARNED", _others_warned())
    original = transformers.PreTrainedTokenizerBase.__dict__["pad"]
    with pytest.warns(patch_module.PatchWarning, match=r"tokenizer\.pad left unpatched") as caught:
        status = fastpad.patch_transformers()
    assert any("PreTrainedTokenizerBase._pad" in str(item.message) for item in caught)
    assert status[PAD] is False
    assert status[CALL] is True
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is original
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastpad.unpatch_transformers()
        assert fastpad.patch_transformers()[PAD] is False  # no 2nd warning


@needs(PAD)
def test_a_combination_not_validated_together_stays_unpatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each function's form validated on some release, but not these forms together."""
    tf = patch_common.load_transformers()
    assert tf is not None
    found = patch_fingerprints.current(PAD, tf)
    first = next(iter(found))
    forms = copy.deepcopy(patch_fingerprints.validated())
    forms[PAD] = [
        {"releases": ["a"], "fingerprints": {**found, first: "0" * 16}},
        {"releases": ["b"], "fingerprints": {**dict.fromkeys(found, "1"), first: found[first]}},
    ]
    monkeypatch.setattr(patch_fingerprints, "_VALIDATED", forms)
    monkeypatch.setattr(patch_install, "_WARNED", _others_warned())
    with pytest.warns(patch_module.PatchWarning, match="not validated together"):
        assert fastpad.patch_transformers()[PAD] is False


def test_an_unknown_transformers_layout_patches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules fastpad cannot find (another major version): one warning each, nothing patched."""
    monkeypatch.setattr(patch_install, "load_transformers", lambda: None)
    monkeypatch.setattr(patch_install, "_WARNED", set())
    originals = [owner.__dict__[name] for _, owner, name in _TARGETS]
    with pytest.warns(patch_module.PatchWarning, match="is not laid out as") as caught:
        status = fastpad.patch_transformers()
    assert len(caught) == len(patch_common.ENTRY_POINTS)
    assert status == dict.fromkeys(patch_common.ENTRY_POINTS, False)
    assert [owner.__dict__[name] for _, owner, name in _TARGETS] == originals


@needs(PAD)
def test_an_outside_wrapper_is_not_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another library's wrapper around pad: fastpad leaves it (and pad) alone."""
    original = transformers.PreTrainedTokenizerBase.__dict__["pad"]

    def logged(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    logged.__wrapped__ = original  # type: ignore[attr-defined]
    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "pad", logged)
    monkeypatch.setattr(patch_install, "_WARNED", _others_warned())
    with pytest.warns(patch_module.PatchWarning, match="tokenizer.pad left unpatched"):
        status = fastpad.patch_transformers()
    assert status["tokenizer.pad"] is False
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is logged
    fastpad.unpatch_transformers()
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is logged


def test_signatures_are_the_originals() -> None:
    import inspect

    before = [inspect.signature(owner.__dict__[name]) for _, owner, name in _TARGETS]
    fastpad.patch_transformers()
    after = [inspect.signature(owner.__dict__[name]) for _, owner, name in _TARGETS]
    assert before == after


def test_import_fastpad_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fastpad; fastpad.patch_transformers.stats(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------


@needs(PAD, CALL)
def test_concurrent_calls_equal_serial_ones(tokenizer: Any, sentences: list[str]) -> None:
    features = _features(tokenizer, sentences, 32)
    batches = [features[start : start + 8 + start % 5] for start in range(0, 24)]
    texts = [sentences[start : start + 6] for start in range(0, 40)]
    expected_pad = [tokenizer.pad(batch, return_tensors="pt") for batch in batches]
    expected_call = [tokenizer(batch, padding=True, return_tensors="pt") for batch in texts]
    fastpad.patch_transformers()
    failures: list[BaseException] = []
    calls = Counter[str]()
    lock = threading.Lock()

    def work(seed: int) -> None:
        try:
            for step in range(30):
                index = (seed * 7 + step) % len(batches)
                assert_identical(
                    tokenizer.pad(batches[index], return_tensors="pt"), expected_pad[index]
                )
                text_index = (seed * 3 + step) % len(texts)
                got = tokenizer(texts[text_index], padding=True, return_tensors="pt")
                assert_identical(got, expected_call[text_index])
                with lock:
                    calls["pad"] += 1
                    calls["call"] += 1
        except BaseException as error:  # reported in the main thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    stats = fastpad.patch_transformers.stats()
    assert stats["tokenizer.pad"]["fast"] == calls["pad"] == 180
    assert stats["tokenizer.__call__"]["fast"] == calls["call"] == 180


@needs(PAD, CALL)
def test_patching_while_other_threads_call(tokenizer: Any, sentences: list[str]) -> None:
    """Patch and unpatch repeatedly while threads pad and tokenize: every result is exact."""
    features = _features(tokenizer, sentences, 16)
    expected_pad = tokenizer.pad(features, return_tensors="pt")
    expected_call = tokenizer(sentences[:16], padding=True, return_tensors="pt")
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while not stop.is_set():
                assert_identical(tokenizer.pad(features, return_tensors="pt"), expected_pad)
                got = tokenizer(sentences[:16], padding=True, return_tensors="pt")
                assert_identical(got, expected_call)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            fastpad.patch_transformers()
            with fastpad.transformers_patched():
                pass
            fastpad.unpatch_transformers()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[0]
    assert transformers.PreTrainedTokenizerBase.__dict__["pad"] is _TARGETS_ORIGINAL_PAD


_TARGETS_ORIGINAL_PAD = transformers.PreTrainedTokenizerBase.__dict__["pad"]


# --------------------------------------------------------------------------------------------
# sentence-transformers end to end
# --------------------------------------------------------------------------------------------


@needs(CALL)
def test_sentence_transformer_embeddings_are_bit_identical(sentences: list[str]) -> None:
    try:
        import sentence_transformers
    except Exception as error:  # not installed, or not for this transformers release
        pytest.skip(f"sentence_transformers: {error!r}")
    from fastpad._bench.workloads import make_texts

    model = sentence_transformers.SentenceTransformer(tokenizer_path(), device="cpu")
    texts = [*sentences, *make_texts(64, mean_words=12)]
    expected = model.encode(texts, batch_size=16)
    with fastpad.transformers_patched():
        got = model.encode(texts, batch_size=16)
    stats = fastpad.patch_transformers.stats()
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()  # bit for bit
    batches = -(-len(texts) // 16)
    assert stats["tokenizer.__call__"]["fast"] == batches, stats
