"""What every entry point accepts: the library checks and normalises, the CLI says it in one line.

Each case here was a traceback, a silent empty answer or a wrong answer before: `--device gpu`,
`-k 0`, a blank query, `index /nonexistent`, `~` in the library's paths, `--exclude '*.pdf'` and
`.PDF`, `similar` on a file in error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import make_collection, picture
from mmsearch import Index, MmsearchError
from mmsearch.errors import InvalidArgument

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")


def run(*args, env=None):
    return subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, toyclip):
    root = tmp_path_factory.mktemp("args")
    photos, index = root / "photos", root / "index"
    make_collection(photos)
    with Index(index, model=toyclip, device="cpu") as idx:
        idx.index([photos])
    return photos, index


@pytest.mark.parametrize("device", ["gpu", "GPU ", "tpu"])
def test_unknown_device_is_refused_before_anything_is_written(tmp_path, toyclip, device):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    with pytest.raises(InvalidArgument, match=r"device must be one of auto, cpu, cuda"):
        Index(tmp_path / "index", model=toyclip, device=device)
    proc = run("index", photos, "--index", tmp_path / "index", "--model", toyclip, "--device", device)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: device must be one of auto, cpu, cuda")
    assert not (tmp_path / "index").exists()  # no failed run, no registered root


def test_device_and_choices_ignore_case(indexed, toyclip):
    photos, index = indexed
    with Index(index, device="CPU", readonly=True) as idx:
        assert idx.device == "cpu"
        assert idx.search("a red square", type="IMAGE", mode="Vector", k=2)[0].kind == "image"


@pytest.mark.parametrize("k", [0, -3])
def test_k_must_be_positive(indexed, k):
    photos, index = indexed
    with Index(index, readonly=True) as idx, pytest.raises(InvalidArgument, match="k must be at least 1"):
        idx.search("cake", k=k)
    for command in (["query", "cake"], ["similar", photos / "img0.jpg"]):
        proc = run(*command, "--index", index, "-k", k)
        assert proc.returncode == 2 and "k must be at least 1" in proc.stderr, proc.stderr


def test_workers_must_be_positive(indexed):
    photos, index = indexed
    proc = run("index", photos, "--index", index, "--workers", "-1")
    assert proc.returncode == 2 and "--workers must be at least 1" in proc.stderr
    with Index(index) as idx, pytest.raises(InvalidArgument, match="workers must be at least 1"):
        idx.index([photos], workers=0)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_blank_query_is_refused(indexed, text):
    photos, index = indexed
    with Index(index, readonly=True) as idx, pytest.raises(InvalidArgument, match="the query is empty"):
        idx.search(text)
    proc = run("query", text, "--index", index)
    assert proc.returncode == 2 and "the query is empty" in proc.stderr and not proc.stdout


def test_indexing_a_path_that_does_not_exist_creates_nothing(tmp_path, toyclip):
    proc = run("index", tmp_path / "nonexistent", "--index", tmp_path / "index", "--model", toyclip)
    assert proc.returncode == 2
    assert f"{tmp_path / 'nonexistent'}: no such folder or file; nothing was indexed" in proc.stderr
    assert not (tmp_path / "index").exists()


def test_library_paths_expand_the_home_folder(indexed, monkeypatch):
    photos, index = indexed
    monkeypatch.setenv("HOME", str(photos.parent))
    with Index(index, readonly=True) as idx:
        by_image = idx.search(image=f"~/{photos.name}/img0.jpg", k=1)
        assert by_image[0].path == str(photos / "img0.jpg")
        under = idx.search("a picture", under=f"~/{photos.name}/sub", k=10, mode="vector")
        assert under and all(h.path.startswith(str(photos / "sub") + os.sep) for h in under)
        assert idx.similar(f"~/{photos.name}/img0.jpg", k=1)[0].path != str(photos / "img0.jpg")


def test_exclude_ignores_case_and_matches_folders(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={"keep.txt": "kept words"})
    (photos / "REPORT.PDF").write_bytes(b"%PDF-1.4 not really")
    (photos / "cache").mkdir()
    picture(50).save(photos / "cache" / "thumb.png")
    (photos / "cachefile.png").write_bytes((photos / "cache" / "thumb.png").read_bytes())
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        report = idx.index([photos], exclude=["*.pdf", "cache/"])
        paths = {h.path for h in idx.search("x", mode="vector", k=50)}
    assert not report.errors  # the broken PDF was never opened
    assert str(photos / "cache" / "thumb.png") not in paths  # the folder is skipped...
    assert str(photos / "cachefile.png") in paths  # ...not a file that happens to share its name
    assert report.added == 4


def test_similar_on_a_file_in_error_says_why(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    index = tmp_path / "index"
    run("index", photos, "--index", index, "--model", toyclip)
    proc = run("similar", photos / "broken.jpg", "--index", index)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{photos / 'broken.jpg'}: could not be indexed (" in proc.stderr and "search(image" not in proc.stderr
    proc = run("similar", tmp_path / "elsewhere.jpg", "--index", index)
    assert "mmsearch query --image FILE" in proc.stderr


def test_every_error_raised_on_purpose_is_an_mmsearch_error():
    import mmsearch.ann
    import mmsearch.bundle
    import mmsearch.catalog
    import mmsearch.textfiles
    import mmsearch.flatfile
    import mmsearch.preprocess
    import mmsearch.runtime
    from mmsearch.api import IndexBusyError

    for error in (mmsearch.bundle.BundleError, mmsearch.catalog.CatalogError, mmsearch.catalog.CatalogWriteError,
                  mmsearch.runtime.DeviceError, mmsearch.preprocess.ImageDecodeError, mmsearch.textfiles.DocumentError,
                  mmsearch.ann.AnnError, mmsearch.flatfile.FlatFileError, IndexBusyError, InvalidArgument):
        assert issubclass(error, MmsearchError), error


def test_json_query_output_is_valid_for_scripts(indexed):
    photos, index = indexed
    hits = json.loads(run("query", "lemon cake", "--index", index, "--json").stdout)
    assert hits and hits[0]["path_encoding"] == "utf-8"
    assert hits[0]["path"].endswith("recipe.md") and hits[0]["match"] in ("words", "both")
    assert all(0 <= h["score"] <= 1 and h["match"] in ("words", "both", "meaning") for h in hits)
