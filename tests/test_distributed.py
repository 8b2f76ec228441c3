"""`mmsearch index --engine ray` on a real Ray cluster: a head node and a second node started as separate
processes by `ray start` (tests/ray_cluster.py), stopped at the end. The index it makes is the one a
local run makes; a killed driver or a lost worker loses nothing; shards resume without the cluster."""

from __future__ import annotations

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

from engine_helpers import make_collection, picture, scanned_pdf, sign
from test_private import modes, open_to_others

from mmsearch import Index, ocr

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")
INSTALL = "Ray is not installed: pip install 'mmsearch[distributed]' (scripts/setup.sh installs it)"
DOCS = {
    "harbour.txt": "The old harbour at dawn, fishing boats tied along the stone quay while gulls circle overhead.",
    "recipe.md": "# Lemon cake\n\nWhisk eggs and sugar, fold in flour and lemon zest, bake for forty minutes.",
    "long.txt": " ".join(f"Paragraph {i} tells of lighthouses, tides and the keeper's long nights." for i in range(60)),
}


def need_ray() -> None:
    """Skip where Ray is not installed; where CI says it must be (the full environment), fail instead."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("MMSEARCH_TEST_REQUIRE_RAY"):
            pytest.fail(INSTALL)
        pytest.skip(INSTALL)


@pytest.fixture(scope="module")
def cluster():
    need_ray()
    from ray_cluster import Cluster

    old = os.umask(0)  # the nodes' workers write the shards: with the most permissive umask (test_private.py)
    try:
        c = Cluster(head_cpus=1, workers=1, worker_cpus=1)
    finally:
        os.umask(old)
    try:
        c.wait_for_nodes(2)
        yield c
    finally:
        c.stop()


def make_world(root: Path) -> Path:
    photos = root / "photos"
    make_collection(photos, n_images=16, docs=DOCS)
    (photos / "broken.jpg").write_bytes(b"not a picture at all")
    (photos / "empty.png").write_bytes(b"")
    return photos


def run(*args, check=True, timeout=300):
    proc = subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mmsearch {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def files(index: Path) -> dict:
    conn = sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True)
    try:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT path, status, error, kind, content_hash, size, mtime_ns, width, height, ocr_hash FROM files")}
    finally:
        conn.close()


def vectors(index: Path) -> dict[str, np.ndarray]:
    conn = sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True)
    try:
        out: dict[str, list] = {}
        for path, vec in conn.execute("SELECT files.path, vectors.vector FROM items JOIN files ON files.id = items.file_id"
                                      " JOIN vectors ON vectors.item_id = items.id ORDER BY items.id"):
            out.setdefault(path, []).append(np.frombuffer(vec, np.float32))
        return {k: np.stack(v) for k, v in out.items()}
    finally:
        conn.close()


def words(index: Path) -> dict[str, list[tuple[str, int | None, str]]]:
    """The words read in pictures and scanned pages, by file."""
    conn = sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True)
    try:
        out: dict[str, list] = {}
        for path, kind, page, text in conn.execute(
                "SELECT files.path, items.kind, items.page, items.text FROM items JOIN files ON files.id = items.file_id"
                " WHERE items.kind = 'ocr' OR files.path LIKE '%.pdf' ORDER BY files.path, items.id"):
            out.setdefault(path, []).append((kind, page, text))
        return out
    finally:
        conn.close()


def min_cosine(a: Path, b: Path) -> float:
    va, vb = vectors(a), vectors(b)
    assert va.keys() == vb.keys() and all(len(va[k]) == len(vb[k]) for k in va)
    return min(float((va[k] * vb[k]).sum(axis=1).min()) for k in va)


@pytest.fixture(scope="module")
def indexed(cluster, bundle, tmp_path_factory):
    """The same collection indexed locally and on the cluster (through the command), fp32: vectors that
    do not depend on what else is in a batch, so the two compare exactly."""
    root = tmp_path_factory.mktemp("ray-world")
    photos = make_world(root)
    # Words to read after the commits: a picture with words, a scan (a PDF with no text layer).
    sign(["Bellavista Pizzeria"]).save(photos / "shop.png")
    scanned_pdf(photos / "docs" / "scan.pdf", [sign(["Harbour Master", "Opening hours"], size=(1240, 1754), px=60)])
    # A video: read on this machine (as words are), in a run on the cluster too.
    from benchmarks import toyvideos

    toyvideos.make(photos / "clip.mp4", [scene for scene, _ in toyvideos.scenes(2, seed=1)])
    with Index(root / "local", model=bundle, variant="fp32") as idx:
        local = idx.index([photos])
    out = run("index", photos, "--index", root / "ray", "--model", bundle, "--variant", "fp32", "--engine", "ray",
              "--ray-address", cluster.address, "--shard-files", "4", "--json")
    return root, photos, local, json.loads(out.stdout)


def test_a_ray_run_makes_the_index_a_local_run_makes(indexed):
    root, photos, local, report = indexed
    assert report["device"] == "ray: cpu"
    for key in ("added", "updated", "removed", "unchanged", "encoded_items"):
        assert report[key] == getattr(local, key), key
    assert sorted(map(str, report["errors"])) == sorted(map(str, local.errors)) and len(report["errors"]) == 2
    assert files(root / "ray") == files(root / "local")  # same files, statuses, reasons, hashes, sizes
    assert files(root / "ray")[str(photos / "clip.mp4")][:2] == ("indexed", None) and len(vectors(root / "ray")[str(photos / "clip.mp4")]) == 2
    assert min_cosine(root / "local", root / "ray") > 0.9999
    assert not (root / "ray" / "shards").exists()  # every shard committed and deleted
    with Index(root / "local", readonly=True) as a, Index(root / "ray", readonly=True) as b:
        for query in ("boats at the harbour", "lemon cake", "lighthouse keeper"):
            expect = [(h.path, round(h.score, 4)) for h in a.search(query, k=6)]
            assert [(h.path, round(h.score, 4)) for h in b.search(query, k=6)] == expect
        for image in ("img0.jpg", "sub/img3.jpg"):
            expect = [(h.path, round(h.score, 4)) for h in a.search(image=photos / image, k=4)]
            assert [(h.path, round(h.score, 4)) for h in b.search(image=photos / image, k=4)] == expect
        if ocr.installed():  # the words are read after the cluster's commits, as after a local run's
            assert report["ocr_read"] == local.ocr_read and report["ocr_with_words"] == local.ocr_with_words == 2
            assert words(root / "ray") == words(root / "local")
            for query, found in (("pizzeria", "shop.png"), ("harbour master", "docs/scan.pdf")):
                hits = b.search(query, mode="keyword", k=3)
                assert hits and hits[0].path == str(photos / found)
                assert [(h.path, h.page) for h in hits] == [(h.path, h.page) for h in a.search(query, mode="keyword", k=3)]


def test_a_ray_run_is_incremental(cluster, bundle, tmp_path):
    photos, index = make_world(tmp_path), tmp_path / "index"
    shard_dir, seen = index / "shards", {}
    with Index(index, model=bundle) as idx:
        old = os.umask(0)  # the most permissive umask, on the driver as on the workers (the cluster fixture)
        try:
            first = idx.index([photos], engine="ray", ray_address=cluster.address, shard_files=4,
                              observe=lambda step: seen.update(modes(shard_dir) if step == "commit" else {}))
            seen.update(modes(index))
        finally:
            os.umask(old)
        assert first.added == 19 and len(first.errors) == 2 and first.encoded_items > 19  # the long text: chunks
        # Private: the shards (each looked at as it was committed) and the folder's own files, as the index.
        assert sum(p.endswith(".parquet") for p in seen) >= 5 and str(shard_dir / "committed.txt") in seen
        assert "catalog.db-wal" in {os.path.basename(p) for p in seen} and seen[str(shard_dir)] == 0o700
        assert open_to_others(seen) == {}
        again = idx.index([photos], engine="ray", ray_address=cluster.address)
        assert again.unchanged == 19 and len(again.errors) == 2 and again.encoded_items == 0
        assert sorted(map(str, again.errors)) == sorted(map(str, first.errors))  # counted and listed alike
        assert again.device is None  # nothing was sent to the cluster
        os.utime(photos / "img0.jpg", (time.time() + 5, time.time() + 5))  # touched, same content
        picture(500).save(photos / "sub" / "img1.png")  # new content
        (photos / "img2.webp").unlink()
        shutil.copy(photos / "sub" / "img3.jpg", photos / "copy-of-img3.jpg")  # content embedded already
        shutil.copy(photos / "docs" / "long.txt", photos / "copy-of-long.txt")
        before = vectors(index)
        changed = idx.index([photos], engine="ray", ray_address=cluster.address)
    # img0 is read and hashed on the cluster and found unchanged: its vectors stay; the copies take the
    # vectors the index has for their content; only img1 is encoded.
    assert (changed.added, changed.updated, changed.removed, changed.unchanged) == (2, 1, 1, 17)
    assert changed.encoded_items == 1 and sorted(map(str, changed.errors)) == sorted(map(str, first.errors))
    after = vectors(index)
    assert np.array_equal(after[str(photos / "img0.jpg")], before[str(photos / "img0.jpg")])
    assert not np.allclose(after[str(photos / "sub" / "img1.png")], before[str(photos / "sub" / "img1.png")])
    assert np.array_equal(after[str(photos / "copy-of-img3.jpg")], after[str(photos / "sub" / "img3.jpg")])
    assert np.array_equal(after[str(photos / "copy-of-long.txt")], after[str(photos / "docs" / "long.txt")])
    copy, source = files(index)[str(photos / "copy-of-img3.jpg")], files(index)[str(photos / "sub" / "img3.jpg")]
    assert copy[:4] == source[:4] and copy[-2:] == source[-2:]  # status, error, kind, hash; width, height
    with Index(index, readonly=True) as idx:
        assert idx.search(image=photos / "sub" / "img1.png", k=1)[0].path == str(photos / "sub" / "img1.png")


def test_a_killed_driver_loses_nothing_and_a_rerun_finishes(cluster, bundle, tmp_path):
    from benchmarks.killtest import compare

    photos = make_world(tmp_path)
    with Index(tmp_path / "local", model=bundle, variant="fp32") as idx:
        idx.index([photos])
    index, trace = tmp_path / "ray", tmp_path / "trace"
    args = ["index", photos, "--index", index, "--model", bundle, "--variant", "fp32", "--engine", "ray",
            "--ray-address", cluster.address, "--shard-files", "2"]
    driver = subprocess.Popen([MMSEARCH, *map(str, args), "--trace-steps", trace, "--hold-steps", "1.5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (trace.exists() and trace.read_text().split().count("commit") >= 2):
            assert driver.poll() is None and time.monotonic() < deadline, "the run ended before its second commit"
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)  # inside its second shard's transaction
    finally:
        driver.wait(30)
    committed = {p: row for p, row in files(index).items()}
    assert 0 < len(committed) < len(files(tmp_path / "local"))
    before = {p: ids for p, ids in _item_ids(index).items()}
    report = json.loads(run(*args, "--json").stdout)
    assert report["cancelled"] is False and report["added"] > 0
    result = compare(tmp_path / "local", index, dim=json.loads((bundle / "manifest.json").read_text())["embedding_dim"])
    assert result["problems"] == []  # same files and vectors, item ids without gaps: nothing committed twice
    after = _item_ids(index)
    assert all(after[p] == ids for p, ids in before.items())  # committed work kept as it was
    assert result["runs"].get("interrupted") == 1


def _item_ids(index: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True)
    try:
        out: dict[str, list[int]] = {}
        for path, item in conn.execute("SELECT files.path, items.id FROM items JOIN files ON files.id = items.file_id"):
            out.setdefault(path, []).append(item)
        return out
    finally:
        conn.close()


def test_a_lost_worker_loses_nothing(cluster, bundle, tmp_path):
    """An encoding actor killed while the run goes on: Ray starts it again and retries its batch. The
    default variant here (int8 on a CPU): vectors within its bar of a local run's."""
    import psutil

    from mmsearch.int8_check import MIN_COSINE

    photos = make_world(tmp_path)
    with Index(tmp_path / "local", model=bundle) as idx:
        idx.index([photos])
    killed: list[int] = []

    def kill_an_encoder(step: str) -> None:
        if step != "commit" or killed:
            return
        for p in cluster.processes():
            try:
                if "EncodeImages" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
                    return
            except psutil.Error:
                pass

    with Index(tmp_path / "ray", model=bundle) as idx:
        report = idx.index([photos], engine="ray", ray_address=cluster.address, shard_files=2, observe=kill_an_encoder)
    assert killed, "no encoding actor was found to kill"
    assert report.added == 19 and len(report.errors) == 2 and not report.cancelled
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert min_cosine(tmp_path / "local", tmp_path / "ray") >= MIN_COSINE


