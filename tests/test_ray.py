"""fastpad.ray.Collate and Tokenize called on Arrow tables in this process (no Ray cluster).

The Ray cluster tests (tests/test_ray_cluster.py) run the same objects in Ray workers; here
their results are checked against the tokenizer's padded call on real tokenizer output and
against `fastpad.reference` on random batches, with every Arrow list layout and the bad-input
table.
"""

from __future__ import annotations

import importlib
import itertools
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import assert_batches_equal, tokenizer_path
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpad

pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
torch = pytest.importorskip("torch")

import fastpad.ray  # noqa: E402  (after the skips: needs Ray)

Collate = fastpad.ray.Collate
Tokenize = fastpad.ray.Tokenize


def list_array(rows: list[list[int]], layout: str, value_type: Any) -> Any:
    if layout == "fixed":
        width = len(rows[0]) if rows else 0
        flat = pa.array([token for row in rows for token in row], type=value_type)
        return pa.FixedSizeListArray.from_arrays(flat, width)
    kind = pa.large_list(value_type) if layout == "large" else pa.list_(value_type)
    return pa.array(rows, type=kind)


def chunked(array: Any, cuts: list[int]) -> Any:
    """`array` as a ChunkedArray cut at `cuts` (sorted row indices)."""
    bounds = [0, *cuts, len(array)]
    return pa.chunked_array(
        [array.slice(start, stop - start) for start, stop in itertools.pairwise(bounds)],
        type=array.type,
    )


# -- parity with the tokenizer's padded call --------------------------------------------------


@pytest.fixture(scope="module")
def tokenized(tokenizer: Any, sentences: list[str]) -> Any:
    texts = list(dict.fromkeys(sentences))
    table = pa.table(
        {"label": list(range(len(texts))), "text": texts, "source": ["x"] * len(texts)}
    )
    return Tokenize(tokenizer)(table), texts


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"padding_side": "left"},
        {"pad_to_multiple_of": 8},
        {"padding_side": "left", "pad_to_multiple_of": 16},
        {"padding": "max_length", "max_length": 40},
    ],
)
def test_collate_equals_tokenizer_padded_call(
    tokenizer: Any, tokenized: tuple[Any, list[str]], options: dict[str, Any]
) -> None:
    table, texts = tokenized
    batch = Collate(tokenizer, **options)(table)
    expected = {"label": torch.arange(len(texts))}
    expected.update(tokenizer(texts, return_tensors="pt", **{"padding": True, **options}))
    assert_batches_equal(batch, expected)


def test_collate_through_a_packer_equals_pad(
    tokenizer: Any, tokenized: tuple[Any, list[str]]
) -> None:
    table, _ = tokenized
    collate = Collate(tokenizer, device="cpu", pad_to_multiple_of=8, mask_dtype="bool")
    expected = Collate(tokenizer, pad_to_multiple_of=8, mask_dtype="bool")(table)
    for _ in range(2):  # a second batch through the same Packer
        assert_batches_equal(collate(table), expected)
    assert collate._packer is not None and collate._packer.stats.batches == 2


def test_collate_tokenizer_by_path_and_chunked_batches(
    tokenizer: Any, tokenized: tuple[Any, list[str]]
) -> None:
    table, texts = tokenized
    # What iter_torch_batches hands over when a batch spans blocks: several chunks per column.
    pieces = pa.concat_tables([table.slice(0, 3), table.slice(3, 2), table.slice(5)])
    assert pieces.column("input_ids").num_chunks == 3
    batch = Collate(tokenizer_path(), padding_side="left")(pieces)
    expected = {"label": torch.arange(len(texts))}
    expected.update(tokenizer(texts, padding=True, padding_side="left", return_tensors="pt"))
    assert_batches_equal(batch, expected)


# -- parity with fastpad.reference on random batches ----------------------------------------

rows_strategy = st.lists(st.lists(st.integers(0, 30_000), max_size=10), min_size=1, max_size=16)


