"""A live index: `mmsearch watch` and Index.watch keep an index current while files change (added,
saved by rename, moved, deleted), a burst of files is a few runs, and a watch shows in `status`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine_helpers import make_collection, picture
from mmsearch import Index
from mmsearch.watch import WatchError

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")


def until(condition, timeout: float = 10.0, what: str = "the change") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} was not reflected within {timeout} s")


def paths_found(index: Path, text: str = "x", k: int = 100) -> set[str]:
    with Index(index, readonly=True) as idx:
        return {h.path for h in idx.search(text, mode="vector", k=k)}


def keyword_found(index: Path, text: str) -> set[str]:
    with Index(index, readonly=True) as idx:
        return {h.path for h in idx.search(text, mode="keyword", k=20)}


def test_changes_are_indexed_within_seconds(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={"note.txt": "the harbour master's old logbook"})
    index = tmp_path / "index"
    events: list = []
    with Index(index, model=toyclip) as idx:
        watch = idx.watch([photos], on_event=events.append, settle=0.5)
        try:
            until(lambda: any(e.kind == "reconciled" for e in events), what="the first run")
            assert paths_found(index) == {str(photos / "img0.jpg"), str(photos / "sub" / "img1.png"),
                                          str(photos / "docs" / "note.txt")}
            # added
            picture(7).save(photos / "new.png")
            until(lambda: str(photos / "new.png") in paths_found(index), what="a new picture")
            # saved by rename, as editors do: one update of the document, nothing else
            tmp = photos / "docs" / ".note.txt.swp"
            tmp.write_text("the lighthouse keeper's new logbook")
            os.replace(tmp, photos / "docs" / "note.txt")
            until(lambda: str(photos / "docs" / "note.txt") in keyword_found(index, "lighthouse"), what="a save")
            assert not keyword_found(index, "harbour")
            # moved: the vectors go with the file, nothing is encoded again
            os.rename(photos / "img0.jpg", photos / "renamed.jpg")
            until(lambda: any(e.report is not None and e.report.moved for e in events), what="a move")
            assert str(photos / "renamed.jpg") in paths_found(index) and str(photos / "img0.jpg") not in paths_found(index)
            moves = [e.report for e in events if e.report is not None and e.report.moved]
            assert len(moves) == 1 and moves[0].moved == 1 and moves[0].encoded_items == 0 and moves[0].added == 0
            # a folder moved: its files keep their vectors too
            os.rename(photos / "docs", photos / "papers")
            until(lambda: str(photos / "papers" / "note.txt") in keyword_found(index, "lighthouse"),
                  what="a folder's move")
            # deleted
            (photos / "sub" / "img1.png").unlink()
            until(lambda: str(photos / "sub" / "img1.png") not in paths_found(index), what="a deletion")
        finally:
            watch.stop()
    assert events[-1].kind == "stopped" and not any(e.kind == "error" for e in events)


def test_a_burst_of_files_is_a_few_runs(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    source = tmp_path / "source"
    source.mkdir()
    for i in range(2000):
        (source / f"note{i:04d}.txt").write_text(f"note number {i} about item{i}")
    events: list = []
    with Index(tmp_path / "index", model=toyclip) as idx:
        with idx.watch([photos], on_event=events.append, settle=1.0) as watch:
            until(lambda: any(e.kind == "reconciled" for e in events), what="the first run")
            shutil.copytree(source, photos / "copied")
            until(lambda: idx.status()["counts"]["document"] == 2000, timeout=120, what="a 2,000-file copy")
            assert watch.wait_idle(30)
            runs = [e for e in events if e.kind == "indexed"]
            assert 1 <= len(runs) <= 5, [e.paths for e in runs]
            assert watch.runs == len(runs) + 1


def test_a_watch_shows_in_status_and_a_second_is_refused(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    index = tmp_path / "index"
    env = {**os.environ, "MMSEARCH_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([MMSEARCH, "watch", str(photos), "--index", str(index), "--model", str(toyclip),
                             "--settle", "0.5", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        until(lambda: any('"reconciled"' in line for line in lines), timeout=60, what="the watch's first run")
        status = json.loads(subprocess.run([MMSEARCH, "status", "--index", str(index), "--json"], env=env,
                                           capture_output=True, text=True, check=True).stdout)
        assert status["watch"]["pid"] == proc.pid and status["watch"]["roots"] == [str(photos)]
        text = subprocess.run([MMSEARCH, "status", "--index", str(index)], env=env, capture_output=True,
                              text=True).stdout
        assert f"(pid {proc.pid})" in text
        second = subprocess.run([MMSEARCH, "watch", str(photos), "--index", str(index)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "another `mmsearch watch`" in second.stderr
        picture(3).save(photos / "later.png")
        until(lambda: any('"indexed"' in line for line in lines), what="a change under the watch")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
    reader.join(5)
    assert json.loads(lines[-1])["kind"] == "stopped"
    status = json.loads(subprocess.run([MMSEARCH, "status", "--index", str(index), "--json"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert status["watch"] is None and status["counts"]["image"] == 2


def test_update_takes_only_the_paths_it_is_given(tmp_path, toyclip):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=3, docs={})
    with Index(tmp_path / "index", model=toyclip) as idx:
        idx.index([photos])
        picture(20).save(photos / "a.png")
        picture(21).save(photos / "b.png")
        (photos / "img2.webp").unlink()
        report = idx.update([photos / "a.png", photos / "img2.webp"])
        assert (report.added, report.removed, report.unchanged) == (1, 1, 0)  # b.png waits for its own update
        found = {h.path for h in idx.search("x", mode="vector", k=10)}
        assert str(photos / "a.png") in found and str(photos / "b.png") not in found
        with pytest.raises(Exception, match="not inside a folder this index holds"):
            idx.update([tmp_path / "elsewhere.png"])
        with pytest.raises(WatchError):
            with idx.watch([photos], settle=0.5):
                with idx.watch([photos], settle=0.5):
                    pass


def test_a_stopped_watch_lets_the_next_one_start(tmp_path, toyclip):
    """The watch's lock is taken on the caller's thread and given back on the watch's own."""
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    with Index(tmp_path / "index", model=toyclip) as idx:
        idx.index([photos])
        for _ in range(2):
            watch = idx.watch(settle=0.3)
            assert watch.wait_idle(30) and idx.status()["watch"]["pid"] == os.getpid()
            watch.stop()
            assert idx.status()["watch"] is None


def test_lost_events_are_made_good_by_a_full_run(tmp_path, toyclip):
    """When the operating system's queue overflows (watchdog's EventsLostEvent) the watch cannot know
    what changed: it runs over its whole roots, so a change it never heard of is indexed all the same."""
    from watchdog.events import EventsLostEvent

    from mmsearch.watch import _handler

    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    index = tmp_path / "index"
    events: list = []
    with Index(index, model=toyclip) as idx:
        with idx.watch([photos], on_event=events.append, settle=0.3) as watch:
            assert watch.wait_idle(30)
            unheard = tmp_path / "unheard.png"  # made outside the roots, then moved in unseen: the
            picture(9).save(unheard)            # watch is paused by holding its events back
            watch._concerns, concerns = (lambda path: False), watch._concerns
            os.replace(unheard, photos / "unheard.png")
            time.sleep(1.0)
            assert watch.wait_idle(30) and str(photos / "unheard.png") not in paths_found(index)
            watch._concerns = concerns
            _handler(watch).dispatch(EventsLostEvent(str(photos)))
            until(lambda: str(photos / "unheard.png") in paths_found(index), what="a change after lost events")
    kinds = [e.kind for e in events]
    assert kinds.count("reconciled") == 2 and "events lost" in kinds