def test_shards_left_by_a_killed_run_are_committed_before_the_scan(bundle, tmp_path):
    """No cluster: shards made by the workers' own code are found in the shard folder, committed, and
    their files are then unchanged, so nothing is sent; a shard committed twice changes nothing."""
    need_ray()
    from mmsearch.bundle import load_bundle
    from mmsearch.ingest import ray_tasks

    photos = make_world(tmp_path)
    with Index(tmp_path / "local", model=bundle, variant="fp32") as idx:
        idx.index([photos])
    index = tmp_path / "ray"
    with Index(index, model=bundle, variant="fp32") as idx:
        root_id = idx.catalog.add_root(str(photos))
    b = load_bundle(bundle)
    shard_dir = index / "shards"
    shard_dir.mkdir()
    found = sorted(p for p in photos.rglob("*") if p.is_file())
    for kind, suffixes in (("image", {".jpg", ".png", ".webp"}), ("document", {".txt", ".md"})):
        paths = [p for p in found if p.suffix in suffixes]
        batch = {"path": np.asarray([os.fsencode(p) for p in paths], dtype=object),
                 "root_id": np.full(len(paths), root_id), "size": np.asarray([p.stat().st_size for p in paths]),
                 "mtime_ns": np.asarray([p.stat().st_mtime_ns for p in paths]), "planned_size": np.full(len(paths), -1),
                 "planned_mtime_ns": np.full(len(paths), -1), "planned_hash": np.asarray([""] * len(paths), dtype=object),
                 "planned_status": np.asarray([""] * len(paths), dtype=object)}
        args = (str(bundle), b.manifest_sha256, "fp32", "cpu", 1, str(shard_dir))
        if kind == "image":
            out = ray_tasks.EncodeImages(*args)(ray_tasks.prepare_images(batch, b.image_spec))
        else:
            out = ray_tasks.EncodeDocuments(*args)(ray_tasks.prepare_documents(batch, str(bundle), b.manifest_sha256))
        first = shard_dir / out["shard"][0]
        shutil.copy(first, shard_dir / f"again-{first.name}")  # the same batch made twice
    with Index(index, variant="fp32") as idx:
        report = idx.index([photos], engine="ray", ray_address="127.0.0.1:1")  # no cluster there: none is needed
    assert report.added == 19 and len(report.errors) == 2 and report.unchanged == 0 and report.device is None
    assert files(index) == files(tmp_path / "local")
    assert min_cosine(tmp_path / "local", index) > 0.9999
    assert not shard_dir.exists()


