"""The end-to-end section of `python -m fastpad bench`: count batches against token batches on
all-MiniLM-L6-v2, outputs compared (no timing asserts)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastpad._bench import e2e
from fastpad._bench.run import BenchConfig
from fastpad._bench.workloads import WORKLOADS

pytest.importorskip("torch")
pytest.importorskip("transformers")


def _config(texts: int) -> BenchConfig:
    return BenchConfig(workloads=[WORKLOADS["short"]], batch_sizes=[8], quick=True, e2e_texts=texts)


def test_mixed_texts_are_reproducible_prefixes_with_queries_and_passages(tokenizer: Any) -> None:
    texts = e2e.make_mixed_texts(512)
    assert texts == e2e.make_mixed_texts(512)
    assert e2e.make_mixed_texts(32) == texts[:32]  # --quick: a slice of the same workload
    queries = [text for text in texts if text.endswith("?")]
    assert 0.6 < len(queries) / len(texts) < 0.8
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    query_lengths = [
        length for length, text in zip(lengths, texts, strict=True) if text.endswith("?")
    ]
    passage_lengths = [
        length for length, text in zip(lengths, texts, strict=True) if text.endswith(".")
    ]
    assert max(query_lengths) <= 32 and min(passage_lengths) >= 60
    assert max(passage_lengths) == 256  # some passages reach the model's limit


def test_token_batches_cover_every_row_once_within_the_budget(tokenizer: Any) -> None:
    import fastpad

    texts = e2e.make_mixed_texts(96)
    encoded = tokenizer(texts, truncation=True, max_length=e2e.MAX_LENGTH)
    seen = np.zeros(len(texts), dtype=np.int64)
    for rows, batch in e2e.token_batches(encoded, max_tokens=e2e.MAX_TOKENS, tokenizer=tokenizer):
        seen[rows] += 1
        ids = batch["input_ids"]
        assert ids.shape[0] * ids.shape[1] <= e2e.MAX_TOKENS or ids.shape[0] == 1
        subset = {key: [values[row] for row in rows] for key, values in encoded.items()}
        expected = fastpad.pad(subset, tokenizer=tokenizer)
        assert list(batch.keys()) == list(expected.keys())
        for key in expected:
            assert batch[key].equal(expected[key])
    assert (seen == 1).all()


def test_embeddings_are_sentence_transformers_own(tokenizer: Any) -> None:
    import torch
    from transformers import AutoModel

    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = e2e.make_mixed_texts(12)
    model = AutoModel.from_pretrained(tokenizer.name_or_path).eval()
    with torch.inference_mode():
        ours, _ = e2e._count_pass(model, tokenizer, texts)
    reference = sentence_transformers.SentenceTransformer(tokenizer.name_or_path, device="cpu")
    theirs = reference.encode(texts, batch_size=32, convert_to_tensor=True)
    assert float((ours - theirs).abs().max()) <= 1e-5


def test_section_measures_compares_and_reports(tokenizer: Any) -> None:
    messages: list[str] = []
    section = e2e.measure(_config(12), tokenizer, messages.append)
    assert section is not None and messages
    json.loads(json.dumps(section))  # JSON-ready
    assert section["texts"] == 12 and section["repeats"] == 1
    assert section["queries"] + section["passages"] == 12
    assert section["max_abs_diff"] <= e2e.TOLERANCE
    count, tokens = section["count"], section["tokens"]
    assert count["batches"] == 1 and count["batch_size"] == e2e.COUNT_BATCH
    real = section["real_tokens"]
    # Count batches pad every row to the batch's longest; token batches stay between the two.
    assert count["padded_cells"] == 12 * section["longest"]
    assert real <= tokens["padded_cells"] <= count["padded_cells"]
    for part in (count, tokens):
        assert len(part["seconds"]) == 1 and part["seconds"][0] > 0
        assert part["texts_per_s"]["min"] <= part["texts_per_s"]["median"]
    assert section["speedup"]["median"] == pytest.approx(count["seconds"][0] / tokens["seconds"][0])
    text = "\n".join(e2e.table_lines({"end_to_end": section}))
    assert "**End to end**" in text and "token_batches(max_tokens=2048)" in text
    assert f"{count['padded_cells']:,}" in text and "embeddings within" in text


@pytest.mark.parametrize("drift", [1e-4, float("nan")])
def test_differing_embeddings_fail_loudly(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch, drift: float
) -> None:
    token_pass = e2e._token_pass

    def drifting(model: Any, tokenizer: Any, texts: list[str]) -> tuple[Any, int]:
        out, cells = token_pass(model, tokenizer, texts)
        out[3, 7] += drift
        return out, cells

    monkeypatch.setattr(e2e, "_token_pass", drifting)
    with pytest.raises(AssertionError, match=r"embeddings of count and token batches differ"):
        e2e.measure(_config(6), tokenizer, print)


def test_section_is_skipped_when_not_asked_or_not_possible(tokenizer: Any) -> None:
    assert e2e.measure(_config(0), tokenizer, print) is None
    assert e2e.measure(_config(4), None, print) is None
    config = _config(4)
    config.paths = ["fastpad-lists"]
    assert e2e.measure(config, tokenizer, print) is None
    assert list(e2e.table_lines({"end_to_end": None})) == []
