"""The trained toy CLIP finds things through the real `mmsearch index` / `mmsearch query`: a small
version of `python -m benchmarks.quality` (100 held-out pictures), held to the same bars."""

from __future__ import annotations

import json

import pytest

from benchmarks import quality

MODEL = quality.DEFAULT_MODEL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MODEL / "manifest.json").exists(),
                       reason="tests/fixtures/toyclip is missing (python -m benchmarks.train_toyclip makes it)"),
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    work = tmp_path_factory.mktemp("quality")
    return quality.run_quality(n=100, seed=2025, variants=("fp32", "int8"), model=MODEL, work=work,
                               cli_queries=2, max_size=1600, log=lambda msg: None)


def test_held_out_seed(result):
    info = json.loads((MODEL / "train_info.json").read_text())
    assert result["seed"] not in (info["seed"], info.get("heldout", {}).get("seed"))


def test_everything_indexed(result):
    for variant, r in result["variants"].items():
        summary = r["index"]
        assert summary["errors"] == [], (variant, summary["errors"])
        assert summary["added"] == 2 * result["n"] + 3, (variant, summary)  # pictures, caption docs, 3 docs


def test_cli_agrees_with_api(result):
    for variant, r in result["variants"].items():
        assert r["cli_queries"] == 2
        assert r["cli_mismatches"] == [], (variant, r["cli_mismatches"])


def test_bars(result):
    fp32 = result["variants"]["fp32"]
    assert fp32["t2i"]["R@5"] >= quality.BARS["t2i_R@5"], quality.table(result)
    assert fp32["i2t"]["R@5"] >= quality.BARS["i2t_R@5"], quality.table(result)
    int8 = result["variants"]["int8"]
    for d in ("t2i", "i2t"):
        assert int8[d]["R@5"] >= fp32[d]["R@5"] - quality.VARIANT_TOLERANCE, quality.table(result)
    assert result["failures"] == [], quality.table(result)
