"""What a walk leaves out: the default excludes (folders that are not the user's own material), the
.mmsearchignore files, and the files of types mmsearch does not read, counted rather than dropped
silently; and the cap on a document's text, a setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmsearch import Index
from mmsearch.errors import InvalidArgument

ROOT = Path(__file__).resolve().parent.parent
CACHE_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# a cache; see https://bford.info/cachedir/\n"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def indexed(idx: Index, root: Path) -> set[str]:
    """The indexed files, relative to root, with '/' between folders."""
    return {os.path.relpath(row.fs_path, root).replace(os.sep, "/")
            for rid, _ in idx.catalog.roots() for row in idx.catalog.files_of_root(rid)}


def open_index(tmp_path: Path, toyclip: Path) -> Index:
    return Index(tmp_path / "index", model=toyclip, device="cpu")


MINE = {"notes/plan.txt": "the plan for the garden", "build/report.md": "a build report I wrote",
        "dist/letter.txt": "a letter to send", "fakecache/CACHEDIR.TAG": "not the signature",
        "fakecache/kept.txt": "a tag file without the signature hides nothing"}
NOT_MINE = {"node_modules/pkg/README.md": "a package's readme", "src/__pycache__/junk.txt": "bytecode cache",
            "env/pyvenv.cfg": "home = /usr/bin", "env/lib/site.txt": "inside a virtualenv",
            "venv/notes.txt": "a virtualenv by name", "target/CACHEDIR.TAG": CACHE_TAG,
            "target/debug/build.txt": "inside a tagged cache", ".git/description.txt": "version control"}


def test_folders_that_are_not_the_users_own_are_skipped_by_default_and_indexed_when_asked(tmp_path: Path,
                                                                                           toyclip: Path):
    root = tmp_path / "files"
    write(root, {**MINE, **NOT_MINE, ".notes/mine.txt": "a hidden folder of my own"})
    from mmsearch.media import kind_of

    mine = {p for p in MINE if kind_of(p)}  # the files of types mmsearch reads
    with open_index(tmp_path, toyclip) as idx:
        report = idx.index([root], ocr=False)
        assert indexed(idx, root) == mine and report.added == len(mine) and not report.errors
        # Hidden folders come with include_hidden; .git stays a default exclude.
        idx.index([root], include_hidden=True, ocr=False)
        assert indexed(idx, root) == mine | {".notes/mine.txt"}
        report = idx.index([root], include_hidden=True, default_excludes=False, ocr=False)
        everything = {p for p in {**MINE, **NOT_MINE} if kind_of(p)} | {".notes/mine.txt"}
        assert indexed(idx, root) == everything and report.added == len(everything - mine) - 1
        # Back to the defaults: what they skip leaves the index, as a deleted file does.
        report = idx.index([root], ocr=False)
        assert indexed(idx, root) == mine and report.removed == len(everything - mine)


def test_the_command_takes_no_default_excludes_and_include_hidden(tmp_path: Path, toyclip: Path):
    root = tmp_path / "files"
    write(root, {"a.txt": "mine", "node_modules/x/readme.md": "theirs", ".hidden/h.txt": "hidden"})
    cmd = [sys.executable, "-m", "mmsearch", "index", str(root), "--index", str(tmp_path / "index"),
           "--model", str(toyclip), "--device", "cpu", "--no-ocr", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 1
    out = subprocess.run(cmd + ["--no-default-excludes", "--include-hidden"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 2


def test_mmsearchignore_files_are_read_as_git_reads_gitignore(tmp_path: Path, toyclip: Path):
    root = tmp_path / "files"
    write(root, {
        ".mmsearchignore": "# mine\ndrafts/\nsecret*\n!secret-keep.txt\n/top-only.txt\n",
        "a.txt": "kept", "drafts/d.txt": "a draft", "secret1.txt": "a secret", "secret-keep.txt": "brought back",
        "top-only.txt": "anchored to the root", "deep/top-only.txt": "not at the root: kept",
        "sub/.mmsearchignore": "!drafts/\nlocal.txt\n",
        "sub/drafts/sd.txt": "brought back by the deeper file", "sub/local.txt": "ignored here",
        "local.txt": "the deeper file does not reach up",
    })
    with open_index(tmp_path, toyclip) as idx:
        report = idx.index([root], ocr=False)
        assert not report.errors
        assert indexed(idx, root) == {"a.txt", "secret-keep.txt", "deep/top-only.txt", "sub/drafts/sd.txt",
                                      "local.txt"}
        # An update of paths inside the root judges them by the same files.
        report = idx.update([root / "drafts", root / "sub" / "local.txt", root / "secret-keep.txt"])
        assert report.added == 0 and report.removed == 0
        assert indexed(idx, root) == {"a.txt", "secret-keep.txt", "deep/top-only.txt", "sub/drafts/sd.txt",
                                      "local.txt"}


def test_a_newly_ignored_folder_leaves_the_index(tmp_path: Path, toyclip: Path):
    root = tmp_path / "files"
    write(root, {"a.txt": "kept", "old/one.txt": "old one", "old/two.md": "old two", "more/three.txt": "three"})
    with open_index(tmp_path, toyclip) as idx:
        assert idx.index([root], ocr=False).added == 4
        (root / ".mmsearchignore").write_text("old/\n")
        report = idx.index([root], ocr=False)
        assert report.removed == 2 and indexed(idx, root) == {"a.txt", "more/three.txt"}
        assert idx.search("old one", mode="keyword") == []
        # A watch's update of the folder whose .mmsearchignore changed does the same.
        (root / "more" / ".mmsearchignore").write_text("three.txt\n")
        report = idx.update([root / "more"])
        assert report.removed == 1 and indexed(idx, root) == {"a.txt"}
        # And taking the pattern away brings the files back.
        (root / ".mmsearchignore").unlink()
        assert idx.index([root], ocr=False).added == 2


def test_files_of_types_not_read_are_counted_by_suffix(tmp_path: Path, toyclip: Path):
    root = tmp_path / "files"
    write(root, {"a.txt": "read", "talk.key": "k", "slides/b.KEY": "k", "doc.pages": "p",
                 ".hidden.key": "hidden: not walked", "node_modules/x.key": "excluded: not walked"})
    (root / "core").write_bytes(b"\x7fELF\x02\x01\x00\x00" * 64)  # no suffix, and not text: not read
    with open_index(tmp_path, toyclip) as idx:
        report = idx.index([root], ocr=False)
        expected = {".key": 2, "(no suffix)": 1, ".pages": 1}
        assert report.not_read == expected and list(report.not_read) == list(expected)  # most first
        assert report.to_dict()["not_read"] == expected
        assert idx.status()["not_read"] == expected
        # A later run's walk replaces the counts; an update of some paths does not.
        (root / "talk.key").unlink()
        assert idx.update([root / "slides"]).not_read == {".key": 1}
        assert idx.status()["not_read"] == expected
        assert idx.index([root], ocr=False).not_read == {".key": 1, "(no suffix)": 1, ".pages": 1}
        assert idx.status()["not_read"] == {".key": 1, "(no suffix)": 1, ".pages": 1}

    # A folder indexed on its own, then the folder around it: its files are counted once.
    with open_index(tmp_path / "nested", toyclip) as idx:
        idx.index([root / "slides"], ocr=False)
        assert idx.status()["not_read"] == {".key": 1}
        idx.index([root], ocr=False)
        assert len(idx.status()["roots"]) == 2
        assert idx.status()["not_read"] == {".key": 1, "(no suffix)": 1, ".pages": 1}


def test_the_command_and_status_say_what_was_not_read(tmp_path: Path, toyclip: Path):
    root = tmp_path / "files"
    write(root, {"a.txt": "read", **{f"deck{i}.key": "k" for i in range(3)}, "doc.pages": "p"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    index = ["--index", str(tmp_path / "index")]
    out = subprocess.run([sys.executable, "-m", "mmsearch", "index", str(root), *index, "--model", str(toyclip),
                          "--device", "cpu", "--no-ocr", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["not_read"] == {".key": 3, ".pages": 1}
    out = subprocess.run([sys.executable, "-m", "mmsearch", "status", *index], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "not read: 3 .key, 1 .pages" in out.stdout
    out = subprocess.run([sys.executable, "-m", "mmsearch", "status", *index, "--json"], capture_output=True,
                         text=True, env=env)
    assert json.loads(out.stdout)["not_read"] == {".key": 3, ".pages": 1}


def test_the_cap_on_a_documents_text_is_a_setting(tmp_path: Path, toyclip: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "files"
    body = " ".join(f"word{i}" for i in range(3000))  # ~26,000 characters
    write(root, {"long.txt": "aardvark opening\n\n" + body + "\n\nzyzzyva ending\n", "short.txt": "a short one"})
    monkeypatch.setenv("MMSEARCH_MAX_DOCUMENT_CHARS", "5000")
    with open_index(tmp_path, toyclip) as idx:
        report = idx.index([root], ocr=False)
        assert report.added == 2 and not report.errors
        [partial] = report.partial
        assert partial["path"].endswith("long.txt")
        assert "first 5,000 characters" in partial["reason"] and "MMSEARCH_MAX_DOCUMENT_CHARS" in partial["reason"]
        assert len(idx.search("aardvark", mode="keyword")) == 1
        assert idx.search("zyzzyva", mode="keyword") == []
    # The option wins over the setting; 0 is no limit.
    with open_index(tmp_path / "whole", toyclip) as idx:
        report = idx.index([root], ocr=False, max_document_chars=0)
        assert report.partial == [] and len(idx.search("zyzzyva", mode="keyword")) == 1
        with pytest.raises(InvalidArgument, match="max_document_chars"):
            idx.index([root], max_document_chars=-1)
        monkeypatch.setenv("MMSEARCH_MAX_DOCUMENT_CHARS", "lots")
        with pytest.raises(InvalidArgument, match="MMSEARCH_MAX_DOCUMENT_CHARS='lots'"):
            idx.index([root])


def test_a_watch_applies_a_changed_mmsearchignore(tmp_path: Path, toyclip: Path):
    import time

    root = tmp_path / "files"
    write(root, {"a.txt": "kept", "old/one.txt": "old one", "old/two.md": "old two"})
    events: list = []
    with open_index(tmp_path, toyclip) as idx:
        watch = idx.watch([root], on_event=events.append, settle=0.3)
        try:
            end = time.monotonic() + 20
            while not any(e.kind == "reconciled" for e in events) and time.monotonic() < end:
                time.sleep(0.1)
            assert indexed(idx, root) == {"a.txt", "old/one.txt", "old/two.md"}
            (root / ".mmsearchignore").write_text("old/\n")
            while not any(e.report is not None and e.report.removed for e in events) and time.monotonic() < end:
                time.sleep(0.1)
        finally:
            watch.stop()
        assert indexed(idx, root) == {"a.txt"}
    assert not any(e.kind == "error" for e in events)


def test_a_long_documents_progress_is_told_as_it_is_written(tmp_path: Path, toyclip: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    from mmsearch.ingest import documents

    monkeypatch.setattr(documents, "BIG_DOCUMENT_CHARS", 1000)
    monkeypatch.setattr(documents, "WRITE_BATCH", 64)  # a document of a few batches
    root = tmp_path / "files"
    write(root, {"long.txt": " ".join(f"word{i}" for i in range(6000)), "short.txt": "short"})
    seen = []
    with open_index(tmp_path, toyclip) as idx:
        idx.index([root], ocr=False, progress=seen.append)
    within = [p.characters for p in seen if p.characters is not None]
    assert len(within) >= 3 and within == sorted(within) and within[-1] >= 40_000
    assert {os.path.basename(p.path) for p in seen if p.characters is not None} == {"long.txt"}


def test_a_cancel_inside_a_long_document_keeps_what_was_read_and_the_next_run_reads_it_whole(
        tmp_path: Path, toyclip: Path, monkeypatch: pytest.MonkeyPatch):
    from mmsearch.ingest import documents

    monkeypatch.setattr(documents, "BIG_DOCUMENT_CHARS", 1000)
    monkeypatch.setattr(documents, "WRITE_BATCH", 64)  # a document of many batches
    root = tmp_path / "files"
    write(root, {"long.txt": " ".join(f"word{i}" for i in range(20000))})
    within: list[int] = []

    def progress(p) -> None:
        if p.characters is not None:
            within.append(p.characters)

    with open_index(tmp_path, toyclip) as idx:
        report = idx.index([root], ocr=False, progress=progress, cancel=lambda: len(within) >= 2)
        assert report.cancelled and report.added == 1
        [partial] = report.partial
        assert partial["path"].endswith("long.txt") and "stopped while it read this file" in partial["reason"]
        # What was read before the stop is searchable, and the file opens; what lies past it is not yet.
        [hit] = idx.search("word5", mode="keyword")
        assert hit.path == str(root / "long.txt")
        with Index.open_file(idx.item(hit.item_id)) as f:
            assert f.read(5) == b"word0"
        assert idx.search("word19999", mode="keyword") == []
        kept = idx.counts()["chunks"]
        assert 0 < kept and idx.counts()["documents_in_part"] == 1
        again = idx.index([root], ocr=False)
        assert not again.cancelled and again.updated == 1 and again.partial == []
        assert [h.path for h in idx.search("word19999", mode="keyword")] == [str(root / "long.txt")]
        whole = idx.counts()["chunks"]
        assert whole > kept and idx.counts()["chunks_without_vectors"] == idx.counts()["documents_in_part"] == 0
        assert idx.index([root], ocr=False).unchanged == 1  # read whole: nothing more to do
    with Index(tmp_path / "clean", model=toyclip, device="cpu") as clean:  # as a run never stopped
        clean.index([root], ocr=False)
        assert clean.counts()["chunks"] == whole
