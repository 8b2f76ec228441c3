"""The index run: scan -> decode workers -> encode -> commit.

Durability: each batch of images, and each document however long, is committed to the catalog in one
transaction (file rows, items, vectors) before its vectors enter the graph in memory; the vector files
are saved once, at the end (vectors.py says why). A crash loses none of the committed work: the
catalog holds every vector and the next run brings the graph in line with it. Work committed before a
crash is never encoded again.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from . import documents
from .catalog import Catalog, CatalogWriteError, FileRow
from .encoder import ImageEncoder, TextEncoder
from .preprocess import DecodedImage, ImageDecodeError, ImageSpec, decode_image
from .media import kind_of, media_type
from .scanner import FoundFile, Plan, ScanProblem, hash_bytes, hash_file, plan, walk
from .vectors import VectorStore

log = logging.getLogger("mmsearch")

# Test hooks for the crash tests (tests/test_crash.py, benchmarks/killtest.py); unset in real use.
# MMSEARCH_TEST_TRACE=FILE appends the phase each step enters (scan, encode, commit, save, done), and
# MMSEARCH_TEST_SLOW_S=SECONDS sleeps that long at each step (inside the catalog transaction for
# commits, see catalog.py; before the ANN file is written and again before its stamp for saves), so a
# SIGKILL can be aimed at every phase of a run.
_TRACE = os.environ.get("MMSEARCH_TEST_TRACE")
_SLOW_S = float(os.environ.get("MMSEARCH_TEST_SLOW_S") or 0)


def _test_point(phase: str, sleep: bool = True) -> None:
    if _TRACE:
        with open(_TRACE, "a") as f:
            f.write(phase + "\n")
    if _SLOW_S and sleep:
        time.sleep(_SLOW_S)
ENCODE_SLICE = 8  # images per encoder call: a Ctrl-C waits for at most one slice
# Text indexed per document, in characters: a book of 1,500 pages; past it, the file is indexed that
# far and the run's report (`partial`) and the file's row say so. Memory does not need the bound (a
# document streams); time and the vector index do: a 50 MB log file would be ~180,000 chunks, ten
# minutes of a ViT-B/32 text tower on two cores, and its vectors would crowd every query's candidates.
MAX_DOCUMENT_CHARS = 4_000_000
DOCUMENT_BATCH = 64  # chunks per text-encoder call: a Ctrl-C waits for at most one
_READ_AHEAD = 256  # chunks an extracting thread cuts ahead; the rest are cut as the document is encoded
_KEEP_VECTORS = 4096  # a document's vectors kept for the ANN index; past that, read back from the catalog


@dataclass
class IndexReport:
    """What an index run did; `mmsearch index --json` prints exactly this."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    partial: list[dict[str, str]] = field(default_factory=list)  # documents indexed only in part, and why
    encoded_items: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def error(self, path: str, reason: str) -> None:
        self.errors.append({"path": display(path), "reason": reason})


@dataclass(frozen=True)
class Progress:
    phase: str  # "scanning" | "encoding" | "saving"
    done: int
    total: int
    path: str | None = None


ProgressFn = Callable[[Progress], None]


