"""The options of `fastpad.pad` are declared once: its signature and `resolve_options` agree."""

from __future__ import annotations

import inspect

import pytest

import fastpad
from fastpad._options import PAD_KEYWORDS, resolve_options


def test_pad_keywords_are_the_signature_of_pad() -> None:
    parameters = inspect.signature(fastpad.pad).parameters
    assert set(parameters) - {"encoded_inputs"} == PAD_KEYWORDS


def test_resolve_options_takes_pad_options_with_pad_defaults() -> None:
    """resolve_options fills in what a caller leaves out exactly as `fastpad.pad` would."""
    pad_parameters = inspect.signature(fastpad.pad).parameters
    resolve_parameters = inspect.signature(resolve_options).parameters
    assert set(resolve_parameters) - {"fields"} == PAD_KEYWORDS - {"threads"}
    for name in PAD_KEYWORDS - {"threads"}:
        assert resolve_parameters[name].default == pad_parameters[name].default, name


def test_reference_rejects_unknown_keywords() -> None:
    with pytest.raises(TypeError, match=r"fastpad.reference.pad: .*\['threads'\]"):
        fastpad.reference.pad([[1]], pad_token_id=0, threads=2)
    with pytest.raises(TypeError, match=r"\['paddding'\]"):
        fastpad.reference.pad([[1]], pad_token_id=0, paddding=True)
