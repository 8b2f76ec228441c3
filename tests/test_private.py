"""Private by default: an index holds the text of every document, the words in pictures, file names and
every photo's vector, so what mmsearch writes is its owner's alone. With the most permissive umask, an
index run (the OCR phase included), `compact`, the caches and the web app's thumbnails create nothing a
group or another account can read; an older index is tightened on its next write, saying so; another account's
index is never written (its files keep one owner) and stays readable.

The Ray run's shards are held to the same in test_distributed.py (it has the cluster)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import make_collection, scanned_pdf, sign

from mmsearch import Index, ocr, private

MMSEARCH = shutil.which("mmsearch") or os.path.join(os.path.dirname(sys.executable), "mmsearch")
POSIX = pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX's (Windows keeps ACLs)")
OTHER_UID = 54_321  # an account that is not the one running the tests


@pytest.fixture
def open_umask():
    """The most permissive umask (0o000) for this test, the old one back afterwards."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(*folders: Path) -> dict[str, int]:
    """Every file and folder under the folders (themselves included): path -> permission bits."""
    out = {}
    for folder in folders:
        for where, dirs, files in os.walk(folder):
            for name in [where, *(os.path.join(where, f) for f in dirs + files)]:
                try:
                    out[name] = stat.S_IMODE(os.lstat(name).st_mode)
                except FileNotFoundError:
                    pass  # renamed or deleted meanwhile
    return out


def open_to_others(seen: dict[str, int]) -> dict[str, str]:
    return {path: oct(mode) for path, mode in seen.items() if mode & 0o077}


def world(root: Path) -> Path:
    """Photos, documents and, where OCR is installed, a picture with words and a scanned page."""
    photos = root / "photos"
    make_collection(photos, n_images=4)
    if ocr.installed():
        sign(["Bellavista Pizzeria"]).save(photos / "shop.png")
        scanned_pdf(photos / "docs" / "scan.pdf", [sign(["Harbour Master"], size=(620, 877), px=48)])
    return photos