def display(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class _Encoders:
    """Loads each tower the first time it is needed: a run with nothing new loads no model."""

    def __init__(self, image: Callable[[], ImageEncoder], text: Callable[[], TextEncoder]):
        self._make_image, self._make_text = image, text
        self._image: ImageEncoder | None = None
        self._text: TextEncoder | None = None

    @property
    def image(self) -> ImageEncoder:
        if self._image is None:
            self._image = self._make_image()
        return self._image

    @property
    def text(self) -> TextEncoder:
        if self._text is None:
            self._text = self._make_text()
        return self._text

    @property
    def device(self) -> str | None:
        enc = self._image or self._text
        return enc.device if enc else None


def run_index(
    catalog: Catalog,
    vectors: VectorStore,
    encoders: _Encoders,
    image_spec: ImageSpec,
    roots: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
) -> IndexReport:
    report = IndexReport()
    started = time.monotonic()
    progress = progress or (lambda p: None)
    cancelled = cancel or (lambda: False)
    exclude = list(exclude)
    run_id = catalog.start_run()
    vectors.remove_stale_temp_files()
    try:
        plans: list[tuple[int, Plan]] = []
        for root in roots:
            if cancelled():
                break
            root = os.path.abspath(root)
            if not os.path.exists(root):
                # A root that is gone (an unplugged drive) keeps what it had: nothing is deleted.
                report.error(root, "no such folder or file; nothing under it was changed")
                continue
            if os.path.isfile(root) and kind_of(root) is None:
                suffix = os.path.splitext(root)[1] or "no extension"
                report.error(root, f"not an image or a document mmsearch reads ({suffix})")
                continue
            root_id = catalog.add_root(root)
            problems: list[ScanProblem] = []
            _test_point("scan")
            scan = _scanned(walk(root, exclude=exclude, include_hidden=include_hidden, problems=problems),
                            progress, cancelled)
            try:
                p = plan(scan, catalog.files_by_path, functools.partial(catalog.files_of_root, root_id), hash_file)
            except _ScanCancelled:
                break  # a partial scan must not be planned: its unseen files would look deleted
            _keep_unreadable(p, problems)
            _record_scan_problems(catalog, vectors, p, root_id, problems, report)
            plans.append((root_id, p))
        if cancelled():
            plans = []
        for root_id, p in plans:
            _apply_moves_and_deletes(catalog, vectors, p, root_id, report)
            report.unchanged += p.unchanged
            report.skipped += p.failed
        todo: list[tuple[int, FoundFile, FileRow | None]] = [(root_id, f, None) for root_id, p in plans for f in p.new]
        todo += [(root_id, f, row) for root_id, p in plans for f, row in p.changed]
        images = [t for t in todo if t[1].kind == "image"]
        docs = [t for t in todo if t[1].kind == "document"]
        vectors.reserve(len(todo))  # one vector per image, one or more per document
        total = len(todo)
        done = [0]

        def tick(path: str) -> None:
            done[0] += 1
            progress(Progress("encoding", done[0], total, path))

        progress(Progress("encoding", 0, total))
        if images and not cancelled():
            _index_images(catalog, vectors, encoders, image_spec, images, report, tick, cancelled,
                          workers, batch_size)
        if docs and not cancelled():
            _index_documents(catalog, vectors, encoders, docs, report, tick, cancelled,
                             workers or max(1, min(8, os.cpu_count() or 1)))
        report.cancelled = cancelled()
        progress(Progress("saving", done[0], total))
        if not report.cancelled:
            # A cancelled run skips this (a Ctrl-C answers at once): the catalog holds every finished
            # batch and the next run brings the vector files in line with it.
            _save(vectors)
        _test_point("done", sleep=False)
    except BaseException:
        report.cancelled = True
        try:
            catalog.finish_run(run_id, "failed", report.to_dict())
        except Exception:
            pass
        raise
    report.device = encoders.device
    report.seconds = round(time.monotonic() - started, 3)
    catalog.finish_run(run_id, "cancelled" if report.cancelled else "done", report.to_dict())
    return report


class _ScanCancelled(Exception):
    pass


def _scanned(found: Iterable[FoundFile], progress: ProgressFn, cancelled: Callable[[], bool]) -> Iterator[FoundFile]:
    """The walk, saying how far it got every 500 files; a cancel ends the plan it feeds."""
    n = 0
    for n, f in enumerate(found, 1):
        yield f
        if _TRACE and n % 100 == 0:
            _test_point("scan")
        if n % 500 == 0:
            progress(Progress("scanning", n, 0, f.path))
            if cancelled():
                raise _ScanCancelled
    if cancelled():
        raise _ScanCancelled


def _record_scan_problems(catalog: Catalog, vectors: VectorStore, p: Plan, root_id: int,
                          problems: list[ScanProblem], report: IndexReport) -> None:
    """Report what the scan could not read, and keep a file-level problem (broken symlink, loop,
    unstat-able file) in the catalog as a file in error, so `mmsearch status` lists it too."""
    recorded = []
    for prob in problems:
        report.error(prob.path, prob.reason)
        kind = kind_of(os.path.basename(prob.path))
        if kind is not None and "folder" not in prob.reason:
            recorded.append((prob, kind))
    if not recorded:
        return
    paths = {prob.path for prob, _ in recorded}
    p.missing = [row for row in p.missing if row.fs_path not in paths]
    removed: list[int] = []
    with catalog.write() as conn:
        for prob, kind in recorded:
            try:
                st = os.lstat(prob.path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime_ns = 0, 0
            _, gone = catalog.put_file(conn, path=prob.path, root_id=root_id, size=size, mtime_ns=mtime_ns,
                                       content_hash=None, kind=kind, media_type=_media_type(prob.path),
                                       status="error", error=prob.reason)
            removed += gone
    vectors.remove(removed)


def _keep_unreadable(p: Plan, problems: list[ScanProblem]) -> None:
    """Known files under a folder that could not be listed this time are not deleted."""
    dirs = [prob.path.rstrip(os.sep) + os.sep for prob in problems if "folder" in prob.reason]
    if dirs:
        p.missing = [row for row in p.missing if not any(row.fs_path.startswith(d) for d in dirs)]


def _apply_moves_and_deletes(catalog: Catalog, vectors: VectorStore, p: Plan, root_id: int, report: IndexReport) -> None:
    if not (p.moved or p.missing):
        return
    with catalog.write() as conn:
        for f, row in p.moved:
            catalog.move_file(conn, row.id, f.path, root_id, f.size, f.mtime_ns)
        removed = catalog.delete_files(conn, [row.id for row in p.missing])
    vectors.remove(removed)
    report.moved += len(p.moved)
    report.removed += len(p.missing)


def _apply_to_ann(vectors: VectorStore, removed: list[int], ids: list[int], vecs: np.ndarray | None,
                  report: IndexReport) -> None:
    """After a batch's catalog commit: the graph follows (the catalog restores it after a crash)."""
    _test_point("ann", sleep=False)
    vectors.remove(removed)
    if ids and vecs is not None:
        vectors.add(np.asarray(ids, np.int64), vecs)
        report.encoded_items += len(ids)


def _save(vectors: VectorStore) -> None:
    """Save the vector files; a failure says that nothing committed was lost."""
    try:
        _test_point("save")
        vectors.save()
    except OSError as e:
        raise CatalogWriteError(
            f"{vectors.folder}: cannot save the vector files ({_why(e)}); the catalog keeps every finished "
            "batch and the vector files are rebuilt from it on the next run. Free space or fix permissions, "
            "then run the same command to resume."
        ) from None
    except RuntimeError as e:  # hnswlib reports a failed write as RuntimeError
        raise CatalogWriteError(
            f"{vectors.folder}: cannot save the vector files ({e}); the catalog keeps every finished batch. "
            "Check free space and permissions, then run the same command to resume."
        ) from None


def _why(e: OSError) -> str:
    import errno

    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the index folder is read-only"
    return e.strerror or str(e)


# -- images --------------------------------------------------------------------------------------


@dataclass
class _Decoded:
    root_id: int
    found: FoundFile
    old: Any  # FileRow | None
    digest: str | None = None
    image: DecodedImage | None = None
    error: str | None = None
    unchanged_content: bool = False


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _decode_one(task: tuple[int, FoundFile, Any], spec: ImageSpec) -> _Decoded:
    root_id, found, old = task
    out = _Decoded(root_id, found, old)
    try:
        data = _read(found.path)
    except FileNotFoundError:
        out.error = "vanished before it could be read"
        return out
    except OSError as e:
        out.error = f"cannot read ({e.strerror or e})"
        return out
    out.digest = hash_bytes(data)
    if old is not None and old.content_hash == out.digest and old.status == "indexed":
        out.unchanged_content = True  # touched, not changed: keep the vectors
        return out
    if not data:
        out.error = "empty file (0 bytes)"
        return out
    try:
        out.image = decode_image(io.BytesIO(data), spec)
    except ImageDecodeError as e:
        out.error = str(e)
    except MemoryError:
        out.error = "not enough memory to decode"
    return out


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: list[Any], window: int,
                 cancelled: Callable[[], bool]) -> Iterator[Any]:
    """pool.map with a bounded number in flight, so memory stays flat however many files there are."""
    pending: deque[Future[Any]] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        yield pending.popleft().result()
        if cancelled():
            for fut in pending:
                fut.cancel()
            return
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))


