"""fastpad's padding collators against transformers' on real tokenizer output and in DataLoaders."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal

import fastpad
from fastpad._collator import _pin_default

torch = pytest.importorskip("torch")
DataLoader = torch.utils.data.DataLoader
Dataset = torch.utils.data.Dataset
transformers = pytest.importorskip("transformers")


# Module level, so DataLoader worker processes can unpickle them under any start method.
class FeatureDataset(Dataset[dict[str, Any]]):
    """Feature dicts as a tokenized `datasets` split yields them."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


class WorkerPinDefault:
    """A collate_fn reporting whether the collators would pin where it runs."""

    def __call__(self, features: list[dict[str, Any]]) -> list[bool | None]:
        return [_pin_default(None, "pt")]


class RecordingCollator:
    """Wraps a collator and keeps the data pointers of the tensors it returned."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.pointers: list[dict[str, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.collator(features)
        self.pointers.append({key: value.data_ptr() for key, value in batch.items()})
        return batch


def features_of(tokenizer: Any, sentences: list[str], **extra: Any) -> list[dict[str, Any]]:
    """One dict per sentence; `extra` maps a field name to a function of (index, length)."""
    encoded = tokenizer(sentences)
    features = []
    for index in range(len(sentences)):
        feature = {key: encoded[key][index] for key in encoded}
        length = len(feature["input_ids"])
        for key, make in extra.items():
            feature[key] = make(index, length)
        features.append(feature)
    return features


@pytest.fixture
def left_tokenizer(tokenizer: Any) -> Any:
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    return left


LABELS = {
    "int label": {"label": lambda index, length: index % 3},
    "float label": {"label": lambda index, length: index / 4},
    "label_ids": {"label_ids": lambda index, length: index % 2},
    "multi-hot label": {"label": lambda index, length: [float(index % 2), 1.0, 0.0]},
    "labels and idx": {"labels": lambda index, length: index, "idx": lambda index, length: index},
    "no label": {},
}
SETTINGS = [
    {},
    {"padding": "longest"},
    {"padding": "max_length", "max_length": 64},
    {"padding": "max_length"},  # the tokenizer's model_max_length
    {"pad_to_multiple_of": 8},
    {"return_tensors": "np"},
    {"return_tensors": "np", "pad_to_multiple_of": 16},
]


@pytest.mark.parametrize("labels", list(LABELS), ids=list(LABELS))
@pytest.mark.parametrize("settings", SETTINGS, ids=[str(settings) for settings in SETTINGS])
def test_with_padding_matches_transformers(
    tokenizer: Any, sentences: list[str], labels: str, settings: dict[str, Any]
) -> None:
    features = features_of(tokenizer, sentences, **LABELS[labels])
    expected = transformers.DataCollatorWithPadding(tokenizer, **settings)(features)
    assert_batches_equal(fastpad.DataCollatorWithPadding(tokenizer, **settings)(features), expected)


def test_with_padding_left_side_and_array_features(
    left_tokenizer: Any, sentences: list[str]
) -> None:
    for convert in (np.asarray, torch.tensor):
        features = [
            {key: convert(value) for key, value in feature.items()}
            for feature in features_of(left_tokenizer, sentences[:9], label=lambda i, n: i % 2)
        ]
        expected = transformers.DataCollatorWithPadding(left_tokenizer)(features)
        assert_batches_equal(fastpad.DataCollatorWithPadding(left_tokenizer)(features), expected)


def test_with_padding_special_tokens_mask_and_no_type_ids(
    tokenizer: Any, sentences: list[str]
) -> None:
    encoded = tokenizer(sentences, return_special_tokens_mask=True, return_token_type_ids=False)
    features = [{key: encoded[key][index] for key in encoded} for index in range(len(sentences))]
    for settings in ({}, {"pad_to_multiple_of": 8}):
        expected = transformers.DataCollatorWithPadding(tokenizer, **settings)(features)
        assert_batches_equal(
            fastpad.DataCollatorWithPadding(tokenizer, **settings)(features), expected
        )


TOKEN_SETTINGS = [
    {},
    {"pad_to_multiple_of": 8},
    {"padding": "max_length", "max_length": 64},
    {"label_pad_token_id": -1},
    {"return_tensors": "np"},
]


@pytest.mark.parametrize("label_name", ["labels", "label"])
@pytest.mark.parametrize(
    "settings", TOKEN_SETTINGS, ids=[str(settings) for settings in TOKEN_SETTINGS]
)
@pytest.mark.parametrize("side", ["right", "left"])
def test_token_classification_matches_transformers(
    tokenizer: Any,
    left_tokenizer: Any,
    sentences: list[str],
    label_name: str,
    settings: dict[str, Any],
    side: str,
) -> None:
    chosen = left_tokenizer if side == "left" else tokenizer
    features = features_of(
        chosen, sentences, **{label_name: lambda index, length: [index % 7] * length}
    )
    expected = transformers.DataCollatorForTokenClassification(chosen, **settings)(features)
    result = fastpad.DataCollatorForTokenClassification(chosen, **settings)(features)
    assert_batches_equal(result, expected)


def test_token_classification_labels_of_other_lengths(
    tokenizer: Any, left_tokenizer: Any, sentences: list[str]
) -> None:
    # Labels only for the first tokens: padded on their own to the batch width.
    for chosen in (tokenizer, left_tokenizer):
        features = features_of(
            chosen, sentences, labels=lambda index, length: list(range(max(length - 2, 0)))
        )
        expected = transformers.DataCollatorForTokenClassification(chosen)(features)
        result = fastpad.DataCollatorForTokenClassification(chosen)(features)
        assert_batches_equal(result, expected)
    features = features_of(tokenizer, sentences, labels=lambda index, length: [1] * (length + 1))
    with pytest.raises(ValueError):
        transformers.DataCollatorForTokenClassification(tokenizer)(features)
    with pytest.raises(ValueError):
        fastpad.DataCollatorForTokenClassification(tokenizer)(features)


def test_token_classification_scalar_labels_raise(tokenizer: Any, sentences: list[str]) -> None:
    features = features_of(tokenizer, sentences, label=lambda index, length: index)
    with pytest.raises(TypeError):
        transformers.DataCollatorForTokenClassification(tokenizer)(features)
    with pytest.raises(TypeError, match="example 0: 'label' must be a sequence"):
        fastpad.DataCollatorForTokenClassification(tokenizer)(features)


def test_token_classification_without_labels(tokenizer: Any, sentences: list[str]) -> None:
    features = features_of(tokenizer, sentences)
    expected = transformers.DataCollatorForTokenClassification(tokenizer)(features)
    assert_batches_equal(fastpad.DataCollatorForTokenClassification(tokenizer)(features), expected)


@pytest.mark.parametrize(
    "collator_type", [fastpad.DataCollatorWithPadding, fastpad.DataCollatorForTokenClassification]
)
def test_picklable(collator_type: Any, tokenizer: Any, sentences: list[str]) -> None:
    collator = collator_type(tokenizer, pad_to_multiple_of=8)
    clone = pickle.loads(pickle.dumps(collator))
    assert clone.pad_to_multiple_of == 8
    features = features_of(tokenizer, sentences, labels=lambda index, length: [1] * length)
    if collator_type is fastpad.DataCollatorWithPadding:
        features = features_of(tokenizer, sentences, label=lambda index, length: index)
    assert_batches_equal(clone(features), collator(features))


def test_bad_features(tokenizer: Any, sentences: list[str]) -> None:
    collator = fastpad.DataCollatorWithPadding(tokenizer)
    features = features_of(tokenizer, sentences[:4])
    with pytest.raises(ValueError, match="empty"):
        collator([])
    with pytest.raises(TypeError, match="example 1"):
        collator([features[0], [1, 2]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="example 2 has no field 'token_type_ids'"):
        collator([*features[:2], {"input_ids": [1], "attention_mask": [1]}])
    with pytest.raises(ValueError, match="input_ids"):
        collator([{"label": 1}, {"label": 0}])
    with pytest.raises(ValueError, match="'text'"):
        collator([{**feature, "text": sentences[0]} for feature in features])
    with pytest.raises(ValueError, match="return_tensors"):
        fastpad.DataCollatorWithPadding(tokenizer, return_tensors="tf")(features)
    with pytest.raises(TypeError):
        collator(
            [{**feature, "input_ids": [None] * len(feature["input_ids"])} for feature in features]
        )


def loader_batches(loader: DataLoader[Any]) -> Iterator[Any]:
    yield from loader


# Python >= 3.12 warns when a multi-threaded process forks (torch's thread pool counts); the
# workers below only unpickle and collate, which is safe, and the default start method stays.
fork_warning = pytest.mark.filterwarnings(
    r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\):DeprecationWarning"
)


@fork_warning
def test_dataloader_with_two_workers(tokenizer: Any, sentences: list[str]) -> None:
    features = features_of(tokenizer, sentences, label=lambda index, length: index % 2)
    dataset = FeatureDataset(features)
    loader = DataLoader(
        dataset,
        batch_size=16,
        num_workers=2,
        collate_fn=fastpad.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
    )
    expected_collator = transformers.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    batches = list(loader_batches(loader))
    assert len(batches) == len(features) // 16
    for number, batch in enumerate(batches):
        expected = expected_collator(features[number * 16 : (number + 1) * 16])
        assert_batches_equal(batch, expected)


@fork_warning
def test_workers_never_pin_by_default() -> None:
    loader = DataLoader(FeatureDataset([{}] * 2), batch_size=1, num_workers=1,
                        collate_fn=WorkerPinDefault())  # fmt: skip
    assert [batch for batch in loader] == [[False], [False]]


@pytest.mark.filterwarnings(
    "ignore:'pin_memory' argument is set as true but no accelerator is found:UserWarning"
)
def test_dataloader_pin_memory(tokenizer: Any, sentences: list[str]) -> None:
    """pin_memory=True with the collator in the main process: same values, no second copy."""
    recording = RecordingCollator(fastpad.DataCollatorForTokenClassification(tokenizer))
    features = features_of(tokenizer, sentences, labels=lambda index, length: [index] * length)
    loader = DataLoader(FeatureDataset(features), batch_size=16, pin_memory=True,
                        collate_fn=recording)  # fmt: skip
    expected_collator = transformers.DataCollatorForTokenClassification(tokenizer)
    for number, batch in enumerate(loader_batches(loader)):
        assert_batches_equal(batch, expected_collator(features[number * 16 : (number + 1) * 16]))
        if torch.cuda.is_available():
            # The collator pinned in the main process, so the loader's pinning kept the tensors.
            assert all(value.is_pinned() for value in batch.values())
            assert {key: value.data_ptr() for key, value in batch.items()} == (
                recording.pointers[number]
            )
