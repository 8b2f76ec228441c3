"""Bad input, Ctrl-C, a full disk and a read-only index: the run goes on or fails clearly, nothing is lost.

Permissions: the tests run as root, and root ignores file modes. The tests that need real
permission checks run the CLI with CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH / CAP_FOWNER dropped
from the bounding set (`setpriv --bounding-set -dac_override,...`): uid 0 then obeys the modes
like any user (a non-root uid cannot run this venv's interpreter, which lives under /root). They
are skipped where setpriv cannot drop capabilities. The unreadable-file path is also tested
in-process by making the read raise PermissionError. A full disk is simulated with SQLite's
`PRAGMA max_page_count` (SQLite then reports SQLITE_FULL exactly as on a full disk) and, for the
ANN file, with os.replace raising ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine_helpers import make_collection, picture
from mmsearch import Index
from mmsearch.ingest import images as ingest_images
from mmsearch.ingest import run as ingest_run
from mmsearch.catalog import SCHEMA_VERSION, CatalogWriteError

DROP_CAPS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def cli(*args: str, env: dict | None = None, prefix: list[str] | None = None, timeout: float = 300):
    cmd = [*(prefix or []), sys.executable, "-m", "mmsearch.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def can_drop_caps() -> bool:
    if shutil.which("setpriv") is None:
        return False
    return subprocess.run([*DROP_CAPS, "true"], capture_output=True).returncode == 0


needs_real_permissions = pytest.mark.skipif(
    not can_drop_caps() and os.geteuid() == 0, reason="running as root and setpriv cannot drop CAP_DAC_OVERRIDE")


def as_unprivileged() -> list[str]:
    return DROP_CAPS if os.geteuid() == 0 else []


# -- a folder of hostile and odd files -----------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _pdf(path: Path, text: str, password: str | None = None) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    if password:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(str(path)))
        writer.encrypt(user_password=password, owner_password=password + "-owner")
        with open(path, "wb") as f:
            writer.write(f)


# name -> (expected status, a word the error reason must contain, or None for indexed)
EXPECTED = {
    "truncated.jpg": ("error", "truncated"),
    "empty.jpg": ("error", "empty"),
    "text-named.jpg": ("error", "not an image"),
    "bomb.png": ("error", "pixels"),
    "cmyk.jpg": ("indexed", None),
    "sixteen.png": ("indexed", None),
    "palette.png": ("indexed", None),
    "animated.gif": ("indexed", None),
    "rotated.jpg": ("indexed", None),
    "broken-link.jpg": ("error", "broken symlink"),
    "loop-a.jpg": ("error", "symlink"),
    "loop-b.jpg": ("error", "symlink"),
    "encrypted.pdf": ("error", "encrypted"),
    "corrupt.pdf": ("error", "PDF"),
    "junk.txt": ("error", "binary"),
    "big.txt": ("indexed", None),
    "fine.pdf": ("indexed", None),
    "ok.png": ("indexed", None),
}
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff.png")  # not UTF-8: indexed, stored with its exact bytes
UNREADABLE = "unreadable.jpg"  # chmod 000
VANISHING = "vanishing.jpg"  # deleted between the scan and its read


def make_hostile(root: Path) -> Path:
    root.mkdir(parents=True)
    good = picture(1, (80, 60))
    buf = root / "full.jpg"
    picture(2, (400, 300)).save(buf, quality=95)
    (root / "truncated.jpg").write_bytes(buf.read_bytes()[: buf.stat().st_size // 2])
    buf.unlink()
    (root / "empty.jpg").write_bytes(b"")
    (root / "text-named.jpg").write_text("this is a shopping list, not a photo\n")
    (root / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    good.convert("CMYK").save(root / "cmyk.jpg", quality=90)
    arr16 = (np.linspace(0, 65535, 80 * 60).reshape(60, 80)).astype(np.uint16)
    Image.fromarray(arr16).save(root / "sixteen.png")  # mode I;16: a 16-bit greyscale PNG
    pal = good.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    frames = [picture(s, (64, 48)) for s in (3, 4, 5)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the upright picture is 60 x 80
    good.save(root / "rotated.jpg", exif=exif.tobytes(), quality=90)
    os.symlink(root / "does-not-exist.jpg", root / "broken-link.jpg")
    os.symlink(root / "loop-b.jpg", root / "loop-a.jpg")
    os.symlink(root / "loop-a.jpg", root / "loop-b.jpg")
    (root / "sub").mkdir()
    os.symlink(root, root / "sub" / "back-to-top")  # a folder loop: cut, nothing indexed twice
    good.save(os.path.join(os.fsencode(root), os.fsencode(NON_UTF8)))
    _pdf(root / "encrypted.pdf", "A secret harbour plan.", password="hunter2")
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\n" + bytes(range(256)) * 8)
    _pdf(root / "fine.pdf", "Fishing boats in the old harbour at dawn.")
    (root / "junk.txt").write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    line = b"The quick brown fox jumps over the lazy dog near the harbour wall at dusk.\n"
    with open(root / "big.txt", "wb") as f:  # 50 MB
        for _ in range(50_000_000 // (len(line) * 1000) + 1):
            f.write(line * 1000)
    good.save(root / "ok.png")
    good.save(root / UNREADABLE)
    (root / UNREADABLE).chmod(0)
    picture(7, (64, 48)).save(root / VANISHING)
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    return make_hostile(tmp_path_factory.mktemp("hostile") / "files")


def test_hostile_files_in_process_each_indexed_or_recorded(tmp_path, bundle, hostile, monkeypatch):
    """Every odd file is indexed right or recorded with its reason; the run goes on."""
    vanishing = str(hostile / VANISHING)
    saved = (hostile / VANISHING).read_bytes()
    real_plan = ingest_run.plan

    def plan_then_delete(*a, **kw):  # the file goes away after the scan saw it
        p = real_plan(*a, **kw)
        os.unlink(vanishing)
        return p

    real_read = ingest_images.read

    def read(path):  # root reads anything: make this one's read fail as it does for a user
        if path.endswith(UNREADABLE):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_read(path)

    monkeypatch.setattr(ingest_run, "plan", plan_then_delete)
    monkeypatch.setattr(ingest_images, "read", read)
    try:
        with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
            report = idx.index([hostile])
            rows = {os.path.basename(r[0]): (r[1], r[2]) for r in idx.catalog.conn.execute(
                "SELECT path, status, error FROM files")}
            by_bytes = {bytes(r[0]) for r in idx.catalog.conn.execute(
                "SELECT path_bytes FROM files WHERE path_bytes IS NOT NULL AND status = 'indexed'")}
            status = idx.status()
            assert idx.vectors.ids() == idx.catalog.live_item_ids()
            rotated = idx.catalog.conn.execute("SELECT width, height, orientation FROM files WHERE path LIKE '%rotated.jpg'").fetchone()
            hits = idx.search("fox jumps over the lazy dog harbour", k=3, mode="keyword", type="document")
    finally:
        (hostile / VANISHING).write_bytes(saved)
    reported = {os.path.basename(e["path"]): e["reason"] for e in report.errors}
    for name, (want, word) in EXPECTED.items():
        assert name in rows, f"{name} is neither indexed nor recorded"
        got, reason = rows[name]
        assert got == want, (name, got, reason)
        if word:
            assert word.lower() in reason.lower(), (name, reason)
            assert word.lower() in reported[name].lower(), (name, reported[name])
    assert rows[UNREADABLE] == ("error", "cannot read (Permission denied)")
    assert rows[VANISHING] == ("error", "vanished before it could be read")
    assert os.fsencode(hostile / NON_UTF8) in by_bytes
    assert rotated == (60, 80, 6)
    assert not any("back-to-top" in p for p in rows), "the folder loop was followed"
    assert hits and hits[0].path.endswith("big.txt")
    errors_listed = {os.path.basename(e["path"]) for e in status["errors"]}
    assert {n for n, (s, _) in EXPECTED.items() if s == "error"} | {UNREADABLE, VANISHING} <= errors_listed
    assert report.added == sum(1 for s, _ in EXPECTED.values() if s == "indexed") + 1  # + the non-UTF-8 name


def test_hostile_files_through_the_cli_exit_0_bounded_memory_and_status(tmp_path, bundle, hostile):
    """The real command: exit 0 when only files were skipped, peak memory bounded, `status` lists them."""
    index = tmp_path / "index"
    wrapper = (
        "import resource, runpy, sys\n"
        "sys.argv = ['mmsearch'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('mmsearch.cli', run_name='__main__')\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, GBs by now).
        "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    print('MAXRSS_KB', hwm, file=sys.stderr)\n"
    )
    r = subprocess.run([*as_unprivileged(), sys.executable, "-c", wrapper, "index", str(hostile), "--index", str(index),
                        "--model", str(bundle), "--device", "cpu", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    reasons = {os.path.basename(e["path"]): e["reason"] for e in report["errors"]}
    for name, (want, word) in EXPECTED.items():
        assert (name in reasons) == (want == "error"), (name, reasons.get(name))
    if as_unprivileged() or os.geteuid() != 0:
        assert "permission denied" in reasons[UNREADABLE].lower()
    maxrss_mb = int(r.stderr.split("MAXRSS_KB")[1].split()[0]) / 1024
    # The 50 MB text file streams (4M characters indexed) and is hashed in chunks; decodes are bounded in flight.
    assert maxrss_mb < 700, f"peak memory {maxrss_mb:.0f} MB"
    st = cli("status", "--index", str(index))
    assert st.returncode == 0, st.stderr
    for name, (want, _) in EXPECTED.items():
        if want == "error":
            assert f"{name}: " in st.stdout, name
    st_json = json.loads(cli("status", "--index", str(index), "--json").stdout)
    assert st_json["counts"]["errors"] >= sum(1 for s, _ in EXPECTED.values() if s == "error")
    assert st_json["schema_version"] == SCHEMA_VERSION


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_stops_within_two_seconds_keeps_work_and_says_how_to_resume(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=160, docs={})
    index, trace = tmp_path / "index", tmp_path / "trace.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mmsearch.cli", "index", str(photos), "--index", str(index), "--model", str(bundle),
           "--device", "cpu", "--json", "--trace-steps", str(trace), "--hold-steps", "0.15"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # interrupt once a batch is committed and the next one is encoding
        lines = trace.read_text().split() if trace.exists() else []
        if "commit" in lines and lines[-1] == "encode":
            break
        time.sleep(0.01)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert took < 2.0, f"took {took:.2f}s to stop"
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in err
    report = json.loads(out)
    assert report["cancelled"] and 0 < report["added"] < 160
    with Index(index, readonly=True) as idx:
        assert idx.catalog.last_run()["status"] == "cancelled"
        kept = idx.catalog.counts()["image"]
        assert kept == report["added"]
        assert idx.vectors.ids() == idx.catalog.live_item_ids()  # the unsaved ANN tail comes from the catalog
    again = cli("index", str(photos), "--index", str(index), "--model", str(bundle), "--device", "cpu", "--json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["unchanged"] == kept and rerun["added"] == 160 - kept  # finished work is not redone


def test_cancel_during_the_scan_deletes_nothing(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=4)
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([photos])
        before = idx.catalog.counts()
        report = idx.index([photos], cancel=lambda: True)
        assert report.cancelled and report.removed == 0
        assert idx.catalog.counts() == before


# -- a full disk, a read-only index ----------------------------------------------------------------


def test_disk_full_in_a_catalog_commit_fails_clearly_and_keeps_the_committed_state(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=6)
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:
        idx.index([photos])
        first = idx.catalog.counts()
        for i in range(300):
            picture(100 + i, (64, 48)).save(photos / f"more{i}.png")
        big = "words " * 200_000
        (photos / "docs" / "long.txt").write_text(big)
        pages = idx.catalog.conn.execute("PRAGMA page_count").fetchone()[0]
        idx.catalog.conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # SQLITE_FULL soon, as on a full disk
        with pytest.raises(CatalogWriteError, match="disk is full"):
            idx.index([photos])
    with Index(tmp_path / "index", readonly=True) as idx:
        counts = idx.catalog.counts()
        assert counts["image"] >= first["image"]
        assert idx.catalog.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert idx.vectors.ids() == idx.catalog.live_item_ids()
        assert idx.search(image=photos / "img0.jpg", k=1)[0].path == str(photos / "img0.jpg")
    with Index(tmp_path / "index", model=bundle, device="cpu") as idx:  # space again: the run resumes
        report = idx.index([photos])
        assert not report.errors and idx.catalog.counts()["image"] == 306


def test_disk_full_in_an_ann_save_fails_with_exit_2_and_a_clear_message(tmp_path, bundle, monkeypatch):
    from typer.testing import CliRunner

    from mmsearch import vectors as vectors_mod
    from mmsearch.cli import app

    photos = tmp_path / "photos"
    make_collection(photos, n_images=6)
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst).endswith(".hnsw"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(vectors_mod.os, "replace", replace)
    result = CliRunner().invoke(app, ["index", str(photos), "--index", str(tmp_path / "index"), "--model", str(bundle),
                                      "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "disk is full" in result.output and "run the same command to resume" in result.output
    monkeypatch.undo()
    assert not list((tmp_path / "index").glob("*.tmp-*"))
    with Index(tmp_path / "index", readonly=True) as idx:  # everything committed is there and searchable
        assert idx.catalog.counts()["image"] == 6
        assert idx.search(image=photos / "img0.jpg", k=1)[0].path == str(photos / "img0.jpg")


@needs_real_permissions
def test_read_only_index_folder_fails_clearly_untouched_and_stays_queryable(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=4)
    index = tmp_path / "index"
    assert cli("index", str(photos), "--index", str(index), "--model", str(bundle), "--device", "cpu").returncode == 0
    (photos / "new.png").write_bytes((photos / "img0.jpg").read_bytes())
    picture(50).save(photos / "new.png")
    before = {p.name: p.read_bytes() for p in index.iterdir()}
    index.chmod(0o555)
    for f in index.iterdir():
        f.chmod(0o444)
    try:
        r = cli("index", str(photos), "--index", str(index), "--model", str(bundle), "--device", "cpu",
                prefix=as_unprivileged())
        assert r.returncode != 0
        assert "read-only" in r.stderr and "Traceback" not in r.stderr
        q = cli("query", "--image", str(photos / "img0.jpg"), "--index", str(index), "--json", prefix=as_unprivileged())
        assert q.returncode == 0, q.stderr
        assert json.loads(q.stdout)[0]["path"] == str(photos / "img0.jpg")
    finally:
        index.chmod(0o755)
        for f in index.iterdir():
            f.chmod(0o644)
    assert {p.name: p.read_bytes() for p in index.iterdir()} == before


@needs_real_permissions
def test_unreadable_file_for_real(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={"secret.txt": "a private note about the harbour"})
    (photos / "img0.jpg").chmod(0)
    (photos / "docs" / "secret.txt").chmod(0)
    r = cli("index", str(photos), "--index", str(tmp_path / "index"), "--model", str(bundle), "--device", "cpu",
            "--json", prefix=as_unprivileged())
    assert r.returncode == 0, r.stderr
    reasons = {os.path.basename(e["path"]): e["reason"] for e in json.loads(r.stdout)["errors"]}
    assert "permission denied" in reasons["img0.jpg"].lower()
    assert "permission denied" in reasons["secret.txt"].lower()


# -- wrong models --------------------------------------------------------------------------------


def test_index_opened_with_another_model_is_refused_with_what_to_do(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    index = tmp_path / "index"
    assert cli("index", str(photos), "--index", str(index), "--model", str(bundle), "--device", "cpu").returncode == 0
    other = tmp_path / "other-model"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["name"] = "another-model"
    (other / "manifest.json").write_text(json.dumps(manifest))
    before = (index / "catalog.db").read_bytes()
    for cmd in (["index", str(photos)], ["query", "red car"]):
        r = cli(*cmd, "--index", str(index), "--model", str(other), "--device", "cpu")
        assert r.returncode != 0
        assert "was built with model" in r.stderr and "--model" in r.stderr and "Traceback" not in r.stderr
    assert (index / "catalog.db").read_bytes() == before


def test_bundle_whose_files_do_not_match_their_sha256_is_refused(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    for stamp in damaged.glob(".*"):
        stamp.unlink()
    onnx = next(damaged.glob("image.*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    onnx.write_bytes(bytes(data))
    r = cli("index", str(photos), "--index", str(tmp_path / "index"), "--model", str(damaged), "--device", "cpu",
            "--variant", "fp32")
    assert r.returncode != 0
    assert "does not match the manifest" in r.stderr and "export it again" in r.stderr
    assert "Traceback" not in r.stderr
