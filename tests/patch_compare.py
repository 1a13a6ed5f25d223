"""What the patch tests observe of one call: its outcome, warnings and transformers log records.

Shared by tests/test_patch_transformers.py and tests/test_patch_seq2seq.py, which run each call
unpatched and patched and compare the two observations.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from typing import Any


class Records(logging.Handler):
    """The (level, message) of every record logged to the handler."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelname, record.getMessage()))


def observe(
    call: Callable[[], Any], tokenizers: Iterable[Any], silenced: Iterable[str] = ()
) -> dict[str, Any]:
    """`call()`'s outcome (value, or exception type and message), warnings and transformers
    log records. The tokenizers' once-only warnings are cleared first, so that they fire in
    both runs of a comparison; those named in `silenced` are marked as already given."""
    for tokenizer in tokenizers:
        tokenizer.deprecation_warnings.clear()
        for key in silenced:
            tokenizer.deprecation_warnings[key] = True
    handler = Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome: tuple[Any, ...] = ("value", call())
            except Exception as error:
                outcome = ("error", type(error), str(error))
    finally:
        logger.removeHandler(handler)
    return {
        "outcome": outcome,
        "warnings": [(item.category, str(item.message)) for item in caught],
        "logs": handler.messages,
    }
