"""Concurrent use: queries while an index run writes, a second index run, searches from many threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine_helpers import make_collection, picture
from mmsearch import Index

SLOW = ("--hold-steps", "0.05")  # a run of a few seconds


def index_cmd(photos: Path, index: Path, bundle: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch.cli", "index", str(photos), "--index", str(index), "--model", str(bundle),
            "--device", "cpu", *extra]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture()
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    make_collection(root, n_images=240)
    return root


def test_queries_from_other_processes_never_fail_and_see_a_consistent_state(tmp_path, photos, bundle):
    index = tmp_path / "index"
    seed = tmp_path / "seed"  # a first small run, so the index exists before the big one starts
    # Seeds unlike every picture in photos/: the query's own file must be its unambiguous top hit.
    make_collection(seed, n_images=2, docs={}, first_seed=10_000)
    assert subprocess.run(index_cmd(seed, index, bundle), env=env(), capture_output=True).returncode == 0
    writer = subprocess.Popen(index_cmd(photos, index, bundle, *SLOW), env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    cli_queries = [subprocess.Popen([sys.executable, "-m", "mmsearch.cli", "query", "harbour boats", "--index", str(index),
                                     "--min-similarity", "-1", "--json"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
    seen_counts = []
    queries = compared = 0
    while writer.poll() is None:
        with Index(index, readonly=True) as idx:  # a fresh reader each time, as a query command is
            before = idx.catalog.generation()
            ann_ids = idx.vectors.ids()
            live = idx.catalog.live_item_ids()
            if idx.catalog.generation() == before:  # no batch committed while we looked
                compared += 1
                assert ann_ids == live  # the reader's vector view agrees with the catalog it reads
            hits = idx.search(image=seed / "img0.jpg", k=5, type="image")
            assert hits and hits[0].path == str(seed / "img0.jpg")
            for h in hits:
                assert Path(h.path).exists()
            seen_counts.append(idx.catalog.counts()["image"])
            queries += 1
    out, err = writer.communicate()
    assert writer.returncode == 0, err
    for q in cli_queries:
        qout, qerr = q.communicate(timeout=60)
        assert q.returncode == 0, qerr
        assert json.loads(qout)
    assert queries >= 5 and compared >= 3 and seen_counts == sorted(seen_counts)  # never went backwards
    assert seen_counts[0] < 242 and len(set(seen_counts)) > 1  # the readers really ran while it wrote


def test_second_index_run_waits_saying_so_or_fails_at_once_with_no_wait(tmp_path, photos, bundle):
    index = tmp_path / "index"
    trace = tmp_path / "trace.log"
    first = subprocess.Popen(index_cmd(photos, index, bundle, "--json", *SLOW, "--trace-steps", str(trace)), env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (trace.exists() and "encode" in trace.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    more = tmp_path / "more"
    make_collection(more, n_images=3, docs={})
    busy = subprocess.run(index_cmd(more, index, bundle, "--no-wait"), env=env(), capture_output=True, text=True)
    assert busy.returncode == 3 and first.poll() is None  # it failed at once: the first run still goes on
    assert "another `mmsearch index` is writing this index" in busy.stderr
    second = subprocess.run(index_cmd(more, index, bundle, "--json"), env=env(), capture_output=True, text=True,
                            timeout=120)
    assert first.poll() is not None  # it waited for the first to finish
    out, err = first.communicate()
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert "Waiting for another `mmsearch index`" in second.stderr
    assert json.loads(second.stdout)["added"] == 3
    with Index(index, readonly=True) as idx:
        assert idx.catalog.counts()["image"] == 243
        assert idx.catalog.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert idx.vectors.ids() == idx.catalog.live_item_ids()
        runs = idx.catalog.conn.execute("SELECT status, started_at, finished_at FROM runs ORDER BY id").fetchall()
        assert [r[0] for r in runs] == ["done", "done"]
        assert runs[1][1] >= runs[0][2]  # the second run started once the first had finished


def test_library_search_from_many_threads_while_another_thread_indexes(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=6)
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([photos])
        for i in range(120):
            picture(500 + i, (64, 48)).save(photos / f"late{i}.png")
        errors: list[BaseException] = []
        stop = threading.Event()

        def searcher(n: int) -> None:
            try:
                while not stop.is_set():
                    hits = idx.search(image=photos / "img0.jpg", k=3, type="image")
                    assert hits[0].path == str(photos / "img0.jpg")
                    assert idx.search("lemon cake recipe", k=2, type="document")
                    idx.status()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=searcher, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            report = idx.index([photos])
        finally:
            time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors[:3]
        assert report.added == 120
        assert idx.vectors.ids() == idx.catalog.live_item_ids()
