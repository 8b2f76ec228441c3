"""Walk the roots and classify what is new, changed, moved, unchanged or deleted."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import ignore
from .catalog import FileRow
from .media import kind_of


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: str  # absolute, as the OS gives it (may hold surrogate escapes for non-UTF-8 names)
    size: int
    mtime_ns: int
    kind: str  # "image" | "document" | "video"
    ctime_ns: int | None = None  # the inode's change time (change_time): who may write a file sets its mtime, not this


@dataclass
class ScanProblem:
    path: str
    reason: str


@dataclass
class Plan:
    """What an index run has to do for one root, decided from the scan and the catalog."""

    new: list[FoundFile] = field(default_factory=list)
    changed: list[tuple[FoundFile, FileRow]] = field(default_factory=list)
    unchanged: int = 0  # counted, not kept: a re-run over a million unchanged files holds none of them
    missing: list[FileRow] = field(default_factory=list)
    failed: list[FileRow] = field(default_factory=list)  # in error before and unchanged since
    moved: list[tuple[FoundFile, FileRow]] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)


# A folder holding this file is an mmsearch index (catalog.py's CATALOG_FILE) and is never indexed.
INDEX_MARK = "catalog.db"

def walk(root: str, *, exclude: Iterable[str] = (), include_hidden: bool = False, default_excludes: bool = True,
         problems: list[ScanProblem] | None = None, base: str | None = None,
         not_read: Counter[str] | None = None) -> Iterator[FoundFile]:
    """Every indexable file under root, depth first; follows symlinks once (loops are cut). A root
    that is a file is itself the one file found (hidden or excluded names do not apply to it).
    Left out: hidden names (unless include_hidden), --exclude globs, the default excludes (ignore.py:
    node_modules, virtualenvs, caches...; unless default_excludes is False) and what .mmsearchignore
    files say. `base`: the indexed root that `root` lies in, which --exclude patterns and the
    .mmsearchignore files above `root` are relative to. `not_read`: counts the files of types mmsearch
    does not read, by suffix (suffix_of)."""
    excluded = _excluder(base or root, exclude)
    seen_dirs: set[tuple[int, int]] = set()
    problems = problems if problems is not None else []
    if os.path.isfile(root):
        yield from _single_file(root, problems)
        return

    said: list[tuple[str, str]] = []
    top = ignore.ignores_above(base, root, said) if base and base != root else ignore.Ignores()
    stack = [(root, top)]
    while stack:
        problems += (ScanProblem(p, r) for p, r in said)
        said.clear()
        folder, ignores = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as e:
            problems.append(ScanProblem(folder, f"cannot open folder ({e.strerror or e})"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            continue  # a symlink loop, or a folder reached twice
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:  # vanished or unreadable folder: say so, keep going
            problems.append(ScanProblem(folder, f"cannot list folder ({e.strerror or e})"))
            continue
        names = {e.name for e in entries}
        if folder != root and INDEX_MARK in names:
            continue  # an mmsearch index kept among the photos: its thumbnails are not photos
        if default_excludes and folder != root and ignore.marked_folder(folder, names):
            continue  # a virtualenv, a tagged cache
        if ignore.IGNORE_FILE in names:
            ignores = ignores.entering(folder, said)
        subdirs = []
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir and default_excludes and ignore.default_excluded_name(entry.name):
                continue
            if excluded is not None and excluded(entry.path, entry.name, is_dir):
                continue
            if ignores.specs and ignores.ignored(entry.path, is_dir):
                continue
            if is_dir:
                subdirs.append((entry.path, ignores))
                continue
            kind = kind_of(entry.name, entry.path)  # (a file with no suffix: by its first bytes)
            if kind is None:
                if not_read is not None and _is_file(entry):
                    not_read[suffix_of(entry.name)] += 1
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as e:
                reason = "broken symlink" if entry.is_symlink() else f"cannot stat ({e.strerror or e})"
                problems.append(ScanProblem(entry.path, reason))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            yield FoundFile(os.path.abspath(entry.path), st.st_size, st.st_mtime_ns, kind, change_time(st))
        stack.extend(reversed(subdirs))
    problems += (ScanProblem(p, r) for p, r in said)


NO_SUFFIX = "(no suffix)"


def suffix_of(name: str) -> str:
    """How a file of a type mmsearch does not read is counted: its suffix in lower case (".key")."""
    return os.path.splitext(name)[1].lower() or NO_SUFFIX


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def walk_within(root: str, paths: Iterable[str], *, exclude: Iterable[str] = (), include_hidden: bool = False,
                default_excludes: bool = True, problems: list[ScanProblem] | None = None,
                not_read: Counter[str] | None = None) -> Iterator[FoundFile]:
    """The files of an indexed root that lie in `paths` (files or folders inside it; gone ones give
    nothing), judged as a walk of the whole root would judge them: hidden, excluded and ignored names
    anywhere between the root and the file leave it out. For updating what changed, not the whole root."""
    excluded = _excluder(root, exclude)
    top = root.rstrip(os.sep) + os.sep
    given = {os.path.abspath(p) for p in paths}
    if os.path.abspath(root) in given:
        yield from walk(root, exclude=exclude, include_hidden=include_hidden, default_excludes=default_excludes,
                        problems=problems, not_read=not_read)
        return
    wanted = sorted(p for p in given if p.startswith(top))
    kept: list[str] = []
    for p in wanted:  # a path inside another one given is walked with it
        if not any(p.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(p)
    said: list[tuple[str, str]] = []
    for p in kept:
        if _left_out(root, p, excluded, include_hidden, default_excludes, said):
            continue
        if os.path.isdir(p):
            yield from walk(p, exclude=exclude, include_hidden=include_hidden, default_excludes=default_excludes,
                            problems=problems, base=root, not_read=not_read)
        elif (kind := kind_of(p, p)) is not None:
            try:
                st = os.stat(p)
            except OSError:
                continue  # gone again, or a broken link: the next change brings it
            if stat.S_ISREG(st.st_mode):
                yield FoundFile(p, st.st_size, st.st_mtime_ns, kind)
        elif not_read is not None and os.path.isfile(p):
            not_read[suffix_of(p)] += 1
    if problems is not None:
        problems += (ScanProblem(p, r) for p, r in said)


def _left_out(root: str, path: str, excluded: Callable[[str, str, bool], bool] | None, include_hidden: bool,
              default_excludes: bool, said: list[tuple[str, str]]) -> bool:
    """Whether a walk of the root would leave `path` out, judging each folder between them on the way."""
    parts = os.path.relpath(path, root).split(os.sep)
    ignores = ignore.Ignores()
    for i, name in enumerate(parts):
        here = os.path.join(root, *parts[:i])
        if i and (os.path.isfile(os.path.join(here, INDEX_MARK))
                  or default_excludes and ignore.marked_folder(here)):
            return True
        if os.path.isfile(os.path.join(here, ignore.IGNORE_FILE)):
            ignores = ignores.entering(here, said)
        at = os.path.join(here, name)
        is_dir = i < len(parts) - 1 or os.path.isdir(at)
        if not include_hidden and name.startswith("."):
            return True
        if is_dir and default_excludes and ignore.default_excluded_name(name):
            return True
        if excluded is not None and excluded(at, name, is_dir):
            return True
        if ignores.specs and ignores.ignored(at, is_dir):
            return True
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, INDEX_MARK))
                                    or default_excludes and ignore.marked_folder(path))


def _excluder(root: str, exclude: Iterable[str]) -> Callable[[str, str, bool], bool] | None:
    """excluded(path, name, is_dir) for --exclude globs: matched against the name, the path relative to
    the root and the full path, ignoring case (`*.pdf` is meant to skip `REPORT.PDF` too); a pattern
    ending in `/` matches folders only (`cache/`, `*/build/`)."""
    patterns = [(p.rstrip("/").lower(), p.endswith("/")) for p in exclude if p.strip("/")]
    if not patterns:
        return None

    def excluded(path: str, name: str, is_dir: bool) -> bool:
        candidates = (name.lower(), os.path.relpath(path, root).lower(), path.lower())
        return any(fnmatch.fnmatchcase(c, p) for p, folders_only in patterns if is_dir or not folders_only
                   for c in candidates)

    return excluded


def _single_file(path: str, problems: list[ScanProblem]) -> Iterator[FoundFile]:
    kind = kind_of(path, path)
    if kind is None:
        suffix = os.path.splitext(path)[1] or "no extension"
        problems.append(ScanProblem(path, f"not an image, a document or a video mmsearch reads ({suffix})"))
        return
    try:
        st = os.stat(path)
    except OSError as e:
        problems.append(ScanProblem(path, f"cannot stat ({e.strerror or e})"))
        return
    yield FoundFile(os.path.abspath(path), st.st_size, st.st_mtime_ns, kind, change_time(st))


def change_time(st: os.stat_result) -> int | None:
    """The time the kernel last changed the inode (Windows: its creation time): no one sets it, so a file
    swapped in with the size and mtime of the one indexed still differs here."""
    if os.name == "nt":
        return getattr(st, "st_birthtime_ns", None)
    return st.st_ctime_ns


def plan(found: Iterable[FoundFile], lookup: Callable[[list[str]], dict[str, FileRow]],
         rows_of_root: Callable[[], Iterable[FileRow]], hash_file: Callable[[str], str | None],
         record_ctimes: Callable[[list[tuple[int, int]]], None] | None = None) -> Plan:
    """Compare a scan of one root with the catalog, streaming. Files whose size, mtime and change time
    match are unchanged; a file whose change time alone differs (a chmod, another inode put in its place)
    is changed: its content is hashed again, and kept as it is where the hash is the same. A new file
    whose content hash equals a vanished file's is a move (its vectors are kept).
    record_ctimes(pairs): (file id, change time) of unchanged files indexed before change times were kept.

    lookup(paths): the indexed files among paths, under any root, so a file indexed under another
    root that overlaps this one (~/photos and ~/photos/2024) is judged like this root's own and
    alternating runs over nested roots encode nothing twice. rows_of_root(): this root's files; only
    they can go missing. Memory holds what changed, not the collection: the scan is looked up in
    batches and the files seen are one bit each."""
    result = Plan()
    seen = _IdBits()
    batch: list[FoundFile] = []

    def judge() -> None:
        rows = lookup([f.path for f in batch])
        unrecorded = []
        for f in batch:
            row = rows.get(f.path)
            if row is None:
                result.new.append(f)
                continue
            seen.add(row.id)
            if row.status == "indexing":
                result.changed.append((f, row))  # a video committed in part: the run goes on with it
            elif row.size == f.size and row.mtime_ns == f.mtime_ns and (row.status == "indexed" or row.content_hash):
                # A file that failed before and has not changed is not retried (its error stays listed),
                # unless it could not even be read: a chmod or a remount changes no mtime.
                if row.status != "indexed":
                    result.failed.append(row)
                elif row.ctime_ns is None or f.ctime_ns is None or row.ctime_ns == f.ctime_ns:
                    result.unchanged += 1
                    if row.ctime_ns is None and f.ctime_ns is not None:
                        unrecorded.append((row.id, f.ctime_ns))
                else:
                    result.changed.append((f, row))
            else:
                result.changed.append((f, row))
        if unrecorded and record_ctimes is not None:
            record_ctimes(unrecorded)
        batch.clear()

    for f in found:
        batch.append(f)
        if len(batch) >= 500:
            judge()
    judge()
    result.missing = [row for row in rows_of_root() if row.id not in seen]
    if result.missing and result.new:
        by_hash: dict[str, list[FileRow]] = {}
        for row in result.missing:
            if row.content_hash and row.status == "indexed":
                by_hash.setdefault(row.content_hash, []).append(row)
        if by_hash:
            sizes = {r.size for rows in by_hash.values() for r in rows}  # only same-size files can match
            still_new = []
            moved_ids: set[int] = set()
            for f in result.new:
                digest = hash_file(f.path) if f.size in sizes else None
                rows = by_hash.get(digest or "")
                if rows:
                    row = rows.pop()
                    if not rows:
                        del by_hash[digest]  # type: ignore[arg-type]
                    result.moved.append((f, row))
                    moved_ids.add(row.id)
                else:
                    still_new.append(f)
            result.new = still_new
            result.missing = [row for row in result.missing if row.id not in moved_ids]
    return result


class _IdBits:
    """A set of catalog ids, one bit each (a set of a million ints takes ~70 MB, this 125 KB)."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, i: int) -> None:
        at = i >> 3
        if at >= len(self._bits):
            self._bits.extend(bytes(at + 1 - len(self._bits) + len(self._bits) // 2))
        self._bits[at] |= 1 << (i & 7)

    def __contains__(self, i: int) -> bool:
        at = i >> 3
        return at < len(self._bits) and bool(self._bits[at] >> (i & 7) & 1)


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