def test_shards_keep_any_file_name_and_refuse_another_model(tmp_path):
    pytest.importorskip("pyarrow", reason=INSTALL)
    from mmsearch.ingest.records import Record
    from mmsearch.ingest.shards import ShardError, pending, read_shard, write_shard

    odd = os.fsdecode(b"/photos/caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    rows = [Record(path=odd, root_id=1, kind="image", size=10, mtime_ns=5, planned=None, status="indexed",
                     digest="ab", width=4, height=3, taken_at="2024-05-01T10:00:00+02:00",
                     vectors=np.arange(4, dtype=np.float32)[None]),
            Record(path="/docs/a.txt", root_id=1, kind="document", size=7, mtime_ns=6, planned=(7, 2, "cd", "indexed"),
                     status="indexed", digest="ef", vectors=np.ones((2, 4), np.float32),
                     chunks=[(None, 0, 5, "hello"), (None, 5, 9, "you")], note="cut"),
            Record(path="/x.jpg", root_id=1, kind="image", size=0, mtime_ns=1, planned=None, status="error",
                     error="empty file (0 bytes)")]
    name = write_shard(tmp_path, "mixed", list(reversed(rows)), 4, "m" * 64)
    assert write_shard(tmp_path, "mixed", rows, 4, "m" * 64) == name  # named by its files: the second replaces it
    assert [p.name for p in pending(tmp_path)] == [name]  # and nothing half-written left beside it
    back = read_shard(tmp_path / name, 4, "m" * 64)
    assert back[0].path == odd and back[0].taken_at == rows[0].taken_at and back[0].planned is None
    assert np.array_equal(back[0].vectors, rows[0].vectors) and back[2].vectors is None
    assert back[1].chunks == rows[1].chunks and back[1].planned == rows[1].planned and back[1].note == "cut"
    assert back[2].error == "empty file (0 bytes)"
    with pytest.raises(ShardError, match="another model"):
        read_shard(tmp_path / name, 4, "n" * 64)


def test_engine_ray_without_ray_says_how_to_install(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=1, docs={})
    code = "import sys; sys.modules['ray'] = None\nfrom mmsearch.cli import app\napp()"
    proc = subprocess.run([sys.executable, "-c", code, "index", str(photos), "--index", str(tmp_path / "index"),
                           "--model", str(bundle), "--engine", "ray"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pip install 'mmsearch[distributed]'" in proc.stderr
    assert not (tmp_path / "index" / "shards").exists()
    wrong = run("index", photos, "--index", tmp_path / "index", "--model", bundle, "--ray-address", "127.0.0.1:1",
                check=False)
    assert wrong.returncode == 2 and "--engine ray" in wrong.stderr
