"""The run: each root scanned and planned against the catalog, moves and deletes applied, new and
changed images then documents indexed, the vector files saved, then the words in pictures read
(ocr.py), which saves again only where scanned pages added vectors."""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ..catalog import Catalog, CatalogWriteError, FileRow
from ..encoder import ImageEncoder, TextEncoder
from ..ocr import TextReader
from ..media import kind_of, media_type
from ..preprocess import ImageSpec
from ..scanner import FoundFile, Plan, ScanProblem, hash_file, plan, walk
from ..vectors import VectorStore
from .documents import index_documents
from .images import index_images
from .ocr import read_words
from .report import IndexReport, Observer, Progress, ProgressFn, no_observer

if TYPE_CHECKING:
    from .distributed import RayEngine


class Encoders:
    """Loads each tower (and the OCR models) the first time it is needed: a run with nothing new loads
    no model. `ocr` None: words in pictures are not read this run."""

    def __init__(self, image: Callable[[], ImageEncoder], text: Callable[[], TextEncoder],
                 ocr: Callable[[], TextReader] | None = None, ocr_off: str | None = None):
        self._make_image, self._make_text, self._make_ocr = image, text, ocr
        self.ocr_off = None if ocr is not None else (ocr_off or "OCR is off")  # why, to say so
        self._image: ImageEncoder | None = None
        self._text: TextEncoder | None = None
        self._ocr: TextReader | None = None

    @property
    def reads_words(self) -> bool:
        return self._make_ocr is not None

    @property
    def ocr(self) -> TextReader:
        if self._ocr is None:
            assert self._make_ocr is not None
            self._ocr = self._make_ocr()
        return self._ocr

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
    encoders: Encoders,
    image_spec: ImageSpec,
    roots: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    observe: Observer | None = None,
    engine: RayEngine | None = None,
) -> IndexReport:
    """`engine`: where new and changed files are decoded and encoded, when not in this process (a Ray
    cluster: distributed.py); the scan, the plan and the commits stay here either way."""
    report = IndexReport()
    started = time.monotonic()
    progress = progress or (lambda p: None)
    cancelled = cancel or (lambda: False)
    observe = observe or no_observer
    exclude = list(exclude)
    run_id = catalog.start_run()
    vectors.remove_stale_temp_files()
    try:
        if engine is not None:
            engine.resume(catalog, vectors, report, observe)  # what a killed run left finished, before the plan
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
            observe("scan")
            scan = _scanned(walk(root, exclude=exclude, include_hidden=include_hidden, problems=problems),
                            progress, cancelled, observe)
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
            for row in p.failed:  # listed again, with their reason: each run counts the files in error alike
                report.error(row.fs_path, catalog.file_error(row.id) or "could not be indexed")
        if engine is not None:
            engine.count_once(report, [p for _, p in plans])  # files it resumed are not also "unchanged"
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
        if engine is not None:
            if todo and not cancelled():
                engine.run(catalog, vectors, todo, report, tick, cancelled, observe)
            images = docs = []
        if images and not cancelled():
            index_images(catalog, vectors, encoders, image_spec, images, report, tick, cancelled, observe,
                         workers, batch_size)
        if docs and not cancelled():
            index_documents(catalog, vectors, encoders, docs, report, tick, cancelled, observe,
                            workers or max(1, min(8, os.cpu_count() or 1)))
        report.cancelled = cancelled()
        progress(Progress("saving", done[0], total))
        if not report.cancelled:
            # A cancelled run skips this (a Ctrl-C answers at once): the catalog holds every finished
            # batch and the next run brings the vector files in line with it. Saved before the words
            # are read: the pictures are searchable by meaning, from the saved files, meanwhile.
            _save(vectors, observe)
        words = catalog.ocr_pending(root_id for root_id, _ in plans)
        if words and encoders.reads_words and not cancelled():
            read_words(catalog, vectors, encoders, words, report, progress, cancelled, observe, workers)
            report.cancelled = cancelled()
            if not report.cancelled:
                _save(vectors, observe)  # nothing to do unless scanned pages added chunks
        else:
            report.ocr_left = len(words)
        observe("done")
    except BaseException:
        report.cancelled = True
        try:
            catalog.finish_run(run_id, "failed", report.to_dict())
        except Exception:
            pass
        raise
    report.device = encoders.device if engine is None else engine.device
    report.seconds = round(time.monotonic() - started, 3)
    catalog.finish_run(run_id, "cancelled" if report.cancelled else "done", report.to_dict())
    return report


class _ScanCancelled(Exception):
    pass


def _scanned(found: Iterable[FoundFile], progress: ProgressFn, cancelled: Callable[[], bool],
             observe: Observer) -> Iterator[FoundFile]:
    """The walk, saying how far it got every 500 files; a cancel ends the plan it feeds."""
    n = 0
    for n, f in enumerate(found, 1):
        yield f
        if n % 100 == 0:
            observe("scan")
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
                                       content_hash=None, kind=kind, media_type=media_type(prob.path),
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


def _save(vectors: VectorStore, observe: Observer) -> None:
    """Save the vector files; a failure says that nothing committed was lost."""
    try:
        observe("save")
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
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the index folder is read-only"
    return e.strerror or str(e)
