"""`mmsearch duplicates` / Index.duplicates: the same bytes, and near-identical pictures (resized,
recompressed, cropped, re-encoded) told from different pictures of alike scenes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks import duplicates as bench
from mmsearch import Index

MMSEARCH = [sys.executable, "-m", "mmsearch"]  # this interpreter's mmsearch, whichever script is on PATH


def test_duplicates_are_grouped_with_the_one_to_keep_first(tmp_path, toyclip):
    origin = bench.build(tmp_path, n=60, n_variants=15, seed=77)
    index = tmp_path / "index"
    with Index(index, model=toyclip) as idx:
        idx.index([tmp_path / "world" / "images", tmp_path / "world" / "variants"], ocr=False)
        groups = idx.duplicates()
        scores = bench.score(groups, origin)
        assert scores["precision"] >= 0.95 and scores["recall"] >= 0.9, scores
        # the biggest gain first; the kept file is the largest picture of its group
        gains = [g.gain_bytes for g in groups]
        assert gains == sorted(gains, reverse=True)
        for g in groups:
            first = g.files[0]
            assert all((first.width or 0) * (first.height or 0) >= (f.width or 0) * (f.height or 0) for f in g.files)
        identical = idx.duplicates(near=False)
        copies = [p for p in origin if p.endswith(("-copy.jpg", "-copy.png", "-copy.webp"))]
        assert len(identical) == len(copies) and all(g.kind == "identical" and len(g.files) == 2 for g in identical)
    env = {**os.environ, "MMSEARCH_HOME": str(tmp_path / "home")}
    out = json.loads(subprocess.run([*MMSEARCH, "duplicates", "--index", str(index), "--json"], env=env,
                                    capture_output=True, text=True, check=True).stdout)
    assert [len(g["files"]) for g in out] == [len(g.files) for g in groups]
    # each file with the item that shows it (an app's thumbnail, its file)
    with Index(index, readonly=True) as idx:
        for g in out:
            for f in g["files"]:
                assert idx.item(f["item_id"]).fs_path == f["path"]
    text = subprocess.run([*MMSEARCH, "duplicates", "--index", str(index)], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert text.startswith(f"{len(groups)} groups;") and text.count("  keep ") == len(groups)
    bad = subprocess.run([*MMSEARCH, "duplicates", "--index", str(index), "--threshold", "3"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "threshold" in bad.stderr
