"""Videos: found by moment. Toy-world videos written with PyAV (benchmarks/toyvideos.py: a few scenes of
three seconds, H.264 in MP4, VP9 in WebM, one turned by its display matrix) are indexed with toyclip;
each scene's caption finds its video at a time inside that scene. A run killed inside a long video
resumes from the part it reached and ends equal to a clean run; a truncated or corrupt video is in
error with its reason and nothing else is lost."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmsearch import Index
from mmsearch import video

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # web_helpers
from benchmarks import toyvideos  # noqa: E402

SCENES = toyvideos.scenes(9, seed=3)
CLIPS = {  # name: (codec, display rotation, the scenes it shows)
    "harbour.mp4": ("libx264", 0, SCENES[0:3]),
    "garden.webm": ("libvpx-vp9", 0, SCENES[3:6]),
    "portrait.mov": ("libx264", 90, SCENES[6:9]),
}
CREATED = "2024-05-06T07:08:09.000000Z"


def cli(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "mmsearch", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def library(tmp_path_factory, toyclip):
    """The three clips and a photo, indexed: (folder, index folder, {clip: scene spans})."""
    folder = tmp_path_factory.mktemp("videos") / "library"
    folder.mkdir()
    spans = {}
    for name, (codec, rotate, scenes) in CLIPS.items():
        spans[name] = toyvideos.make(folder / name, [s for s, _ in scenes], codec=codec, rotate=rotate, seed=len(name),
                                     creation_time=CREATED if name == "portrait.mov" else None)
    from benchmarks import toyworld

    toyworld.render(toyvideos.scenes(1, seed=99)[0][0], 160, 120, np.random.default_rng(0)).save(folder / "photo.jpg")
    index = folder.parent / "index"
    with Index(index, model=toyclip, device="cpu") as idx:
        report = idx.index([folder])
    assert report.errors == [] and report.added == 4, report
    return folder, index, spans


def test_each_scene_is_found_in_its_video_at_a_moment_inside_it(library, toyclip):
    folder, index, spans = library
    with Index(index, model=toyclip, device="cpu", readonly=True) as idx:
        for name, (_, _, scenes) in CLIPS.items():
            for (scene, caption), (start, end) in zip(scenes, spans[name]):
                hits = idx.search(caption, k=3, min_similarity=-1)
                assert len(hits) == 3
                right = [h for h in hits if Path(h.path).name == name and start <= h.time_s < end]
                assert right, (caption, name, (start, end), [(Path(h.path).name, h.time_s) for h in hits])
                assert right[0].kind == "video" and right[0].to_dict()["time_s"] == right[0].time_s


def test_a_video_is_a_result_once_per_moment_and_type_video_keeps_to_videos(library, toyclip):
    folder, index, spans = library
    with Index(index, model=toyclip, device="cpu", readonly=True) as idx:
        hits = idx.search(SCENES[0][1], k=20, min_similarity=-1, type="video")
        assert {h.kind for h in hits} == {"video"}
        moments = [(h.path, h.time_s) for h in hits]
        assert len(moments) == len(set(moments))
        # One video may come back more than once, at moments apart; never two within a moment.
        for path in {p for p, _ in moments}:
            times = sorted(t for p, t in moments if p == path)
            assert all(b - a >= 5.0 for a, b in zip(times, times[1:])), times
        assert len(hits) <= 20
        assert all(h.kind == "image" for h in idx.search(SCENES[0][1], k=5, type="image", min_similarity=-1))


def test_container_facts_and_rotation_are_kept(library, toyclip):
    folder, index, spans = library
    info = video.probe(str(folder / "portrait.mov"))
    # Stored 120x160 and turned by its display matrix: upright it is 160x120, as it was drawn.
    assert (info.rotation, info.width, info.height) == (90, 160, 120)
    assert info.taken_at is not None and info.taken_at.isoformat() == "2024-05-06T07:08:09+00:00"
    assert info.duration_s == pytest.approx(9.0, abs=0.3)
    catalog = sqlite3.connect(index / "catalog.db")
    row = catalog.execute("SELECT kind, media_type, width, height, taken_at, duration_s, status, done_s FROM files"
                          " WHERE path LIKE '%portrait.mov'").fetchone()
    assert row[:5] == ("video", "video/quicktime", 160, 120, "2024-05-06T07:08:09+00:00")
    assert row[5] == pytest.approx(9.0, abs=0.3) and row[6:] == ("indexed", None)
    with Index(index, model=toyclip, device="cpu", readonly=True) as idx:
        hit = idx.search(SCENES[7][1], k=1, min_similarity=-1)[0]
        assert Path(hit.path).name == "portrait.mov"
        thumb = idx.thumbnail(hit.item_id, 64)
        assert thumb.size == (64, 48)  # upright (the stored frames are portrait)


def test_cli_prints_the_moment_and_json_carries_it(library):
    folder, index, spans = library
    out = cli("query", SCENES[4][1], "--index", index, "--type", "video", "-k", "2", "--min-similarity", "-1")
    first = next(line for line in out.stdout.splitlines() if line.startswith("1 "))
    assert "video" in first and "garden.webm (00:03)" in first, out.stdout
    rows = json.loads(cli("query", SCENES[4][1], "--index", index, "--type", "video", "-k", "2",
                          "--min-similarity", "-1", "--json").stdout)
    assert rows[0]["kind"] == "video" and rows[0]["time_s"] == 3.0 and rows[0]["path"].endswith("garden.webm")
    status = cli("status", "--index", index).stdout
    assert "3 videos (9 frames)" in status, status


def test_a_picture_finds_the_moment_and_similar_starts_from_a_frame(library, toyclip, tmp_path):
    folder, index, spans = library
    from benchmarks import toyworld

    picture = tmp_path / "query.png"
    toyworld.render(SCENES[5][0], 160, 120, np.random.default_rng(5)).save(picture)
    with Index(index, model=toyclip, device="cpu", readonly=True) as idx:
        hit = idx.search(image=picture, k=1)[0]
        assert Path(hit.path).name == "garden.webm" and 6.0 <= hit.time_s < 9.0
        like = idx.similar(folder / "harbour.mp4", at=6.0, k=3)
        assert like and all(Path(h.path).name != "harbour.mp4" for h in like)
        with pytest.raises(Exception, match="a moment"):
            idx.similar(folder / "photo.jpg", at=1.0)


def test_a_video_with_one_keyframe_is_decoded_whole_and_keeps_a_frame_per_scene(tmp_path, toyclip):
    """A screen recording's keyframes can be minutes apart: where they leave a gap longer than
    video.MAX_GAP_S, the part is decoded whole, so each scene still has its frame, and none is more
    than MAX_GAP_S after the last."""
    folder = tmp_path / "lib"
    folder.mkdir()
    scenes = toyvideos.scenes(4, seed=4)
    spans = toyvideos.make(folder / "screen.mp4", [s for s, _ in scenes], seconds=12.0, fps=5, gop_s=1000,
                           options={"x264-params": "scenecut=0"})
    import av

    with av.open(str(folder / "screen.mp4")) as c:
        assert sum(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size) == 1
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        idx.index([folder])
        times = [r[2] for r in _frames(tmp_path / "index")]
        for (scene, caption), (start, end) in zip(scenes, spans):
            assert any(start <= t < end for t in times), (times, (start, end))
            hits = idx.search(caption, k=3, min_similarity=-1)
            assert any(start <= h.time_s < end for h in hits), (caption, (start, end), [h.time_s for h in hits])
    gaps = [b - a for a, b in zip([0.0, *times], [*times, spans[-1][1]])]
    assert max(gaps) <= video.MAX_GAP_S + 0.5, times
    assert all(b - a >= video.MIN_GAP_S for a, b in zip(times, times[1:])), times


def test_a_truncated_or_corrupt_video_is_in_error_with_its_reason_and_nothing_else_is_lost(tmp_path, toyclip):
    folder = tmp_path / "lib"
    folder.mkdir()
    toyvideos.make(folder / "good.mp4", [SCENES[0][0]])
    data = (folder / "good.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is written last: gone
    (folder / "noise.mkv").write_bytes(bytes(range(256)) * 40)
    (folder / "empty.webm").write_bytes(b"")
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        report = idx.index([folder])
        errors = {Path(e["path"]).name: e["reason"] for e in report.errors}
        assert set(errors) == {"cut.mp4", "noise.mkv", "empty.webm"}, errors
        assert all("not a video FFmpeg can read" in r for r in errors.values()), errors
        assert report.added == 1
        assert idx.counts()["video"] == 1 and idx.counts()["errors"] == 3
        assert {Path(e["path"]).name for e in idx.status()["errors"]} == set(errors)


def _frames(index: Path) -> list[tuple]:
    conn = sqlite3.connect(index / "catalog.db")
    rows = conn.execute("SELECT files.path, items.id, items.time_s, vectors.vector, files.status, files.done_s"
                        " FROM items JOIN files ON files.id = items.file_id JOIN vectors ON vectors.item_id = items.id"
                        " ORDER BY items.id").fetchall()
    conn.close()
    return rows


def test_a_run_killed_inside_a_long_video_resumes_from_the_part_it_reached(tmp_path, toyclip):
    """A video of four parts (video.PART_S each): the run is killed once two parts are committed; the
    next run keeps them (their items' ids stay, nothing is encoded again) and ends equal to a clean run."""
    folder = tmp_path / "lib"
    folder.mkdir()
    scenes = [s for s, _ in toyvideos.scenes(12, seed=5)]
    spans = toyvideos.make(folder / "long.mp4", scenes, seconds=10.0, fps=2, size=(96, 72), drift=0.05)
    assert spans[-1][1] > 3 * video.PART_S
    clean = tmp_path / "clean"
    with Index(clean, model=toyclip, device="cpu") as idx:
        idx.index([folder])
    expected = [(t, v) for _, _, t, v, _, _ in _frames(clean)]

    index = tmp_path / "index"
    trace = tmp_path / "trace"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(folder), "--index", str(index),
                             "--model", str(toyclip), "--no-ocr", "--trace-steps", str(trace), "--hold-steps", "0.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if trace.exists() and trace.read_text().split().count("commit") >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _frames(index)
    assert before and {r[4] for r in before} == {"indexing"} and before[0][5] in (video.PART_S, 2 * video.PART_S)
    assert len(before) < len(expected)

    with Index(index, model=toyclip, device="cpu") as idx:
        report = idx.index([folder])
    after = _frames(index)
    assert [(t, v) for _, _, t, v, _, _ in after] == expected
    assert {r[4] for r in after} == {"indexed"} and {r[5] for r in after} == {None}
    # The frames committed before the kill kept their items: nothing was encoded again.
    assert [r[1] for r in after[: len(before)]] == [r[1] for r in before]
    assert [r[1] for r in after] == list(range(1, len(after) + 1))
    assert report.encoded_items == len(expected) - len(before) and report.added == 1


def test_a_cancel_between_parts_keeps_them_and_the_next_run_goes_on(tmp_path, toyclip):
    folder = tmp_path / "lib"
    folder.mkdir()
    toyvideos.make(folder / "long.webm", [s for s, _ in toyvideos.scenes(7, seed=2)], seconds=10.0, fps=2,
                   size=(96, 72), codec="libvpx-vp9")
    commits = []
    progress = []
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        report = idx.index([folder], observe=lambda step: commits.append(step) if step == "commit" else None,
                           cancel=lambda: len(commits) >= 1, progress=progress.append)
        assert report.cancelled and report.added == 0
        first = _frames(tmp_path / "index")
        assert first and {(r[4], r[5]) for r in first} == {("indexing", video.PART_S)}
        assert idx.counts()["videos_in_part"] == 1
        # Found already by what was committed.
        assert idx.search(toyvideos.scenes(7, seed=2)[0][1], k=1, min_similarity=-1)[0].time_s == 0.0
        commits.clear()
        progress.clear()
        report = idx.index([folder], progress=progress.append)
        assert not report.cancelled and report.added == 1 and idx.counts()["videos_in_part"] == 0
    # The run tells how far into the video it has got, part by part.
    assert [p.video_s for p in progress if p.video_s is not None] == [2 * video.PART_S]
    assert [r[1:3] for r in _frames(tmp_path / "index")][: len(first)] == [r[1:3] for r in first]


def test_a_moved_video_keeps_its_frames(tmp_path, toyclip):
    folder = tmp_path / "lib"
    (folder / "a").mkdir(parents=True)
    toyvideos.make(folder / "a" / "clip.webm", [s for s, _ in SCENES[:2]], codec="libvpx-vp9")
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        idx.index([folder])
        before = _frames(tmp_path / "index")
        shutil.move(folder / "a", folder / "b")
        report = idx.index([folder])
        assert report.moved == 1 and report.encoded_items == 0
        after = _frames(tmp_path / "index")
        assert [r[1:4] for r in after] == [r[1:4] for r in before] and after[0][0].endswith("b/clip.webm")


# -- the web app: a moment's frame, and the video played from it ------------------------------------


def test_the_web_app_shows_the_frame_and_serves_the_video_in_ranges(library, tmp_path, toyclip):
    pytest.importorskip("starlette", reason="the web app needs its extra: pip install -e '.[web]'")
    pytest.importorskip("uvicorn", reason="the web app needs its extra: pip install -e '.[web]'")
    from urllib.parse import quote

    from PIL import Image
    from web_helpers import get

    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    folder, index, spans = library
    clip = folder / "harbour.mp4"
    data = clip.read_bytes()
    with BackgroundServer(WebSettings(index_dir=index)) as srv:
        hits = get(srv.url, f"/api/search?q={quote(SCENES[1][1])}&type=video&k=1&min_similarity=-1").json()
        assert hits[0]["kind"] == "video" and hits[0]["path"] == str(clip) and 3.0 <= hits[0]["time_s"] < 6.0
        item = hits[0]["item_id"]
        d = get(srv.url, f"/api/item/{item}").json()
        assert (d["kind"], d["time_s"], d["media_type"], d["thumbnail"]) == ("video", hits[0]["time_s"], "video/mp4", True)
        thumb = get(srv.url, f"/api/thumb/{item}?size=large")
        assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.body)).size == (160, 120)
        whole = get(srv.url, f"/api/file/{item}")
        assert whole.status == 200 and whole.body == data and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-disposition"] == 'inline; filename="harbour.mp4"'
        part = get(srv.url, f"/api/file/{item}", headers={"Range": "bytes=100-1099"})
        assert part.status == 206 and part.body == data[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        assert get(srv.url, f"/api/file/{item}", headers={"Range": "bytes=-500"}).body == data[-500:]
        assert get(srv.url, f"/api/file/{item}", headers={"Range": f"bytes={len(data) - 10}-"}).body == data[-10:]
        past = get(srv.url, f"/api/file/{item}", headers={"Range": f"bytes={len(data)}-"})
        assert past.status == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
        # The page may play media from this server (its own files, nothing else).
        assert "media-src 'self'" in get(srv.url, "/").headers["content-security-policy"]

    # A range is served only while the file is the one indexed, as the whole file is.
    mine = tmp_path / "lib"
    mine.mkdir()
    toyvideos.make(mine / "clip.mp4", [SCENES[0][0]])
    with Index(tmp_path / "index", model=toyclip, device="cpu") as idx:
        idx.index([mine])
        item = idx.search(SCENES[0][1], k=1, min_similarity=-1)[0].item_id
    toyvideos.make(mine / "clip.mp4", [SCENES[1][0]], seconds=4.0)  # another video under the indexed name
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        for headers in ({}, {"Range": "bytes=0-99"}):
            r = get(srv.url, f"/api/file/{item}", headers=headers)
            assert r.status == 409 and "changed since it was indexed" in r.json()["error"]
        assert get(srv.url, f"/api/thumb/{item}").status == 409