def run(*args: object, umask: int | None = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command, in a child with this umask."""
    return subprocess.run([MMSEARCH, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})},
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@POSIX
def test_an_index_run_its_caches_and_thumbnails_create_nothing_others_can_read(tmp_path, bundle, open_umask,
                                                                               monkeypatch):
    home = tmp_path / "home"  # a fresh MMSEARCH_HOME: the caches are made by this run
    monkeypatch.setenv("MMSEARCH_HOME", str(home))
    photos = world(tmp_path)
    index = tmp_path / "new" / "folders" / "index"
    seen: dict[str, int] = {}
    renamed: dict[str, int] = {}  # temporary files and folders, as they were just before their rename
    real_replace, real_rename = os.replace, os.rename

    def noted(src: str | os.PathLike[str]) -> None:
        if str(tmp_path) in os.fspath(src):
            renamed.update(modes(Path(src)) if os.path.isdir(src) else {os.fspath(src): stat.S_IMODE(os.lstat(src).st_mode)})

    def replace(src, dst, **kw):
        noted(src)
        return real_replace(src, dst, **kw)

    def rename(src, dst, **kw):
        noted(src)
        return real_rename(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)

    with Index(index, model=bundle) as idx:
        report = idx.index([photos], observe=lambda step: seen.update(modes(index)))
        seen.update(modes(index, home))  # the catalog's -wal and -shm exist while it is open
        assert report.added >= 7 and not report.errors
        if ocr.installed():
            assert report.ocr_read >= 2 and report.ocr_with_words >= 2  # the OCR phase ran, and wrote
        from mmsearch.web.thumbs import Thumbnails

        item = idx.catalog.item_file(idx.search(image=photos / "img0.jpg", k=1)[0].item_id)
        Thumbnails(index).get(item)  # the web app's thumbnail cache, in the index folder
        seen.update(modes(index, home))
    names = {os.path.basename(p) for p in seen}
    assert {"catalog.db", "catalog.db-wal", "catalog.db-shm", "vectors.json", "vectors-1.npy", "vectors-1.hnsw",
            "index.lock", "thumbs"} <= names
    assert any(".tmp-" in p and "vectors-" in p for p in renamed)  # the vector files before their rename
    assert any("vectors.json.tmp" in p for p in renamed) and any("thumbs" in p for p in renamed)
    assert any("/cache/ort/" in p for p in seen) and any("/cache/int8-check/" in p for p in seen)
    assert open_to_others(seen) == {} and open_to_others(renamed) == {}
    # The folders it made to hold the index, and MMSEARCH_HOME, are private too.
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o700 for p in (tmp_path / "new", index.parent, index, home))


@POSIX
def test_the_command_creates_a_private_index_and_tightens_an_old_one_on_its_next_write(tmp_path, bundle):
    photos = world(tmp_path)
    index = tmp_path / "index"
    first = run("index", photos, "--index", index, "--model", bundle, "--no-ocr")
    assert first.returncode == 0, first.stderr
    assert open_to_others(modes(index)) == {} and stat.S_IMODE(os.stat(index).st_mode) == 0o700
    assert "readable by other accounts" not in first.stderr
    # `compact` rewrites the catalog (VACUUM) and, with a removed photo's slot in it, the graph.
    (photos / "img0.jpg").unlink()
    assert run("index", photos, "--index", index, "--no-ocr").returncode == 0
    saved = {p.name for p in index.glob("vectors-*")}
    compacted = run("compact", "--index", index)
    assert compacted.returncode == 0, compacted.stderr
    assert {p.name for p in index.glob("vectors-*")} != saved  # new vector files were written
    assert open_to_others(modes(index)) == {}

    # An index as earlier versions left it: the folder 0755, its files 0644.
    for path in modes(index):
        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
    status = json.loads(run("status", "--index", index, "--json").stdout)["access"]
    assert status["yours"] and not status["private"] and "catalog.db" in status["readable_by_others"]
    assert "access:  readable by other accounts (the folder, " in run("status", "--index", index).stdout
    assert f"index {index}: readable by other accounts" in run("doctor", "--index", index).stdout

    again = run("index", photos, "--index", index)  # the next write
    assert again.returncode == 0, again.stderr
    said = [line for line in again.stderr.splitlines() if "readable by other accounts" in line]
    assert len(said) == 1 and str(index) in said[0] and "made private" in said[0]
    assert open_to_others(modes(index)) == {}
    assert json.loads(run("status", "--index", index, "--json").stdout)["access"]["private"] is True
    assert "access:  private (only you)" in run("status", "--index", index).stdout
    assert f"index {index}: private (only you)" in run("doctor", "--index", index).stdout


def give_away(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the folder another account's: for real where the tests run as root, else by this process
    taking another account's number."""
    if os.geteuid() == 0:
        for path in modes(folder):
            os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    else:
        me = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each file's bytes and owner (SQLite's -shm, which a reader may create, left out)."""
    return {p.name: (p.read_bytes(), p.stat().st_uid) for p in folder.iterdir()
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


@POSIX
def test_another_accounts_index_is_refused_for_writing_and_stays_readable(tmp_path, bundle, monkeypatch):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=3)
    index = tmp_path / "index"
    with Index(index, model=bundle) as idx:
        idx.index([photos], ocr=False)
    give_away(index, monkeypatch)
    before = snapshot(index)

    for attempt in (lambda: Index(index, model=bundle), lambda: Index(index)):
        with pytest.raises(private.NotOwnerError, match=r"this index belongs to .*uid .*run as its owner"):
            attempt()
    with Index(index, readonly=True) as idx:  # reading works
        assert idx.search("harbour boats", mode="keyword", k=3)
        access = idx.status()["access"]
        assert access["yours"] is False and "not to you: read-only here" in access["summary"]
        from mmsearch.web.thumbs import Thumbnails

        item = idx.catalog.item_file(idx.search(image=photos / "img0.jpg", k=1)[0].item_id)
        assert Thumbnails(index).get(item).data  # served, not cached in another account's folder
    assert not (index / "thumbs").exists()
    assert snapshot(index) == before  # not a byte written, no file of another owner
    assert {p.stat().st_uid for p in index.iterdir()} == {index.stat().st_uid}

    if os.geteuid() == 0:  # the command, as a process of its own (the account is real)
        refused = run("index", photos, "--index", index)
        assert refused.returncode == 1 and f"uid {OTHER_UID}" in refused.stderr and "run as its owner" in refused.stderr
        assert run("forget", photos, "--index", index).returncode == 1
        assert run("compact", "--index", index).returncode == 1
        assert "not to you: read-only here" in run("status", "--index", index).stdout
        assert snapshot(index) == before


@POSIX
@pytest.mark.skipif(os.name == "posix" and os.geteuid() != 0, reason="giving one file to another account needs root")
def test_an_index_with_a_file_of_another_account_is_not_written(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    index = tmp_path / "index"
    with Index(index, model=bundle) as idx:
        idx.index([photos], ocr=False)
    os.chown(index / "vectors.json", OTHER_UID, OTHER_UID)
    before = snapshot(index)
    with pytest.raises(private.NotOwnerError, match=r"vectors.json: belongs to uid 54321.*two owners"):
        Index(index)
    assert snapshot(index) == before


@POSIX
def test_a_folder_is_made_private_whatever_the_umask(tmp_path, open_umask):
    made = private.make_folder(tmp_path / "a" / "b")
    with private.open_file(made / "f", "wb") as f:
        f.write(b"x")
    os.umask(0o277)  # one that takes the owner's own write bit away
    private.make_folder(made / "c")
    assert {p: oct(m) for p, m in modes(tmp_path / "a").items()} == {
        str(tmp_path / "a"): "0o700", str(made): "0o700", str(made / "f"): "0o600", str(made / "c"): "0o700"}


@POSIX
def test_tightening_takes_the_group_and_others_bits_away_and_leaves_the_owners(tmp_path, caplog):
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "catalog.db").write_bytes(b"")
    (folder / "catalog.db").chmod(0o444)  # made read-only on purpose: it stays so
    folder.chmod(0o555)
    try:
        with caplog.at_level("WARNING", logger="mmsearch"):
            private.claim(folder)
        assert oct(stat.S_IMODE(folder.stat().st_mode)) == "0o500"
        assert oct(stat.S_IMODE((folder / "catalog.db").stat().st_mode)) == "0o400"
        assert [r.getMessage() for r in caplog.records] == [
            f"{folder}: this index was readable by other accounts (2 files and folders); made private: only you "
            "can read it now"]
        caplog.clear()
        private.claim(folder)  # private already: nothing to say
        assert caplog.records == []
    finally:
        folder.chmod(0o700)


@POSIX
def test_a_folder_of_the_users_own_given_as_the_index_keeps_its_other_files_as_they_are(tmp_path, bundle):
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    folder = tmp_path / "mine"  # an existing folder with the user's own files, given with --index
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    for path, mode in ((folder, 0o755), (folder / "sub", 0o755), (folder / "notes.txt", 0o644)):
        path.chmod(mode)
    for _ in range(2):  # created, then opened again to write
        with Index(folder, model=bundle) as idx:
            idx.index([photos], ocr=False)
            access = idx.status()["access"]
    assert access["private"] is True and access["summary"] == "private (only you)"
    assert {os.path.relpath(p, folder): oct(m) for p, m in modes(folder).items()} == {
        ".": "0o755", "sub": "0o755", "notes.txt": "0o644",  # the user's, as they were
        "catalog.db": "0o600", "vectors.json": "0o600", "vectors-1.hnsw": "0o600", "vectors-1.npy": "0o600",
        "index.lock": "0o600"}


@POSIX
def test_a_file_system_that_keeps_no_permissions_costs_the_privacy_not_the_index(tmp_path, bundle, monkeypatch,
                                                                                  caplog):
    """FAT or exFAT (a USB disk): its mount options set every mode and a chmod fails with EPERM. The index
    is written all the same, and the run says that it stays readable by others."""
    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    index = tmp_path / "index"
    index.mkdir(mode=0o755)
    index.chmod(0o755)

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused)
    monkeypatch.setattr(os, "fchmod", refused)
    with caplog.at_level("WARNING", logger="mmsearch"):
        for _ in range(2):  # created; then opened again, its folder still open to others
            with Index(index, model=bundle) as idx:
                assert idx.index([photos], ocr=False).errors == []
    said = [r.getMessage() for r in caplog.records if "does not keep permissions" in r.getMessage()]
    assert len(said) == 2 and all("stays readable by other accounts of this machine (the folder" in m for m in said)
    assert not any("made private" in r.getMessage() for r in caplog.records)
