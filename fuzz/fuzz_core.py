"""Coverage-guided fuzzing of the binding's argument parsing: `fastpad._core.measure` / `pack`.

Arbitrary field specs (lists of rows of any objects, flat values + offsets of any dtype, broken
tuples), outputs (wrong dtype, shape, strides, read-only, junk), pad values, lengths, widths,
limits and thread counts. The only acceptable outcomes are a result or TypeError / ValueError /
OverflowError / MemoryError; a crash, a sanitizer report or any other exception is a finding.
When `measure` succeeds and `pack` is called consistently, the outputs are checked against a
pure-Python model of the placement.

    python fuzz/fuzz_core.py -max_total_time=300 fuzz/corpus/core   # local, minutes
    python fuzz/fuzz_core.py -atheris_runs=20000                    # smoke (.ci/fuzz.sh)
    python fuzz/fuzz_core.py --random 5000                          # without atheris
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

try:
    import atheris
except ImportError:  # the --random mode needs only numpy
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        import inputs as gen
else:
    import inputs as gen

import contextlib

from fastpad import _core  # the extension: C++, not instrumented by atheris

OUT_DTYPES = ["int64", "int32", "int8", "bool", "uint8", "int16", "uint64", "float64", "object"]


def field_spec(data: Any, name: str) -> Any:
    kind = data.ConsumeIntInRange(0, 12)
    if kind <= 5:
        rows = [gen.row(data) for _ in range(data.ConsumeIntInRange(0, 5))]
        return (name, 0, tuple(rows) if kind == 5 else rows)
    if kind <= 10:
        values, offsets = gen.ragged_parts(data)
        return (name, 1, values, offsets)
    return gen.pick(
        data,
        [
            (name,),
            (name, 0),
            (name, 1, np.zeros(3, np.int64)),
            (name, 2, [[1]]),
            (name, -1, [[1]]),
            (name, "0", [[1]]),
            (name, 0, [[1]], "extra"),
            (1, 0, [[1]]),
            (None, 1, np.zeros(1, np.int64), np.zeros(1, np.int64)),
            (name, 0, "rows"),
            (name, 0, {"a": 1}),
            (name, 1, [1, 2], [0, 2]),
            (name, 1, np.zeros(2, np.float32), np.array([0, 2])),
            [name, 0, [[1]]],
            name,
            None,
            5,
        ],
    )


def output(data: Any, rows: int, width: int) -> Any:
    dtype = gen.pick(data, OUT_DTYPES)
    kind = data.ConsumeIntInRange(0, 12)
    shape = (max(rows, 0), min(max(width, 0), 16))  # a huge width gets a mismatched output
    if kind == 9:
        shape = (shape[0] + 1, shape[1])
    elif kind == 10:
        shape = (shape[0], shape[1] + 1)
    try:
        array = np.zeros(shape, dtype=dtype)
    except (ValueError, MemoryError):
        return None
    if kind == 11:
        array = np.zeros((shape[0], shape[1] * 2), dtype=dtype)[:, ::2]
    elif kind == 12:
        array.flags.writeable = False
    elif kind == 8:
        return gen.pick(data, [None, [0] * shape[1], bytearray(8), array.T, array.reshape(-1)])
    return array


def expected(
    spec: Any, lengths: Any, width: int, keep: int, pad_left: bool, truncate_left: bool, pad: int
) -> list[list[int]]:
    name, kind = spec[0], spec[1]
    if kind == 0:
        rows = [[int(value) for value in row] for row in spec[2]]
    else:
        values, offsets = spec[2], spec[3]
        rows = [
            [int(v) for v in values[int(offsets[r]) : int(offsets[r + 1])]]
            for r in range(len(offsets) - 1)
        ]
    result = []
    for row in rows:
        count = min(len(row), keep) if keep >= 0 else len(row)
        kept = row[len(row) - count :] if truncate_left else row[:count]
        padding = [pad] * (width - count)
        result.append(padding + kept if pad_left else kept + padding)
    del name, lengths
    return result


def one_input(data: Any) -> None:
    specs: Any = [
        field_spec(data, gen.pick(data, ["input_ids", "labels", "x"]))
        for _ in range(data.ConsumeIntInRange(0, 3))
    ]
    if data.ConsumeIntInRange(0, 20) == 0:
        specs = gen.pick(data, [tuple(specs), None, "fields", 3])
    padding = gen.pick(data, [0, 0, 1, 2, 3, -1])
    max_length = gen.pick(data, [-1, -1, 0, 1, 2, 3, 5, -2, 2**62, 2**63 - 1])
    truncate = data.ConsumeBool()
    multiple_of = gen.pick(data, [0, 0, 1, 2, 3, 8, -1, 2**62, 2**63 - 1])
    try:
        lengths, width = _core.measure(specs, padding, max_length, truncate, multiple_of)
    except gen.EXPECTED_ERRORS:
        lengths, width = None, None
    if lengths is not None:
        assert width >= 0 and all(int(n) >= 0 for n in lengths), (width, lengths)
        if len(lengths) * width > 1 << 20 or width > 1 << 20:
            with contextlib.suppress(MemoryError):
                _core.checked_cells(len(lengths), width, 8)
            return  # too large to allocate here; sizes are tested in tests/test_huge.py
    consistent = lengths is not None and data.ConsumeIntInRange(0, 3) != 0
    if not consistent:
        rows = data.ConsumeIntInRange(0, 4)
        lengths = np.array([gen.small_int(data) % 9 for _ in range(rows)], dtype=np.int64)
        if data.ConsumeIntInRange(0, 9) == 0:
            lengths = gen.pick(data, [lengths.astype(np.int32), [1, 2], None, lengths[::-1]])
        width = gen.pick(data, [0, 1, 2, 3, 5, 8, -1, 2**31])
    rows = len(lengths) if hasattr(lengths, "__len__") else 0
    keep = max_length if truncate else -1
    if not consistent:
        keep = gen.pick(data, [-1, 0, 1, 2, 5, -5])
    pad_left = data.ConsumeBool()
    truncate_left = data.ConsumeBool()
    fields = specs if isinstance(specs, list) else []
    if consistent:
        outputs = [
            np.full((rows, width), -7, dtype=gen.pick(data, ["int64", "int32"])) for _ in fields
        ]
        pad_values = [gen.pick(data, [0, -100, 1, 3]) for _ in fields]
        mask = np.full((rows, width), 9, dtype=gen.pick(data, ["int64", "int8", "bool"]))
    else:
        extra = gen.pick(data, [0, 0, 1, -1])
        outputs = [output(data, rows, width) for _ in range(len(fields) + extra)]
        extra = gen.pick(data, [0, 0, -1])
        pad_values = [gen.pick(data, gen.INT_EDGES) for _ in range(len(fields) + extra)]
        mask = output(data, rows, width) if data.ConsumeBool() else None
    threads = gen.pick(data, [1, 1, 2, 3, 8, 0, -1, 64])
    try:
        _core.pack(
            fields,
            outputs,
            pad_values,
            lengths,
            mask,
            width,
            keep,
            pad_left,
            truncate_left,
            threads,
        )
    except gen.EXPECTED_ERRORS:
        return
    if not consistent:
        return
    for spec, out, pad in zip(fields, outputs, pad_values, strict=True):
        try:
            want = expected(spec, lengths, width, keep, pad_left, truncate_left, pad)
        except (TypeError, ValueError, OverflowError):
            continue  # rows that only the C++ side can read (buffers), checked by the tests
        if all(isinstance(row, list | tuple) for row in spec[2]) if spec[1] == 0 else True:
            assert out.tolist() == want, (spec, out.tolist(), want)
    if mask is not None:
        want_mask = expected(
            ("mask", 0, [[1] * int(n) for n in lengths]),
            lengths,
            width,
            keep,
            pad_left,
            truncate_left,
            0,
        )
        assert mask.astype(np.int64).tolist() == want_mask


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--random":
        for seed in range(int(sys.argv[2])):
            one_input(gen.ByteSource(seed))
        print(f"fuzz_core: {sys.argv[2]} random inputs, no finding")
        return
    assert atheris is not None, "pip install atheris (or use --random N)"
    atheris.Setup(sys.argv, lambda raw: one_input(atheris.FuzzedDataProvider(raw)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