@settings(max_examples=100, deadline=None)
@given(
    rows=rows_strategy,
    layout=st.sampled_from(["list", "large", "fixed"]),
    value_type=st.sampled_from(["int32", "int64", "uint16"]),
    padding_side=st.sampled_from(["left", "right"]),
    multiple=st.sampled_from([None, 1, 3, 8]),
    data=st.data(),
)
def test_collate_equals_reference(
    rows: list[list[int]],
    layout: str,
    value_type: str,
    padding_side: str,
    multiple: int | None,
    data: Any,
) -> None:
    if layout == "fixed":  # every row as long as the first (at least 1: Arrow needs a width)
        width = max(1, len(rows[0]))
        rows = [(row + [7] * width)[:width] for row in rows]
    labels = [[token % 5 for token in row] for row in rows]
    ids = list_array(rows, layout, pa.type_for_alias(value_type))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    table = pa.table(
        {
            "input_ids": chunked(ids, cuts),
            "weight": pa.array(np.linspace(0, 1, len(rows)), type=pa.float32()),
            "name": ["n"] * len(rows),
            "labels": list_array(labels, layout, pa.int64()),
        }
    )
    start = data.draw(st.integers(0, len(rows) - 1))
    table = table.slice(start)
    options = {
        "pad_token_id": 0,
        "padding_side": padding_side,
        "pad_to_multiple_of": multiple,
        "pad_values": {"labels": -100},
    }
    batch = Collate(**options)(table)
    expected = fastpad.reference.pad(
        {
            "input_ids": rows[start:],
            "weight": torch.from_numpy(table.column("weight").to_numpy().copy()),
            "labels": labels[start:],
        },
        **options,
    )
    assert_batches_equal(batch, expected)


# -- options and pickling ---------------------------------------------------------------------


def test_columns_select_and_order() -> None:
    table = pa.table(
        {"a": [[1, 2], [3]], "b": [[5, 6], [7]], "y": [0.5, 1.5], "s": ["u", "v"], "c": [[1], [2]]}
    )
    batch = Collate(pad_token_id=0, pad_values={"b": 9}, columns=["y", "b"])(table)
    assert list(batch) == ["y", "b", "attention_mask"]
    assert batch["b"].tolist() == [[5, 6], [7, 9]]
    assert batch["y"].dtype == torch.float64 and batch["y"].tolist() == [0.5, 1.5]
    default = Collate(pad_values={"b": 9, "a": 4}, columns=["a", "b", "y"])
    assert list(default(table)) == ["a", "b", "y", "attention_mask"]
    assert default(table)["a"].tolist() == [[1, 2], [3, 4]]
    # Without columns=, every list-of-integers and number column, strings left out: "c" has
    # rows of other lengths than "a", which fastpad.pad reports naming both fields.
    with pytest.raises(ValueError, match="row 0 has 2 tokens in 'a' but 1 in 'c'"):
        Collate(pad_values={"a": 4, "b": 9, "c": 0})(table)
    assert list(Collate(pad_values={"a": 4, "b": 9})(table.drop(["c"]))) == [
        "a",
        "b",
        "y",
        "attention_mask",
    ]


def test_scalar_columns_keep_their_dtype_and_are_not_shared() -> None:
    table = pa.table(
        {
            "input_ids": [[1], [2]],
            "i32": pa.array([1, 2], type=pa.int32()),
            "flag": [True, False],
        }
    )
    batch = Collate(pad_token_id=0)(table)
    assert batch["i32"].dtype == torch.int32 and batch["flag"].dtype == torch.bool
    batch["i32"][0] = 5  # writable, and not a view of the Arrow buffer
    assert table.column("i32").to_pylist() == [1, 2]


