"""Installing and removing the wrappers, and the public callables that do it.

`patch_transformers` (with its statistics), `unpatch_transformers` and `transformers_patched`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .collators import wrap_flattening, wrap_token_classification
from .common import (
    CALL,
    COUNTERS,
    ENTRY_POINTS,
    FALLBACK_REASONS,
    FLATTENING,
    PAD,
    SEQ2SEQ,
    TOKEN_CLASSIFICATION,
    PatchWarning,
    Transformers,
    load_transformers,
)
from .fingerprints import unrecognised, validated, validated_releases
from .seq2seq import wrap_seq2seq
from .tokenizer_call import CALL_METHODS, call_methods, wrap_call
from .tokenizer_pad import PAD_METHODS, wrap_pad

__all__ = ["patch_transformers", "transformers_patched", "unpatch_transformers"]


@dataclass
class _Installed:
    owner: type
    name: str
    original: Any  # the owner's own attribute before patching
    wrapper: Any


_LOG = logging.getLogger("fastpad")
_LOCK = threading.RLock()
_INSTALLED: dict[str, list[_Installed]] = {}
_WARNED: set[str] = set()
_GLOBAL = False  # patch_transformers() was called (and no unpatch_transformers() since)
_SCOPES = 0  # transformers_patched() blocks currently open


def _targets(entry: str, tf: Transformers) -> list[tuple[type, str, Callable[[Any], Any]]]:
    if entry == PAD:
        return [(tf.base, "pad", wrap_pad)]
    if entry == CALL:
        return [(tf.base, "__call__", wrap_call)]
    if entry == TOKEN_CLASSIFICATION:
        return [
            (tf.token_classification, "torch_call", lambda f: wrap_token_classification(f, "pt")),
            (tf.token_classification, "numpy_call", lambda f: wrap_token_classification(f, "np")),
        ]
    if entry == SEQ2SEQ:
        return [(tf.seq2seq, "__call__", wrap_seq2seq)]
    return [(tf.flattening, "__call__", wrap_flattening)]


def _warn_once(entry: str, message: str) -> None:
    if entry not in _WARNED:
        _WARNED.add(entry)
        warnings.warn(
            f"fastpad.patch_transformers: {entry} left unpatched: {message}",
            PatchWarning,
            stacklevel=4,
        )


def _log_patched(version: str, status: dict[str, bool], newly: list[str]) -> None:
    """One INFO record on the "fastpad" logger when entry points were newly patched: which are
    patched and which not, and whether this release is one the matrix ran or only has functions
    that match validated forms (a newer release is patched where they match)."""
    if not newly or not _LOG.isEnabledFor(logging.INFO):
        return
    releases = {
        release for forms in validated().values() for form in forms for release in form["releases"]
    }
    how = (
        "a validated release"
        if version in releases
        else "not itself a validated release: patched where its functions match a validated form"
    )
    patched = [entry for entry, on in status.items() if on]
    unpatched = [entry for entry, on in status.items() if not on]
    _LOG.info(
        "fastpad.patch_transformers: transformers %s (%s): patched %s; unpatched %s",
        version,
        how,
        ", ".join(patched) or "none",
        ", ".join(unpatched) or "none",
    )


def _install() -> dict[str, bool]:
    tf = load_transformers()
    if tf is None:
        import transformers

        for entry in ENTRY_POINTS:
            _warn_once(
                entry,
                f"transformers {transformers.__version__} is not laid out as the releases "
                f"fastpad validated ({validated_releases()})",
            )
        return dict.fromkeys(ENTRY_POINTS, False)
    status: dict[str, bool] = {}
    newly: list[str] = []
    for entry in ENTRY_POINTS:
        if entry in _INSTALLED:
            status[entry] = True
            continue
        if entry == FLATTENING and tf.flattening is None:
            _warn_once(entry, f"transformers {tf.version} has no DataCollatorWithFlattening")
            status[entry] = False
            continue
        unknown = unrecognised(entry, tf)
        if unknown:
            _warn_once(
                entry,
                f"transformers {tf.version}'s {', '.join(unknown)} differ from every release "
                f"fastpad validated for it ({validated_releases(entry)}; "
                "docs/transformers-support.md)",
            )
            status[entry] = False
            continue
        # The methods a tokenizer must not override for the fast path (recognised: present).
        if entry == PAD and not PAD_METHODS:
            for name in ("_pad", "_get_padding_truncation_strategies"):
                PAD_METHODS[name] = tf.base.__dict__[name]
        if entry == CALL and not CALL_METHODS:
            CALL_METHODS.update(call_methods(tf))
        try:
            wrapped = [
                (owner, name, owner.__dict__[name], wrap(owner.__dict__[name]))
                for owner, name, wrap in _targets(entry, tf)
            ]
        except Exception as error:  # a validated form has what the wrappers read
            _warn_once(entry, f"transformers {tf.version}: {error}")
            status[entry] = False
            continue
        installed = []
        for owner, name, original, wrapper in wrapped:
            setattr(owner, name, wrapper)
            installed.append(_Installed(owner, name, original, wrapper))
        _INSTALLED[entry] = installed
        status[entry] = True
        newly.append(entry)
    _log_patched(tf.version, status, newly)
    return status


def _uninstall() -> None:
    for entry in list(_INSTALLED):
        for item in _INSTALLED.pop(entry):
            # Restore only our own wrapper: a later patch by someone else stays in place.
            if item.owner.__dict__.get(item.name) is item.wrapper:
                setattr(item.owner, item.name, item.original)


class _PatchTransformers:
    """Route transformers' padding through fastpad, value for value: ``patch_transformers()``.

    Call it once (``fastpad.patch_transformers()``) and existing code that pads with
    ``tokenizer.pad``, ``tokenizer(..., padding=True, return_tensors="pt")``,
    ``DataCollatorWithPadding``, ``DataCollatorForTokenClassification`` or
    ``DataCollatorWithFlattening`` gets the same tensors from fastpad's C++ core. A call the
    fast path does not reproduce exactly runs transformers' original code. Undo with
    `fastpad.unpatch_transformers`; ``patch_transformers.stats()`` counts fast and fallback
    calls per entry point (with the reasons, `REASONS`).
    """

    #: Why a call ran transformers' original code: reason -> explanation (as `stats` counts).
    REASONS = FALLBACK_REASONS

    def __call__(self) -> dict[str, bool]:
        """Route transformers' padding paths through fastpad, with the same results.

        Patches ``PreTrainedTokenizerBase.pad`` (so also ``DataCollatorWithPadding``), the
        tokenizer call with ``return_tensors="pt"``/``"np"``,
        ``DataCollatorForTokenClassification``, ``DataCollatorWithFlattening`` and
        ``DataCollatorForSeq2Seq``. Calls the fast paths do not reproduce exactly run
        transformers' original code. Idempotent and thread-safe; undone by
        `unpatch_transformers`.

        Returns
        -------
        dict of str to bool
            Per entry point (``"tokenizer.pad"``, ``"tokenizer.__call__"``, the collators),
            whether it is patched. An entry point is patched wherever the transformers functions
            it reproduces match a validated form, also on a release newer than those validated
            (e.g. 5.25); one that matches none stays unpatched, with one `PatchWarning` naming
            it and the functions that differ. Patching logs one INFO record on the ``"fastpad"``
            logger: the transformers release, whether the matrix validated that release itself,
            and the entry points patched and unpatched.

        Raises
        ------
        ImportError
            transformers is not installed.

        Examples
        --------
        >>> import fastpad
        >>> fastpad.patch_transformers()  # doctest: +SKIP
        {'tokenizer.pad': True, 'tokenizer.__call__': True, ...}
        >>> fastpad.patch_transformers.stats()["tokenizer.pad"]  # doctest: +SKIP
        {'fast': 0, 'fallback': 0, 'reasons': {}}
        """
        global _GLOBAL
        with _LOCK:
            status = _install()
            _GLOBAL = True
            return status

    def stats(self) -> dict[str, dict[str, Any]]:
        """Calls that took the fast path and calls that fell back, by reason.

        Returns
        -------
        dict
            ``{entry point: {"fast": n, "fallback": n, "reasons": {reason: n}}}`` for
            ``tokenizer.pad``, ``tokenizer.__call__``, ``DataCollatorForTokenClassification``,
            ``DataCollatorWithFlattening`` and ``DataCollatorForSeq2Seq``; the reasons are
            those of `FALLBACK_REASONS`.
        """
        return COUNTERS.snapshot()

    def reset_stats(self) -> None:
        """Set every count of `stats` back to zero."""
        COUNTERS.reset()

    def is_patched(self) -> dict[str, bool]:
        """Per entry point, whether it is patched now."""
        with _LOCK:
            return {entry: entry in _INSTALLED for entry in ENTRY_POINTS}


patch_transformers = _PatchTransformers()


def unpatch_transformers() -> None:
    """Restore every attribute `patch_transformers` replaced to its original object.

    Idempotent and thread-safe; also ends the effect of open `transformers_patched` blocks.
    Does nothing when transformers was never patched.
    """
    global _GLOBAL, _SCOPES
    with _LOCK:
        _GLOBAL = False
        _SCOPES = 0
        _uninstall()


@contextlib.contextmanager
def transformers_patched() -> Iterator[dict[str, bool]]:
    """Patch transformers for the duration of a ``with`` block.

    Blocks nest and may overlap across threads: transformers stays patched while any block is
    open or `patch_transformers` was called.

    Yields
    ------
    dict of str to bool
        Per entry point, whether it is patched (as `patch_transformers` returns).

    Examples
    --------
    >>> with fastpad.transformers_patched():  # doctest: +SKIP
    ...     batch = tokenizer.pad(features, return_tensors="pt")
    """
    global _SCOPES
    with _LOCK:
        status = _install()
        _SCOPES += 1
    try:
        yield status
    finally:
        with _LOCK:
            if _SCOPES > 0:
                _SCOPES -= 1
            if _SCOPES == 0 and not _GLOBAL:
                _uninstall()
