"""What a search returns: k files when k match, one score in [0, 1] that means the same on every row,
why each hit is there, dates compared as instants in the user's time zone, and paths that open the
file whatever bytes its name holds."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from engine_helpers import picture, set_mtime
from mmsearch import Index

SENTENCES = [
    "The committee reviewed the budget for the harbour bridge and asked for a second survey.",
    "Rain fell on the valley for three days and the river rose above the old stone markers.",
    "She packed the telescope, two maps and a thermos of tea before climbing the northern ridge.",
    "Every spring the orchard fills with bees and the farmers count the blossoms on each tree.",
]


def long_document(seed: int, paragraphs: int = 300) -> str:
    return "\n\n".join(f"{SENTENCES[(seed + i) % 4]} Section {seed}.{i}." for i in range(paragraphs))


@pytest.fixture(scope="module")
def crowded(tmp_path_factory, toyclip):
    """8 long documents (many chunks each) beside 5 photos."""
    root = tmp_path_factory.mktemp("crowded")
    folder = root / "files"
    folder.mkdir()
    for i in range(8):
        (folder / f"doc{i:02}.txt").write_text(long_document(i))
    for i in range(5):
        picture(i).save(folder / f"photo{i}.png")
    idx = Index(root / "index", model=toyclip, device="cpu")
    idx.index([folder])
    yield idx, folder
    idx.close()


@pytest.mark.parametrize("k", [1, 5, 10, 13])
def test_k_files_whenever_k_match(crowded, k):
    idx, _ = crowded
    assert idx.catalog.counts()["chunks"] >= 8 * 8  # the crowd: items of a few files fill any short list
    for mode in ("hybrid", "vector"):  # the floor off: everything matches by meaning
        hits = idx.search("the river rose above the old stone markers", k=k, mode=mode, min_similarity=-1)
        assert len(hits) == k and len({h.path for h in hits}) == k, mode
    # With the model's floor, the 8 documents that hold the words, then what is close enough in meaning.
    hits = idx.search("the river rose above the old stone markers", k=k)
    assert {h.match for h in hits[: min(k, 8)]} <= {"words", "both"} and len(hits) >= min(k, 8)
    assert len({h.path for h in hits}) == len(hits) <= k
    assert len(idx.search("stone markers", k=k, mode="keyword")) == min(k, 8)  # every document holds the words
    assert len(idx.search("a picture", k=k, type="document", mode="vector")) == min(k, 8)
    assert len(idx.search("a picture", k=k, type="image", mode="vector")) == min(k, 5)


def test_images_are_not_crowded_out_of_a_mixed_search(crowded):
    idx, folder = crowded
    hits = idx.search(image=folder / "photo0.png", k=13)
    assert {h.path for h in hits if h.kind == "image"} == {str(folder / f"photo{i}.png") for i in range(5)}


def test_similar_gives_k_other_files(crowded):
    idx, folder = crowded
    hits = idx.similar(folder / "doc00.txt", k=12)
    assert len(hits) == 12 and str(folder / "doc00.txt") not in {h.path for h in hits}


def test_one_score_in_0_1_whose_bands_say_why(crowded):
    """score in [0, 1], best first, on one scale: 0.5 and up holds all the query's words (0.75 and up
    as a phrase), below 0.5 found by meaning; `match` says the same; `similarity` is the cosine
    wherever a vector took part."""
    idx, folder = crowded
    marks = {"hybrid": {"words", "both", "meaning"}, "vector": {"meaning"}, "keyword": {"words"}}
    for mode, allowed in marks.items():
        for text in ("the river rose", "river the rose", "zzzz unmatched words", "orchard zzzz"):
            hits = idx.search(text, k=12, mode=mode, min_similarity=-1 if mode == "hybrid" else None)
            assert all(0.0 <= h.score <= 1.0 for h in hits), (mode, text)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), (mode, text)
            assert {h.match for h in hits} <= allowed, (mode, text)
            assert all((h.similarity is None) == (mode == "keyword") for h in hits)
            if mode == "hybrid":  # 0.5 and up: holds all the words; below: related (by meaning, or some words)
                assert all(h.match in ("words", "both") for h in hits if h.score >= 0.5), text
                assert all(h.score < 0.5 for h in hits if h.match == "meaning"), text
    phrase = idx.search("the river rose", k=12)
    assert all(h.score >= 0.75 for h in phrase if h.kind == "document")  # the phrase is in every document
    apart = idx.search("river the rose", k=12)
    assert all(0.5 <= h.score < 0.75 for h in apart if h.kind == "document")  # all the words, not as a phrase
    assert all(h.score < 0.5 and h.match == "meaning" for h in idx.search(image=folder / "photo0.png", k=12))


# -- dates ---------------------------------------------------------------------------------------


def photo_with_exif(path: Path, taken: str, offset: str | None = None, seed: int = 0) -> None:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = taken  # DateTimeOriginal, "YYYY:MM:DD HH:MM:SS"
    if offset:
        ifd[0x9011] = offset  # OffsetTimeOriginal
    picture(seed).save(path, "JPEG", exif=exif)


@pytest.fixture()
def tokyo(monkeypatch):
    """The user lives in UTC+9, so local time and UTC fall on different days."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_dates_are_instants_in_local_time(tmp_path, toyclip, tokyo):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo_with_exif(photos / "morning.jpg", "2024:05:01 09:00:00", seed=1)  # camera clock: local time
    photo_with_exif(photos / "paris.jpg", "2024:05:01 09:00:00", "+02:00", seed=2)  # 16:00 in Tokyo
    late = photos / "late.png"  # no EXIF: dated by mtime, 23:30 local on May 1st (14:30 UTC)
    picture(3).save(late)
    set_mtime(late, datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=9))).timestamp())
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        idx.index([photos])

        def names(**filters):
            return sorted(Path(h.path).name for h in idx.search("x", mode="vector", k=10, **filters))

        assert names(after="2024-05-01T12:00") == ["late.png", "paris.jpg"]  # 09:00 is before noon
        assert names(after="2024-05-01 12:00") == ["late.png", "paris.jpg"]  # a space instead of the T
        assert names(before="2024-05-01T12:00") == ["morning.jpg"]
        assert names(before="2024-05-02") == ["late.png", "morning.jpg", "paris.jpg"]  # local midnight
        assert names(after="2024-05-02") == []
        assert names(after="2024-05-01T06:00Z") == ["late.png", "paris.jpg"]  # 15:00 in Tokyo
        assert names(after="2024-05-01T14:00Z") == ["late.png"]  # 23:00 in Tokyo
        assert names(after=datetime(2024, 5, 1, 6, 0, tzinfo=timezone.utc)) == ["late.png", "paris.jpg"]
        assert names(after=datetime(2024, 5, 1, 15, 0)) == ["late.png", "paris.jpg"]  # naive: local
        assert names(after="2024-05-01T16:00:01") == ["late.png"]
        paris = idx.search(image=photos / "paris.jpg", k=1)[0]
        assert paris.taken_at == "2024-05-01T09:00:00+02:00"


