"""`fastpad.patch_transformers()`: transformers' own padding paths through fastpad, same results.

One call at start-up replaces five methods of transformers' classes with wrappers:

- ``PreTrainedTokenizerBase.pad`` (every tokenizer; ``DataCollatorWithPadding`` and the other
  collators that call ``tokenizer.pad`` benefit through it): the rows are packed by the C++ core
  instead of padded row by row in Python and converted by ``torch.tensor``.
- ``PreTrainedTokenizerBase.__call__`` with ``return_tensors="pt"``/``"np"`` on fast
  (``TokenizersBackend``) tokenizers: the original call runs with ``return_tensors=None`` (same
  tokenization, truncation, padding and ``encodings``), then the C++ core turns its rectangular
  lists of ids into the tensors; any other value is converted by transformers' own code.
- ``DataCollatorForTokenClassification.torch_call`` / ``numpy_call``: the labels are padded by the
  core.
- ``DataCollatorWithFlattening.__call__``: `fastpad.flatten`.
- ``DataCollatorForSeq2Seq.__call__``: the labels are padded by the core; ``tokenizer.pad`` (patched
  or not) and the model's ``prepare_decoder_input_ids_from_labels`` are called as the original
  calls them.

Exact or not at all: every wrapper first checks the call against an allow-list of argument values,
input types and tokenizer classes known to give the same result (type, keys and their order,
dtypes, shapes, values) as transformers. Anything else runs the original method unchanged, and so
does a call whose fast path raises: never a different result, never a new exception. Each entry
point is patched only when the transformers functions it reproduces are, together, a form fastpad
validated (their sources, docstrings aside, equal those of a release on which
benchmarks/transformers_matrix.py found the fast path exact: `validated.json`, 4.40-5.24);
otherwise it warns once and leaves that entry point alone.

The package, one module per job:

- `common`: fallback reasons, entry-point names, statistics, transformers' objects, and
  `wrap_exact`, the exact-or-original wrapper of ``tokenizer.pad`` and the collators (the
  tokenizer call has its own in `tokenizer_call`: it runs the original call first);
- `convert`: checks and conversions the fast paths share;
- `fingerprints`: which transformers functions each entry point reproduces (per layout family:
  4.x, 5.x), their fingerprints, and the check against the validated forms (`validated.json`,
  data written by benchmarks/transformers_matrix.py);
- `tokenizer_pad`, `tokenizer_call`, `collators`, `seq2seq`: the fast paths;
- `install`: patching and unpatching, the public callables.
"""

from __future__ import annotations

from .common import FALLBACK_REASONS, PatchWarning
from .install import patch_transformers, transformers_patched, unpatch_transformers

__all__ = [
    "FALLBACK_REASONS",
    "PatchWarning",
    "patch_transformers",
    "transformers_patched",
    "unpatch_transformers",
]