def decode_plan(device: str, workers: int | None, batch_size: int | None) -> tuple[int, int]:
    """Decode threads and images per encoder batch, unless given.

    CPU: one decode thread per core (8 at most) beside the encoder's threads, batches of 32: on 2
    cores that split was measured best (benchmarks/ingest.py --configs). CUDA: the encoder no longer
    needs the cores, so decoding takes all of them, and batches of 128 keep the GPU's per-call
    overhead small (at 26,000 images/s a batch is 5 ms); 3 batches in flight hold ~230 MB.
    The CUDA choice is not measured yet: no GPU machine was lent to the sessions that wrote it."""
    cores = os.cpu_count() or 1
    if device == "cuda":
        return workers or cores, batch_size or 128
    return workers or max(1, min(8, cores)), batch_size or 32


def _index_images(catalog, vectors, encoders, spec, tasks, report, tick, cancelled, workers, batch_size) -> None:
    workers, batch_size = decode_plan(encoders.image.device, workers, batch_size)
    batch: list[_Decoded] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-decode")
    try:
        for dec in _ordered_map(pool, lambda t: _decode_one(t, spec), tasks, window=batch_size * 3, cancelled=cancelled):
            batch.append(dec)
            tick(dec.found.path)
            if len(batch) >= batch_size:
                _commit_images(catalog, vectors, encoders, batch, report, cancelled)
                batch = []
            if cancelled():
                break
        if batch:
            # Cancelled or at the end: what was decoded is committed too (encoding stops early on a cancel).
            _commit_images(catalog, vectors, encoders, batch, report, cancelled)
    finally:
        # On a cancel, queued decodes are dropped and running ones are not waited for here.
        pool.shutdown(wait=not cancelled(), cancel_futures=True)