# -- file names that are not UTF-8 ---------------------------------------------------------------


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file system takes only Unicode names")
def test_a_non_utf8_name_is_returned_as_a_path_that_opens(tmp_path, toyclip):
    photos = tmp_path / "photos"
    photos.mkdir()
    raw = os.fsencode(photos) + b"/caf\xe9.jpg"
    buf = io.BytesIO()
    picture(7).save(buf, "JPEG")
    with open(raw, "wb") as f:
        f.write(buf.getvalue())
    index = tmp_path / "index"
    with Index(index, model=toyclip, device="cpu") as idx:
        idx.index([photos])
        hit = idx.search(image=os.fsdecode(raw), k=1)[0]
        with open(hit.path, "rb") as f:  # the API's path opens the file
            assert f.read() == buf.getvalue()
        assert os.fsencode(hit.path) == raw
        assert idx.similar(hit.path, k=1) == []  # and is accepted back
    mmsearch = os.path.join(os.path.dirname(sys.executable), "mmsearch")
    out = subprocess.run([mmsearch, "query", "--image", os.fsdecode(raw), "--index", str(index), "--json"],
                         capture_output=True, timeout=120, check=True).stdout
    hit_json = json.loads(out.decode("utf-8"))[0]  # valid UTF-8 JSON
    assert hit_json["path"] == str(photos) + "/caf\\xe9.jpg" and hit_json["path_encoding"] == "bytes"
    assert base64.b64decode(hit_json["path_bytes_b64"]) == raw
