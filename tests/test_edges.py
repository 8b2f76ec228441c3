"""The edges a new user meets: one image limit for the library and the CLI, file names that cannot
command the terminal, nothing that hangs on a FIFO, and the small answers (version, waiting, typos in
filters, errors counted alike on every run)."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

import mmsearch
from engine_helpers import make_collection, picture
from mmsearch import Index, IndexBusyError, InvalidArgument, MmsearchError
from mmsearch.preprocess import MAX_PIXELS

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")


def cli(*args: object, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, toyclip):
    tmp = tmp_path_factory.mktemp("edges")
    photos = tmp / "photos"
    make_collection(photos, n_images=3, docs={"note.txt": "a note about a red bicycle"})
    with Index(tmp / "index", model=toyclip) as idx:
        idx.index([photos])
    return tmp, photos, tmp / "index"


# -- one image limit ----------------------------------------------------------------------------------


def _large_jpeg(path: Path, width: int, height: int) -> Path:
    Image.new("L", (width, height), 128).save(path, quality=30)  # flat: small on disk, cheap at draft scale
    return path


def _declared_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height (its pixels are not there: it must be refused first)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IEND", b""))
    return path


def test_library_and_cli_accept_and_refuse_the_same_images(tmp_path, toyclip):
    """A 182 MP photo (past Pillow's own default limit) is indexed by both; one declaring more than
    MAX_PIXELS is refused by both with one message; the app's Pillow settings are left alone."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _large_jpeg(photos / "panorama.jpg", 14000, 13000)
    side = int((MAX_PIXELS * 1.1) ** 0.5)
    _declared_png(photos / "bomb.png", side, side)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with Index(tmp_path / "lib", model=toyclip) as idx:
        report = idx.index([photos])
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    assert report.added == 1 and [e["path"] for e in report.errors] == [str(photos / "bomb.png")]
    lib_reason = report.errors[0]["reason"]
    assert lib_reason == f"declares {side}x{side} pixels, more than mmsearch decodes ({MAX_PIXELS:,})"
    out = json.loads(cli("index", photos, "--index", tmp_path / "cli", "--model", toyclip, "--json").stdout)
    assert out["added"] == 1 and out["errors"] == report.errors
    # the same answer for a search by that picture
    with Index(tmp_path / "lib", readonly=True) as idx:
        assert idx.search(image=photos / "panorama.jpg", k=1)[0].path == str(photos / "panorama.jpg")
        with pytest.raises(MmsearchError, match="more than mmsearch decodes"):
            idx.search(image=photos / "bomb.png")
    proc = cli("query", "--image", photos / "bomb.png", "--index", tmp_path / "lib")
    assert proc.returncode == 1 and lib_reason in proc.stderr


# -- nothing a file name says reaches the terminal as a command --------------------------------------


def test_control_characters_in_names_are_printed_escaped(tmp_path, toyclip):
    photos = tmp_path / "photos"
    photos.mkdir()
    retitle = "\x1b]0;pwned\x07sunset.png"
    forged = "a\nadded 999, updated 0.png"
    picture(1).save(photos / retitle)
    picture(2).save(photos / forged)
    (photos / "bell\x07broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    index = tmp_path / "index"
    outputs = [cli("index", photos, "--index", index, "--model", toyclip),
               cli("index", photos, "--index", index),
               cli("query", "sunset", "--index", index, "--mode", "vector"),
               cli("status", "--index", index),
               cli("similar", photos / retitle, "--index", index),
               cli("query", "--image", photos / "bell\x07broken.jpg", "--index", index)]
    for proc in outputs:
        text = proc.stdout + proc.stderr
        assert "\x1b" not in text and "\x07" not in text, text
        assert not any(line.startswith("added 999") for line in text.splitlines()), text
    report, _, table, status, _, error = (p.stdout + p.stderr for p in outputs)
    assert "bell\\x07broken.jpg" in report and "bell\\x07broken.jpg" in status and "bell\\x07broken.jpg" in error
    assert "\\x1b]0;pwned\\x07sunset.png" in table and "a\\nadded 999, updated 0.png" in table
    # JSON carries the name as it is (its own escaping), for scripts
    hits = json.loads(cli("query", "sunset", "--index", index, "--mode", "vector", "--json").stdout)
    assert {h["path"] for h in hits} >= {str(photos / retitle), str(photos / forged)}


# -- nothing hangs -------------------------------------------------------------------------------------


def test_a_fifo_a_folder_or_a_missing_file_is_refused_at_once(indexed, tmp_path):
    _, _, index = indexed
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for target, reason in ((fifo, "is a FIFO (named pipe)"), (tmp_path, "is a folder"),
                           (tmp_path / "missing.jpg", "no such file")):
        proc = cli("query", "--image", target, "--index", index, timeout=30)  # before: waited forever on the FIFO
        assert proc.returncode == 2 and reason in proc.stderr, proc.stderr
        with Index(index, readonly=True) as idx, pytest.raises(InvalidArgument, match=re.escape(reason)):
            idx.search(image=target)
    proc = cli("index", fifo, "--index", tmp_path / "new-index", timeout=30)
    assert proc.returncode == 2 and "is a FIFO (named pipe), neither a folder nor a file to index" in proc.stderr
    assert "cannot list folder" not in proc.stderr and not (tmp_path / "new-index").exists()


def test_a_fifo_inside_a_folder_is_passed_over(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    os.mkfifo(photos / "stream.jpg")
    with Index(tmp_path / "index", model=toyclip) as idx:
        done: list = []
        worker = threading.Thread(target=lambda: done.append(idx.index([photos])), daemon=True)
        worker.start()
        worker.join(60)
        assert done and done[0].added == 2


# -- small things --------------------------------------------------------------------------------------


def test_version_and_the_public_names():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mmsearch {mmsearch.__version__}"
    assert issubclass(mmsearch.IndexBusyError, MmsearchError) and "IndexBusyError" in mmsearch.__all__


def test_a_second_writer_waits_a_bounded_time_and_no_wait_says_nothing_of_waiting(indexed):
    from filelock import FileLock

    from mmsearch import api

    _, photos, index = indexed
    lock = FileLock(str(index / api.LOCK_FILE))
    lock.acquire()
    try:
        proc = cli("index", photos, "--index", index, "--no-wait")
        assert proc.returncode == 3 and "Waiting" not in proc.stderr and "another `mmsearch index`" in proc.stderr
        import inspect

        assert inspect.signature(Index.index).parameters["wait"].default == api.DEFAULT_WAIT_S == 60.0  # one minute
        calls: list[str] = []
        with Index(index) as idx:
            start = time.monotonic()
            with pytest.raises(IndexBusyError):
                idx.index([photos], wait=0.5, on_wait=lambda: calls.append("waiting"))
            assert calls == ["waiting"] and time.monotonic() - start < 30
            with pytest.raises(IndexBusyError):
                idx.index([photos], wait=0, on_wait=lambda: calls.append("waiting"))
            assert calls == ["waiting"]  # wait=0 does not wait, so it does not say it waits
    finally:
        lock.release()


def test_filters_that_cannot_match_say_why(indexed):
    tmp, photos, index = indexed
    proc = cli("query", "bicycle", "--index", index, "--under", tmp / "no-such-folder")
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    proc = cli("query", "bicycle", "--index", index, "--after", "2024-05-01", "--before", "2024-01-01")
    assert proc.returncode == 2 and "no date is both" in proc.stderr
    with Index(index, readonly=True) as idx:
        with pytest.raises(InvalidArgument, match="no such folder"):
            idx.similar(photos / "img0.jpg", under=tmp / "no-such-folder")
        # a folder that exists, or an indexed one that is gone (an unplugged drive), is searched
        assert idx.search("bicycle", under=photos)
    moved = tmp / "unplugged"
    photos.rename(moved)
    try:
        with Index(index, readonly=True) as idx:
            assert idx.search("bicycle", under=photos / "docs") is not None
    finally:
        moved.rename(photos)


def test_files_in_error_are_counted_alike_on_every_run(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    for i in range(3):
        (photos / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    index = tmp_path / "index"
    first = json.loads(cli("index", photos, "--index", index, "--model", toyclip, "--json").stdout)
    again = json.loads(cli("index", photos, "--index", index, "--json").stdout)
    assert len(first["errors"]) == len(again["errors"]) == 3 and first["errors"] == again["errors"]
    assert "skipped" not in again
    text = cli("index", photos, "--index", index).stdout
    assert "errors 3" in text and text.count("broken") == 3


# -- the index gives space back ---------------------------------------------------------------------


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def test_the_index_gives_space_back_when_much_was_removed(tmp_path, toyclip):
    import random

    photos = tmp_path / "photos"
    make_collection(photos, n_images=4, docs={"note.txt": "a note about a red bicycle"})
    rng = random.Random(0)
    words = ["harbour", "lighthouse", "keeper", "boat", "lemon", "cake", "alpha", "gamma", "delta", "rope"]
    (photos / "long.txt").write_text(" ".join(rng.choice(words) for _ in range(60_000)))  # ~12k chunks
    with Index(tmp_path / "clean", model=toyclip) as idx:
        idx.index([photos / "docs", photos / "img0.jpg"])
    index = tmp_path / "index"
    with Index(index, model=toyclip) as idx:
        idx.index([photos])
        full = _folder_bytes(index)
        (photos / "long.txt").unlink()
        report = idx.index([photos])  # the catalog and the graph shrink by themselves past a threshold
        assert report.removed == 1
        after = _folder_bytes(index)
        assert after < full / 4, (full, after)
        hits = idx.search("bicycle", k=3)
        assert hits and hits[0].path == str(photos / "docs" / "note.txt")
        assert idx.search(image=photos / "img0.jpg", k=1)[0].path == str(photos / "img0.jpg")
    clean = _folder_bytes(tmp_path / "clean")
    assert after < 2 * clean + 2**20, (after, clean)
    with Index(index) as idx:
        idx.forget(photos)
    proc = cli("compact", "--index", index, "--json")
    sizes = json.loads(proc.stdout)
    assert sizes["after_bytes"] <= sizes["before_bytes"] and sizes["after_bytes"] < 2**20
    assert cli("compact", "--index", tmp_path / "nothing-here").returncode == 1
    assert not (tmp_path / "nothing-here").exists()