def _commit_images(catalog: Catalog, vectors: VectorStore, encoders: _Encoders, batch: list[_Decoded],
                   report: IndexReport, cancelled: Callable[[], bool] = lambda: False) -> None:
    good = [d for d in batch if d.image is not None]
    parts = []
    for i in range(0, len(good), ENCODE_SLICE):
        if cancelled():
            # Stop encoding within one slice of a Ctrl-C; what is not encoded is not committed and
            # is picked up by the next run.
            kept = {id(d) for d in good[:i]}
            batch = [d for d in batch if d.image is None or id(d) in kept]
            good = good[:i]
            break
        _test_point("encode")
        parts.append(encoders.image.encode(np.stack([cast(DecodedImage, d.image).pixels
                                                     for d in good[i : i + ENCODE_SLICE]])))
    embeds = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    _test_point("commit", sleep=False)
    new_ids: list[int] = []
    new_vecs: list[np.ndarray] = []
    removed: list[int] = []
    with catalog.write() as conn:
        row_of = dict(zip((id(d) for d in good), embeds))
        for d in batch:
            f = d.found
            if d.unchanged_content:
                catalog.touch_file(conn, d.old.id, f.size, f.mtime_ns)
                report.unchanged += 1
                continue
            if d.error is not None:
                _, gone = catalog.put_file(conn, path=f.path, root_id=d.root_id, size=f.size, mtime_ns=f.mtime_ns,
                                           content_hash=d.digest, kind="image", status="error", error=d.error)
                removed += gone
                report.error(f.path, d.error)
                continue
            img = cast(DecodedImage, d.image)  # decoded: failures were recorded above
            file_id, gone = catalog.put_file(
                conn, path=f.path, root_id=d.root_id, size=f.size, mtime_ns=f.mtime_ns, content_hash=d.digest,
                kind="image", media_type=_media_type(f.path), width=img.width, height=img.height,
                taken_at=img.taken_at, orientation=img.orientation,
            )
            removed += gone
            vec = row_of[id(d)]
            new_ids += catalog.add_items(conn, file_id, "image", vec[None])
            new_vecs.append(vec)
            if d.old is None:
                report.added += 1
            else:
                report.updated += 1
    _apply_to_ann(vectors, removed, new_ids, np.stack(new_vecs) if new_vecs else None, report)


