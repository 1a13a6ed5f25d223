"""Ray Data and Ray Train integration: tokenize in workers, pad once at the consumer.

Rows travel through a Ray Data pipeline unpadded, as Arrow ``list<int32>`` columns, and are
padded once where the batch is consumed (``iter_torch_batches``, or a Ray Train worker):

>>> import ray, fastpad.ray  # doctest: +SKIP
>>> ds = ray.data.read_parquet("texts.parquet")  # doctest: +SKIP
>>> ds = ds.map_batches(fastpad.ray.Tokenize(tokenizer), batch_format="pyarrow")  # doctest: +SKIP
>>> for batch in ds.iter_torch_batches(  # doctest: +SKIP
...     batch_size=256, collate_fn=fastpad.ray.Collate(tokenizer)
... ):
...     model(**batch)

An Arrow list column already is a `fastpad.Ragged` (flat values plus offsets), so `Collate`
reads it without copying and the C++ core writes the padded tensors directly.

fastpad.ray needs Ray Data (``pip install 'fastpad[ray]'``); ``import fastpad`` never imports it.

Layout: `_collate` (`Collate`), `_tokenize` (`Tokenize`), `_local` (`init_ray`: a local Ray kept
on 127.0.0.1), `_common` (what both share: Arrow batches, tokenizers given by name and loaded once
per process).
"""

from __future__ import annotations

try:
    # Here, not only in _collate: every import of fastpad.ray runs this module, not _collate.
    from ray.data.collate_fn import ArrowBatchCollateFn  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess without Ray
    raise ImportError(
        "fastpad.ray needs Ray Data, which is not installed: `pip install 'fastpad[ray]'` "
        "(or `pip install 'ray[data]>=2.47'`)"
    ) from error

from ._collate import Collate
from ._local import init_ray
from ._tokenize import Tokenize

__all__ = ["Collate", "Tokenize", "init_ray"]

# The public path in reprs and pickles (which name a class by module and name), whatever private
# module defines the class.
Collate.__module__ = Tokenize.__module__ = __name__
