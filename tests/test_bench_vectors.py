"""`python -m benchmarks.documents vectors` scores the choices that bound the vectors phase in-process:
which chunks a cap keeps, what float16 storage would answer, and image->text recall with a document
scored by its best chunk (what search.rank does for an image query). These hold the pieces its figures
rest on; the benchmark itself checks the shipped configuration against a real index."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.vectors_cost import evenly, fp16, overlap_tokens, recall_of  # noqa: E402


def test_a_cap_keeps_chunks_spread_over_the_whole_document_first_and_last_included():
    assert evenly(5, None).tolist() == [0, 1, 2, 3, 4]
    assert evenly(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert evenly(10, 4).tolist() == [0, 3, 6, 9]
    assert len(evenly(1000, 128)) == 128


def test_float16_storage_is_a_rounding_that_keeps_the_vector_within_its_precision():
    v = np.random.default_rng(0).standard_normal((50, 512)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = fp16(v)
    assert r.dtype == np.float32 and not np.array_equal(r, v)
    assert np.abs(r - v).max() < 1e-3


def test_recall_scores_a_document_by_its_best_chunk_and_never_finds_one_without_vectors():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    docs = [np.array([[0.0, 1.0], [1.0, 0.0]], np.float32),  # its second chunk answers the first query
            np.zeros((0, 2), np.float32),  # capped to nothing
            np.array([[0.6, 0.8]], np.float32)]
    relevant = np.array([[True, False, False], [False, True, False]])
    assert recall_of(queries, docs, relevant, k=1) == {"R@1": 0.5}
    assert recall_of(queries, docs, relevant, k=10)["R@10"] == 0.5  # the second query's document has none


def test_overlaps_are_named_as_shipped_a_share_of_a_chunk_or_tokens():
    assert [overlap_tokens(s, 75, 15) for s in ("default", "0", "0.5", "8")] == [15, 0, 38, 8]