_media_type = media_type


# -- documents -----------------------------------------------------------------------------------


@dataclass
class _Extracted:
    root_id: int
    found: FoundFile
    old: Any
    digest: str | None = None
    head: list[documents.Chunk] = field(default_factory=list)  # chunks cut by the extracting thread
    rest: Iterator[documents.Chunk] | None = None  # the rest, cut while the document is encoded
    capped: _Capped | None = None
    error: str | None = None
    unchanged_content: bool = False


class _Capped:
    """A document's pages up to MAX_DOCUMENT_CHARS characters; `cut` tells whether text was left out."""

    def __init__(self, pages: Iterable[documents.Page], limit: int):
        self.pages, self.limit = pages, limit
        self.total, self.cut = 0, False
        self.last_page: int | None = None

    def __iter__(self) -> Iterator[documents.Page]:
        for page in self.pages:
            room = self.limit - self.total
            if room <= 0:
                self.cut = True
                return
            if len(page.text) > room:
                self.cut = True
                page = documents.Page(page.number, page.text[:room], page.offset)
            self.total += len(page.text)
            self.last_page = page.number
            yield page
            if self.cut:
                return

    def note(self, size: int) -> str:
        where = (f"pages 1 to {self.last_page}" if self.last_page is not None
                 else f"about the first {min(99, max(1, round(100 * self.total / max(size, 1))))}% of the file")
        return (f"only the first {self.total:,} characters of its text are indexed ({where}); mmsearch indexes at "
                f"most {self.limit:,} characters of a document")


