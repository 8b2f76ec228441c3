"""Several index folders searched as one (MultiIndex, `mmsearch query --index A --index B`): the
results are those of one index holding both collections, merged by score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine_helpers import make_collection

from mmsearch import Index, MmsearchError, MultiIndex

DOCS_A = {"harbour.txt": "The old harbour at dawn, fishing boats tied along the stone quay while gulls circle overhead.",
          "recipe.md": "# Lemon cake\n\nWhisk eggs and sugar, fold in flour and lemon zest, bake for forty minutes."}
DOCS_B = {"garden.txt": "Tomatoes and basil grow beside the greenhouse; the roses need pruning before winter frost.",
          "boats.txt": "Sailing boats race past the lighthouse; the harbour master counts every boat at dusk."}


@pytest.fixture(scope="module")
def world(tmp_path_factory, bundle):
    """Two collections in two indexes, and one index holding both: fp32, whose vectors do not depend on
    what else is in a batch (int8 quantises activations per batch)."""
    root = tmp_path_factory.mktemp("multi")
    a, b = root / "a", root / "b"
    make_collection(a, n_images=6, docs=DOCS_A, first_seed=0)
    make_collection(b, n_images=6, docs=DOCS_B, first_seed=100)
    for name, roots in (("index-a", [a]), ("index-b", [b]), ("index-ab", [a, b])):
        with Index(root / name, model=bundle, variant="fp32") as idx:
            report = idx.index(roots)
            assert report.errors == []
    return root


def same(hits, expected):
    """Same files in the same order, same scores (up to float sums: each index encoded other batches)."""
    assert [h.path for h in hits] == [h.path for h in expected]
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-4)
    return True


def test_vector_results_equal_one_index_holding_both(world):
    with MultiIndex([world / "index-a", world / "index-b"]) as shards, Index(world / "index-ab", readonly=True) as one:
        for image in (world / "a" / "img0.jpg", world / "b" / "sub" / "img3.jpg"):
            merged = shards.search(image=image, k=5)
            assert merged[0].path == str(image)
            assert same(merged, one.search(image=image, k=5))
        words = shards.search("boats in a harbour", k=8, mode="vector")
        assert same(words, one.search("boats in a harbour", k=8, mode="vector"))


def test_k_counts_over_all_indexes_best_first(world):
    with MultiIndex([world / "index-a", world / "index-b"]) as shards:
        hits = shards.search(image=world / "b" / "img0.jpg", k=10)
        assert len(hits) == 10  # of 6 + 6 pictures and 4 documents
        assert {Path(h.path).relative_to(world).parts[0] for h in hits} == {"a", "b"}
        assert [h.rank for h in hits] == list(range(1, 11))
        assert all(x.score >= y.score for x, y in zip(hits, hits[1:]))
        everything = shards.search(image=world / "a" / "img0.jpg", k=100)
        assert len(everything) == 16


def test_keyword_and_hybrid_merge(world):
    with MultiIndex([world / "index-a", world / "index-b"]) as shards, Index(world / "index-ab", readonly=True) as one:
        words = shards.search("harbour", k=5, mode="keyword")
        # Both collections have a document with the word; tiers compare across indexes.
        assert {h.path for h in words} == {str(world / "a" / "docs" / "harbour.txt"),
                                          str(world / "b" / "docs" / "boats.txt")}
        assert all(h.match == "words" and h.score >= 0.75 for h in words)
        assert {h.path for h in words} == {h.path for h in one.search("harbour", k=5, mode="keyword")}
        hybrid = shards.search("lemon cake", k=4)
        assert hybrid[0].path == str(world / "a" / "docs" / "recipe.md") and hybrid[0].match in ("words", "both")
        assert [h.path for h in hybrid] == [h.path for h in one.search("lemon cake", k=4)]


def test_similar_takes_the_vector_from_the_index_that_holds_the_file(world):
    target = world / "b" / "img0.jpg"
    with MultiIndex([world / "index-a", world / "index-b"]) as shards, Index(world / "index-ab", readonly=True) as one:
        hits = shards.similar(target, k=5)
        assert str(target) not in [h.path for h in hits]
        assert same(hits, one.similar(target, k=5))
        with pytest.raises(MmsearchError, match="in none of these indexes"):
            shards.similar(world / "nowhere.jpg")


def test_a_file_in_two_indexes_counts_once(world):
    with MultiIndex([world / "index-a", world / "index-ab"]) as shards:
        hits = shards.search(image=world / "a" / "img0.jpg", k=16)
        paths = [h.path for h in hits]
        assert len(paths) == len(set(paths)) == 16
        # Hybrid: the vector side may reach a file through one index and the keyword side through the
        # other; it is one file, with both sides' share of its score, as one index would give it.
        hybrid = shards.search("harbour boats", k=16)
        paths = [h.path for h in hybrid]
        assert len(paths) == len(set(paths))
    with MultiIndex([world / "index-b", world / "index-ab"]) as shards:
        for query in ("harbour boats", "lemon cake", "roses before winter"):
            paths = [h.path for h in shards.search(query, k=16)]
            assert len(paths) == len(set(paths)), query


def test_indexes_of_different_models_are_refused(world, bundle, tmp_path):
    other = tmp_path / "other-model"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["name"] = "toyclip-retrained"  # another manifest: another model as far as the index knows
    (other / "manifest.json").write_text(json.dumps(manifest))
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    with Index(tmp_path / "index-other", model=other) as idx:
        idx.index([photos])
    with pytest.raises(MmsearchError, match="different models do not compare"):
        MultiIndex([world / "index-a", tmp_path / "index-other"])
    with pytest.raises(MmsearchError, match="given twice"):
        MultiIndex([world / "index-a", world / "index-a"])
    with pytest.raises(MmsearchError, match="no index here yet"):
        MultiIndex([world / "index-a", tmp_path / "missing"])


def test_the_command_repeats_index(world):
    import subprocess
    import sys

    args = ["query", "lemon cake", "--index", str(world / "index-a"), "--index", str(world / "index-b"), "-k", "3",
            "--json"]
    fast = subprocess.run([sys.executable, "-m", "mmsearch", *args], capture_output=True, text=True, timeout=120)
    assert fast.returncode == 0, fast.stderr
    with MultiIndex([world / "index-a", world / "index-b"]) as shards:
        assert [h["path"] for h in json.loads(fast.stdout)] == [h.path for h in shards.search("lemon cake", k=3)]
    similar = subprocess.run([sys.executable, "-m", "mmsearch", "similar", str(world / "a" / "img0.jpg"), "--index",
                              str(world / "index-a"), "--index", str(world / "index-b"), "-k", "2", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert similar.returncode == 0, similar.stderr
    assert len(json.loads(similar.stdout)) == 2
