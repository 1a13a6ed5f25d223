"""fastpad: ragged batches of token ids to padded tensors and attention masks, in one C++ pass.

>>> import fastpad
>>> batch = fastpad.pad([[101, 7592, 102], [101, 102]], pad_token_id=0, return_tensors="np")
>>> batch["attention_mask"].tolist()
[[1, 1, 1], [1, 1, 0]]
"""

from __future__ import annotations

try:
    from . import _core  # noqa: F401  (imported first: a missing build fails here, clearly)
except ImportError as error:  # pragma: no cover - only without a built extension
    raise ImportError(
        "fastpad's C++ extension (fastpad._core) is not built. Install the package with "
        "`pip install .` (or `pip install --no-build-isolation -Ceditable.rebuild=true -ve .` "
        "for development) from the repository root."
    ) from error

from . import reference
from ._batch import Batch
from ._cache import CacheInfo, cache_info, clear_cache, set_cache_limit
from ._collator import DataCollatorForTokenClassification, DataCollatorWithPadding
from ._encode import encode
from ._encode_overlapped import encode_overlapped
from ._flatten import flatten
from ._packer import Packer, PackerStats
from ._pad import default_threads, pad
from ._patch_transformers import (
    PatchWarning,
    patch_transformers,
    transformers_patched,
    unpatch_transformers,
)
from ._plan import plan_batches
from ._prefetch import Prefetcher, PrefetchStats, prefetch
from ._ragged import Ragged
from ._token_batches import TokenBatches, token_batches
from ._windows import windows

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "CacheInfo",
    "DataCollatorForTokenClassification",
    "DataCollatorWithPadding",
    "Packer",
    "PackerStats",
    "PatchWarning",
    "PrefetchStats",
    "Prefetcher",
    "Ragged",
    "TokenBatches",
    "__version__",
    "cache_info",
    "clear_cache",
    "default_threads",
    "encode",
    "encode_overlapped",
    "flatten",
    "pad",
    "patch_transformers",
    "plan_batches",
    "prefetch",
    "reference",
    "set_cache_limit",
    "token_batches",
    "transformers_patched",
    "unpatch_transformers",
    "windows",
]