def _extract_one(task: tuple[int, FoundFile, Any], tokenizer: Any, max_tokens: int) -> _Extracted:
    root_id, found, old = task
    out = _Extracted(root_id, found, old)
    try:
        out.digest = hash_file(found.path)
        if out.digest is None:
            raise FileNotFoundError(found.path) if not os.path.exists(found.path) else PermissionError(found.path)
        if old is not None and old.content_hash == out.digest and old.status == "indexed":
            out.unchanged_content = True
            return out
        out.capped = _Capped(documents.iter_pages(_as_path(found.path)), MAX_DOCUMENT_CHARS)
        chunks = documents.iter_chunks(out.capped, tokenizer, max_tokens=max_tokens, overlap_tokens=max_tokens // 5)
        out.head = list(itertools.islice(chunks, _READ_AHEAD))
        out.rest = chunks if len(out.head) == _READ_AHEAD else None
        if not out.head:
            out.error = "no text found"
    except (documents.DocumentError, OSError, MemoryError) as e:
        out.error = _reason(e, found.path)
    return out


def _reason(e: BaseException, path: str) -> str:
    """Why a document could not be read, for the report and the file's row."""
    if isinstance(e, documents.DocumentError):
        return _strip_path(str(e), path)
    if isinstance(e, FileNotFoundError):
        return "vanished before it could be read"
    if isinstance(e, PermissionError):
        return "cannot read (permission denied)"
    if isinstance(e, OSError):
        return f"cannot read ({e.strerror or e})"
    return "not enough memory to read"


def _as_path(path: str):
    from pathlib import Path

    return Path(path)


def _strip_path(message: str, path: str) -> str:
    """DocumentError names the file; the report already does, so keep just the reason."""
    for prefix in (f"{path}: ", f"{display(path)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _index_documents(catalog, vectors, encoders, tasks, report, tick, cancelled, workers) -> None:
    text = encoders.text
    from .encoder import chunk_tokenizer, content_tokens

    max_tokens = content_tokens(text.bundle)
    tokenizer = chunk_tokenizer(text.bundle)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-extract")
    try:
        fn = lambda t: _extract_one(t, tokenizer, max_tokens)  # noqa: E731
        for ext in _ordered_map(pool, fn, tasks, window=workers * 2, cancelled=cancelled):
            _commit_document(catalog, vectors, encoders, ext, report, cancelled)
            tick(ext.found.path)
            if cancelled():
                break
    finally:
        pool.shutdown(wait=not cancelled(), cancel_futures=True)


class _Cancelled(Exception):
    pass


def _commit_document(catalog, vectors, encoders, ext: _Extracted, report, cancelled) -> None:
    """One document in one transaction, encoded batch by batch as its chunks are cut: a cancel (seen
    between batches) or a crash leaves the previous state, and the next run does the document whole."""
    f = ext.found
    if ext.unchanged_content:
        with catalog.write() as conn:
            catalog.touch_file(conn, ext.old.id, f.size, f.mtime_ns)
        report.unchanged += 1
        return
    if ext.error is None:
        try:
            gone, ids, kept, note = _write_document(catalog, encoders, ext, cancelled)
        except _Cancelled:
            return
        except (documents.DocumentError, OSError, MemoryError) as e:  # a page or segment further on
            ext.error = _reason(e, f.path)
        else:
            if kept is not None:
                _apply_to_ann(vectors, gone, ids, kept, report)
            else:  # a long document: its vectors come back from the catalog a batch at a time
                _apply_to_ann(vectors, gone, [], None, report)
                for batch_ids, batch_vectors in catalog.vectors_for(ids):
                    _apply_to_ann(vectors, [], batch_ids.tolist(), batch_vectors, report)
            if note:
                report.partial.append({"path": display(f.path), "reason": note})
            if ext.old is None:
                report.added += 1
            else:
                report.updated += 1
            return
    _test_point("commit", sleep=False)
    with catalog.write() as conn:
        _, gone = catalog.put_file(conn, path=f.path, root_id=ext.root_id, size=f.size, mtime_ns=f.mtime_ns,
                                   content_hash=ext.digest, kind="document", media_type=_media_type(f.path),
                                   status="error", error=ext.error)
    report.error(f.path, ext.error)
    _apply_to_ann(vectors, gone, [], None, report)


def _write_document(catalog, encoders, ext: _Extracted, cancelled) -> tuple[list[int], list[int], np.ndarray | None, str | None]:
    """(item ids removed, item ids added, their vectors or None when too many to keep, the partial note)."""
    f = ext.found
    ids: list[int] = []
    kept: list[np.ndarray] = []
    note = None
    chunks = itertools.chain(ext.head, ext.rest or ())
    with catalog.write() as conn:
        file_id, gone = catalog.put_file(conn, path=f.path, root_id=ext.root_id, size=f.size, mtime_ns=f.mtime_ns,
                                         content_hash=ext.digest, kind="document", media_type=_media_type(f.path))
        while batch := list(itertools.islice(chunks, DOCUMENT_BATCH)):
            if cancelled():
                raise _Cancelled
            _test_point("encode")
            embeds = encoders.text.encode([c.text for c in batch])
            ids += catalog.add_items(conn, file_id, "document", embeds, [(c.page, c.start, c.end, c.text) for c in batch])
            if len(ids) <= _KEEP_VECTORS:
                kept.append(embeds)
        if ext.capped is not None and ext.capped.cut:
            note = ext.capped.note(f.size)
            catalog.set_file_note(conn, file_id, note)
        _test_point("commit", sleep=False)
    return gone, ids, np.concatenate(kept) if len(ids) <= _KEEP_VECTORS else None, note
