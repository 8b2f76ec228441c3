"""The side-by-side benchmark with Recoll (`python -m benchmarks.documents --against-recoll`) measures
mmsearch's words phase by pausing the real `mmsearch index` where the trace says it enters its first
"save": this holds it to that point (every chunk written and searchable by words, none with a vector
yet), so a change to the run's steps cannot quietly move what the benchmark measures. Recoll is not
needed here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.documents import _mmsearch_index  # noqa: E402

TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"


def test_the_words_phase_is_measured_before_any_vector_and_the_run_then_finishes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The quick brown fox jumps over the lazy dog. " * 20)
    (corpus / "b.txt").write_text("Pack my box with five dozen liquor jugs, said the sphinx of black quartz. " * 20)
    run = _mmsearch_index(corpus, tmp_path / "index", TOYCLIP, tmp_path / "trace")
    words, full = run["words"], run["full"]
    assert words["chunks"] > 0 and words["pending"] == words["chunks"]  # all words in, no vector yet
    assert full["chunks"] == words["chunks"] == run["chunks"] and full["pending"] == 0 and run["vectors_left"] == 0
    assert 0 < words["cpu_s"] < full["cpu_s"] and 0 < words["wall_s"] < full["wall_s"]
    assert words["kept_bytes"] < full["kept_bytes"]  # the vectors' files came after
    assert run["errors"] == []