def test_pickles_without_its_packer_and_reloads_named_tokenizers(
    tokenizer: Any, tokenized: tuple[Any, list[str]]
) -> None:
    table, _ = tokenized
    collate = Collate(tokenizer_path(), device="cpu", pad_to_multiple_of=8)
    first = collate(table)
    clone = pickle.loads(pickle.dumps(collate))
    assert clone._packer is None and clone._tokenizer is None
    assert_batches_equal(clone(table), first)
    # One tokenizer per process for a name: the clone and the original share it.
    assert clone.tokenizer is collate.tokenizer
    tokenize = Tokenize(tokenizer_path(), truncation=True, max_length=8)
    copy = pickle.loads(pickle.dumps(tokenize))
    assert copy._tokenizer is None
    assert copy(pa.table({"text": ["a b c"]})).equals(tokenize(pa.table({"text": ["a b c"]})))
    by_object = pickle.loads(pickle.dumps(Collate(tokenizer, padding_side="left")))
    assert_batches_equal(by_object(table), Collate(tokenizer, padding_side="left")(table))


# -- Tokenize ---------------------------------------------------------------------------------


def test_tokenize_output_columns(tokenizer: Any, sentences: list[str]) -> None:
    texts = list(dict.fromkeys(sentences))
    table = pa.table({"id": range(len(texts)), "text": texts, "lang": ["en"] * len(texts)})
    out = Tokenize(tokenizer)(table)
    assert out.column_names == ["id", "lang", "input_ids", "token_type_ids"]
    assert out.schema.field("input_ids").type == pa.list_(pa.int32())
    expected = tokenizer(texts)
    assert out.column("input_ids").to_pylist() == expected["input_ids"]
    assert out.column("token_type_ids").to_pylist() == expected["token_type_ids"]
    assert out.column("id").to_pylist() == list(range(len(texts)))
    # A "numpy" batch (dict of arrays) gives the same table.
    as_dict = {name: np.asarray(table.column(name).to_pylist()) for name in table.column_names}
    assert Tokenize(tokenizer)(as_dict).equals(out)


def test_tokenize_options_pairs_and_extra_fields(tokenizer: Any) -> None:
    table = pa.table({"q": ["Who?", "What is it?"], "p": ["A fox.", "A long answer here."]})
    out = Tokenize(
        tokenizer,
        column="q",
        pair_column="p",
        truncation=True,
        max_length=7,
        return_special_tokens_mask=True,
        return_length=True,
    )(table)
    expected = tokenizer(
        ["Who?", "What is it?"],
        ["A fox.", "A long answer here."],
        truncation=True,
        max_length=7,
        return_special_tokens_mask=True,
        return_length=True,
    )
    assert out.column_names == ["input_ids", "token_type_ids", "special_tokens_mask", "length"]
    for name in ["input_ids", "token_type_ids", "special_tokens_mask", "length"]:
        assert out.column(name).to_pylist() == list(expected[name]), name
    assert out.schema.field("length").type == pa.int64()


def test_tokenize_empty_block_has_the_same_schema(tokenizer: Any) -> None:
    table = pa.table({"text": ["Hello there."], "n": [1]})
    tokenize = Tokenize(tokenizer)
    assert tokenize(table.slice(0, 0)).schema == tokenize(table).schema
    assert tokenize(table.slice(0, 0)).num_rows == 0


def test_tokenize_keeps_a_mask_that_is_not_all_ones() -> None:
    class Masked:  # a tokenizer returning a real mask without padding (not a transformers one)
        def __call__(self, texts: list[str], pairs: Any, **kwargs: Any) -> dict[str, Any]:
            return {
                "input_ids": [[1, 2, 3] for _ in texts],
                "attention_mask": [[1, 1, 0] for _ in texts],
            }

    out = Tokenize(Masked())(pa.table({"text": ["a", "b"]}))
    assert out.column_names == ["input_ids", "attention_mask"]
    batch = Collate(pad_token_id=0)(out)
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 0]]


# -- bad input --------------------------------------------------------------------------------


