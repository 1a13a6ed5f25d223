"""Builds arbitrary Python objects from fuzzer bytes for the fastpad harnesses.

Shared by `fuzz_core.py` (the binding's argument parsing) and `fuzz_pad.py` (public entry points).
Every builder takes an `atheris.FuzzedDataProvider`-like object (`ConsumeIntInRange`,
`ConsumeBool`, `ConsumeInt`, `ConsumeUnicodeNoSurrogates`) so it can also be driven by
`random.Random` in a plain loop (`ByteSource`), without atheris.
"""

from __future__ import annotations

import array
import random
from typing import Any

import numpy as np

# Exceptions fastpad may raise on bad input; anything else (SystemError, RuntimeError,
# AttributeError, a crash) is a finding.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    OverflowError,
    MemoryError,
)

INT_EDGES = [
    0,
    1,
    -1,
    2,
    7,
    100,
    101,
    102,
    127,
    128,
    255,
    256,
    -128,
    -129,
    2**15 - 1,
    2**15,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    2**100,
]
DTYPES = [
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "bool",
    "float32",
    "float64",
    ">i8",
    ">i4",
    "object",
]


class ByteSource:
    """A FuzzedDataProvider stand-in driven by `random.Random` (for runs without atheris)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def ConsumeIntInRange(self, low: int, high: int) -> int:
        return self._random.randint(low, high)

    def ConsumeBool(self) -> bool:
        return self._random.random() < 0.5

    def ConsumeInt(self, size: int) -> int:
        bits = 8 * size
        return self._random.randint(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)

    def ConsumeUnicodeNoSurrogates(self, count: int) -> str:
        return "".join(chr(self._random.randint(32, 0x2FF)) for _ in range(count))


def pick(data: Any, choices: list[Any]) -> Any:
    return choices[data.ConsumeIntInRange(0, len(choices) - 1)]


def small_int(data: Any) -> int:
    """Mostly small token ids, sometimes an edge value."""
    if data.ConsumeIntInRange(0, 7) == 0:
        return int(pick(data, INT_EDGES))
    return data.ConsumeIntInRange(0, 30)


def token(data: Any) -> Any:
    """A token: usually an int, sometimes something that is not a valid token id."""
    kind = data.ConsumeIntInRange(0, 40)
    if kind <= 30:
        return small_int(data)
    return pick(
        data,
        [
            True,
            1.0,
            None,
            "1",
            b"1",
            [1],
            (),
            np.int64(5),
            np.int32(-3),
            np.uint64(2**64 - 1),
            np.bool_(True),
            np.float32(2.0),
            np.array(4),
            np.zeros(2, np.int64),
            float("nan"),
        ],
    )


def int_array(data: Any, count: int) -> Any:
    """A 1-D array of `count` values in an arbitrary dtype, maybe strided or read-only."""
    dtype = pick(data, DTYPES)
    values = [small_int(data) for _ in range(count)]
    strided = data.ConsumeIntInRange(0, 7) == 0
    try:
        base = np.array(values * (2 if strided else 1), dtype=object).astype(dtype)
    except (OverflowError, ValueError, TypeError):
        base = np.array([value % 100 for value in values] * (2 if strided else 1), dtype=dtype)
    result = base[::2] if strided else base
    if data.ConsumeIntInRange(0, 7) == 0:
        result.flags.writeable = False
    return result


def row(data: Any) -> Any:
    """One row: a list/tuple of tokens, a 1-D array, a buffer-protocol object, or junk."""
    length = data.ConsumeIntInRange(0, 6)
    kind = data.ConsumeIntInRange(0, 12)
    if kind <= 6:
        tokens = [
            small_int(data) if data.ConsumeIntInRange(0, 9) else token(data) for _ in range(length)
        ]
        return tuple(tokens) if kind == 6 else tokens
    if kind <= 9:
        return int_array(data, length)
    if kind == 10:
        code = pick(data, ["b", "B", "h", "i", "l", "q", "Q", "d"])
        try:
            return array.array(code, [abs(small_int(data)) % 100 for _ in range(length)])
        except OverflowError:
            return array.array(code)
    if kind == 11:
        return pick(
            data,
            [
                bytes(length),
                bytearray(length),
                memoryview(bytes(length)),
                np.zeros((length, 2), np.int64),
                np.int64(3),
                "abc",
                None,
                5,
                {"input_ids": [1]},
                range(length),
            ],
        )
    return [row(data) for _ in range(min(length, 2))]  # nested one level too deep


def ragged_parts(data: Any) -> tuple[Any, Any]:
    """(values, offsets) for a flat ragged field: usually valid, sometimes broken."""
    rows = data.ConsumeIntInRange(0, 5)
    lengths = [data.ConsumeIntInRange(0, 5) for _ in range(rows)]
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + length)
    values = int_array(data, offsets[-1])
    mutation = data.ConsumeIntInRange(0, 9)
    if mutation == 1 and len(offsets) > 1:
        offsets[data.ConsumeIntInRange(0, len(offsets) - 1)] = small_int(data)
    elif mutation == 2:
        offsets[-1] += data.ConsumeIntInRange(1, 3)
    elif mutation == 3:
        offsets = []
    offset_dtype = pick(data, ["int64", "int32", "uint32", "uint64", "int64", "int16", "float64"])
    try:
        offset_array = np.array(offsets, dtype=object).astype(offset_dtype)
    except (OverflowError, ValueError, TypeError):
        offset_array = np.array([value % 2**40 for value in offsets], dtype=np.int64)
    if data.ConsumeIntInRange(0, 15) == 0:
        offset_array = np.array([offset_array, offset_array])  # 2-D
    return values, offset_array