def test_collate_bad_input() -> None:
    good = pa.table({"input_ids": [[1, 2], [3]], "name": ["a", "b"]})
    with pytest.raises(ValueError, match="no column 'labels'"):
        Collate(pad_token_id=0, columns=["labels"])(good)
    with pytest.raises(TypeError, match="column 'name' is string"):
        Collate(pad_token_id=0, columns=["input_ids", "name"])(good)
    with pytest.raises(ValueError, match="no column of integer lists"):
        Collate(pad_token_id=0)(pa.table({"x": [1.0], "s": ["a"]}))
    with pytest.raises(TypeError, match="column 'v' is list<item: double>"):
        Collate(pad_token_id=0, columns=["v"])(pa.table({"v": [[1.0]]}))
    with pytest.raises(ValueError, match=r"column 'input_ids': .*row 1 is null"):
        Collate(pad_token_id=0)(pa.table({"input_ids": [[1], None]}))
    with pytest.raises(ValueError, match=r"column 'input_ids': .*row 0 holds a null token"):
        Collate(pad_token_id=0)(pa.table({"input_ids": [[1, None]]}))
    with pytest.raises(ValueError, match="column 'label': row 1 is null"):
        Collate(pad_token_id=0)(pa.table({"input_ids": [[1], [2]], "label": [0, None]}))
    with pytest.raises(ValueError, match="no pad value for field 'labels'"):
        Collate(pad_token_id=0)(pa.table({"input_ids": [[1]], "labels": [[1]]}))
    with pytest.raises(ValueError, match="pad_token_id is required"):
        Collate()(good)
    with pytest.raises(OverflowError):
        Collate(pad_token_id=0, dtype="int32")(pa.table({"input_ids": [[2**40]]}))
    with pytest.raises(TypeError, match=r"pyarrow\.Table"):
        Collate(pad_token_id=0)([[1, 2]])


def test_collate_bad_options() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['return_tensors'\]"):
        Collate(pad_token_id=0, return_tensors="np")
    with pytest.raises(ValueError, match="pin_memory and device"):
        Collate(pad_token_id=0, device="cpu", pin_memory=False)
    with pytest.raises(ValueError, match="ragged_transfer=True needs device"):
        Collate(pad_token_id=0, ragged_transfer=True)
    with pytest.raises(ValueError, match="pad_to_multiple_of must be > 0"):
        Collate(pad_token_id=0, pad_to_multiple_of=0)
    with pytest.raises(ValueError, match="padding_side"):
        Collate(pad_token_id=0, padding_side="middle")
    with pytest.raises(TypeError, match="sequence of column names"):
        Collate(pad_token_id=0, columns="input_ids")
    with pytest.raises(ValueError, match="at least one column"):
        Collate(pad_token_id=0, columns=[])


def test_tokenize_bad_input(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match=r"\['padding'\] would pad"):
        Tokenize(tokenizer, padding=True)
    with pytest.raises(ValueError, match=r"\['return_tensors'\] would pad or make tensors"):
        Tokenize(tokenizer, return_tensors="np")
    with pytest.raises(TypeError, match="a tokenizer"):
        Tokenize(None)
    tokenize = Tokenize(tokenizer)
    with pytest.raises(ValueError, match="no column 'text'"):
        tokenize(pa.table({"body": ["a"]}))
    with pytest.raises(TypeError, match="column 'text' is int64"):
        tokenize(pa.table({"text": [1]}))
    with pytest.raises(ValueError, match="column 'text': row 1 is null"):
        tokenize(pa.table({"text": ["a", None]}))
    with pytest.raises(ValueError, match="already has a column 'input_ids'"):
        tokenize(pa.table({"text": ["a"], "input_ids": [[1]]}))
    with pytest.raises(TypeError, match="'offset_mapping' holds tuple values"):
        Tokenize(tokenizer, return_offsets_mapping=True)(pa.table({"text": ["a b"]}))
    overflowing = Tokenize(
        tokenizer, truncation=True, max_length=4, stride=1, return_overflowing_tokens=True
    )
    with pytest.raises(ValueError, match="one row per text"):
        overflowing(pa.table({"text": ["a b c d e f g h i j"]}))


# -- imports ----------------------------------------------------------------------------------


def test_import_fastpad_does_not_import_ray() -> None:
    code = "import sys, fastpad; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_ray_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ray", "ray.data", "ray.data.collate_fn"):
        monkeypatch.setitem(sys.modules, name, None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "fastpad.ray")
    monkeypatch.delattr(fastpad, "ray")
    with pytest.raises(ImportError, match=r"pip install 'fastpad\[ray\]'"):
        importlib.import_module("fastpad.ray")
