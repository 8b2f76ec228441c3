"""The flow of an index run, drawn once:

    resume (what a killed Ray run left)        engine.resume
    scan and plan each root                    scanner.walk, scanner.plan
    moves and deletes                          one transaction
    images      -> batches of Records  -> commit      engine.images (worker threads, or Ray)
    documents   -> batches of Records  -> commit      engine.documents (their words; Ray: vectors too)
    videos      -> a Record per part   -> commit      videos.batches (on this machine, whatever the engine)
    vectors     -> the vector files saved             (every picture searchable by meaning)
    chunks      -> batches of Vectors  -> commit      documents.vector_batches (every chunk without one)
    vectors     -> saved again where chunks got theirs
    words       -> batches of Words    -> commit      ocr.batches (pictures, scanned pages)
    vectors     -> saved again where the words step read something

Each step is named (steps()); a step is a producer of record batches, and each batch is committed in
one transaction (commit.py) before the step goes on. A new kind of work (a video step, documents'
words first) is one more step here, not another loop.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..catalog import Catalog, CatalogWriteError
from ..media import kind_of, media_type
from ..scanner import FoundFile, Plan, ScanProblem, hash_file, plan, walk, walk_within
from ..vectors import VectorStore
from . import documents, images, ocr, videos
from .commit import commit
from .context import Run, Step, Work
from .records import Batch
from .report import IndexReport, Observer, Progress, ProgressFn

__all__ = ["Engine", "LocalEngine", "run_index", "steps"]


class Engine(Protocol):
    """Where new and changed files are decoded and encoded: this machine's threads (LocalEngine) or a Ray
    cluster (distributed.RayEngine). Either makes the same records; the flow commits them here."""

    def resume(self, run: Run) -> Generator[Batch, None, None]:
        """What a killed run left made but not committed, before the scan plans anything."""
        ...

    def planned(self, run: Run, plans: list[Plan]) -> None:
        """Told the plans, before the steps (a resumed file is not counted twice)."""
        ...

    def images(self, run: Run, work: Work) -> Generator[Batch, None, None]: ...

    def documents(self, run: Run, work: Work) -> Generator[Batch, None, None]: ...

    def close(self, run: Run) -> str | None:
        """After the encoding steps, whatever happened: where the towers ran, for the report."""
        ...


class LocalEngine:
    """Worker threads in this process (images.py, documents.py)."""

    def resume(self, run: Run) -> Generator[Batch, None, None]:
        yield from ()

    def planned(self, run: Run, plans: list[Plan]) -> None:
        pass

    def images(self, run: Run, work: Work) -> Generator[Batch, None, None]:
        return images.batches(run, work)

    def documents(self, run: Run, work: Work) -> Generator[Batch, None, None]:
        return documents.batches(run, work)

    def close(self, run: Run) -> str | None:
        return run.encoders.device


def _save_vectors(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The vector files saved: every picture is searchable by meaning, from them, while words are read."""
    run.say("saving")
    _save(run.vectors, run.observe)
    yield from ()


def _save_after_chunks(run: Run, work: Work) -> Generator[Batch, None, None]:
    if run.vectors_computed:
        _save(run.vectors, run.observe)
    yield from ()


def _save_after_words(run: Run, work: Work) -> Generator[Batch, None, None]:
    if run.read_words:
        _save(run.vectors, run.observe)  # nothing to do unless scanned pages added chunks
    yield from ()


def _chunk_vectors(run: Run, work: Work) -> Generator[Batch, None, None]:
    for batch in documents.vector_batches(run, work):
        yield batch
        run.vectors_computed = True


def steps(engine: Engine) -> tuple[Step, ...]:
    """The flow's steps in order, this run's engine making the images' and documents' records. A step is
    skipped once the run is cancelled: the catalog holds every finished batch, and the next run brings
    the vector files in line with it (a Ctrl-C answers at once)."""
    return (
        Step("images", engine.images, encodes=True),
        Step("documents", engine.documents, encodes=True),
        Step("videos", videos.batches, encodes=True),
        Step("vectors", _save_vectors),
        Step("chunks", _chunk_vectors),
        Step("vectors", _save_after_chunks),
        Step("words", ocr.batches),
        Step("vectors", _save_after_words),
    )


def run_index(run: Run, roots: Iterable[str], *, exclude: Iterable[str] = (), include_hidden: bool = False,
              default_excludes: bool = True, engine: Engine | None = None,
              within: list[str] | None = None) -> IndexReport:
    """Index (or update) the roots and return what changed; what the scan leaves out: scanner.walk.
    `engine`: where new and changed files are decoded and encoded, when not in this process (a Ray
    cluster: distributed.py); the scan, the plan and the commits stay here either way. `within`: only these paths inside the roots (files or folders, gone
    ones included) are scanned and planned, for a watch's changes; each goes with the deepest root
    holding it."""
    catalog, vectors = run.catalog, run.vectors
    report = run.report
    started = time.monotonic()
    engine = engine or LocalEngine()
    run_id = catalog.start_run()
    vectors.remove_stale_temp_files()
    try:
        for records in engine.resume(run):  # what a killed run left finished, before the plan
            commit(run, records)
        plans = _scanned_roots(run, list(roots), Walking(list(exclude), include_hidden, default_excludes), within)
        for root_id, p in plans:
            _apply_moves_and_deletes(catalog, vectors, p, root_id, report)
            report.unchanged += p.unchanged
            for row in p.failed:  # listed again, with their reason: each run counts the files in error alike
                report.error(row.fs_path, catalog.file_error(row.id) or "could not be indexed")
        engine.planned(run, [p for _, p in plans])
        work = Work(roots=[root_id for root_id, _ in plans])
        for root_id, p in plans:
            for task in [(root_id, f, None) for f in p.new] + [(root_id, f, row) for f, row in p.changed]:
                {"image": work.images, "video": work.videos}.get(task[1].kind, work.documents).append(task)
        # One vector per image, one or more per document, about one per scene of a video.
        vectors.reserve(len(work.images) + len(work.documents) + 16 * len(work.videos))
        run.begin("encoding", len(work.images) + len(work.documents) + len(work.videos))
        device: str | None = None
        encoding = True
        try:
            for step in steps(engine):
                if encoding and not step.encodes:
                    encoding, device = False, engine.close(run)
                if not run.cancelled():
                    _do(run, step, work)
        finally:
            if encoding:
                engine.close(run)
        report.cancelled = run.cancelled()
        report.ocr_left = len(catalog.ocr_pending(work.roots))  # the files whose words are still to be read
        report.vectors_left = catalog.pending_counts()[0]  # chunks searchable by their words only
        run.observe("done")
    except BaseException:
        report.cancelled = True
        try:
            catalog.finish_run(run_id, "failed", report.to_dict())
        except Exception:
            pass
        raise
    report.device = device
    report.seconds = round(time.monotonic() - started, 3)
    catalog.finish_run(run_id, "cancelled" if report.cancelled else "done", report.to_dict())
    return report


def _do(run: Run, step: Step, work: Work) -> None:
    """A step's batches, each committed before the step goes on (a step ends itself at a cancel)."""
    batches = step.produce(run, work)
    try:
        for records in batches:
            commit(run, records)
    finally:
        batches.close()


@dataclass(frozen=True)
class Walking:
    """What the scan leaves out (scanner.walk)."""

    exclude: list[str]
    include_hidden: bool = False
    default_excludes: bool = True


# The suffixes of files not read that a report and the catalog keep, most common first; the rest are
# summed as one (a folder of "data.0001", "data.0002"... would otherwise list every one).
NOT_READ_KEPT = 50
OTHER_SUFFIXES = "(other)"


def _scanned_roots(run: Run, roots: list[str], walking: Walking,
                   within: list[str] | None) -> list[tuple[int, Plan]]:
    """Each root scanned and planned against the catalog (none where the run is cancelled meanwhile: a
    partial scan must not be planned, its unseen files would look deleted); with `within`, only those
    paths of each root. The files of types not read are counted in the report, and kept in the catalog
    for each root walked whole."""
    catalog, report = run.catalog, run.report
    plans: list[tuple[int, Plan]] = []
    scopes = _scopes(roots, within) if within is not None else None
    for root in roots:
        if run.cancelled():
            break
        root = os.path.abspath(root)
        if not os.path.exists(root):
            # A root that is gone (an unplugged drive) keeps what it had: nothing is deleted.
            report.error(root, "no such folder or file; nothing under it was changed")
            continue
        if os.path.isfile(root) and kind_of(root, root) is None:
            suffix = os.path.splitext(root)[1] or "no extension"
            report.error(root, f"not an image, a document or a video mmsearch reads ({suffix})")
            continue
        root_id = catalog.add_root(root)
        problems: list[ScanProblem] = []
        not_read: Counter[str] = Counter()
        run.observe("scan")
        if scopes is None:
            found = walk(root, exclude=walking.exclude, include_hidden=walking.include_hidden,
                         default_excludes=walking.default_excludes, problems=problems, not_read=not_read)
            rows = functools.partial(catalog.files_of_root, root_id)
        else:
            if not scopes.get(root):
                continue
            found = walk_within(root, scopes[root], exclude=walking.exclude, include_hidden=walking.include_hidden,
                                default_excludes=walking.default_excludes, problems=problems, not_read=not_read)
            rows = functools.partial(catalog.files_under, scopes[root])
        scan = _scanned(found, run.progress, run.cancelled, run.observe)
        try:
            p = plan(scan, catalog.files_by_path, rows, hash_file, functools.partial(_record_ctimes, catalog))
        except _ScanCancelled:
            break
        counts = _most_common(not_read)
        if scopes is None and not os.path.isfile(root):
            catalog.set_not_read(root_id, counts)  # the walk was whole: it replaces the last one's counts
        for suffix, n in counts.items():
            report.not_read[suffix] = report.not_read.get(suffix, 0) + n
        _keep_unreadable(p, problems)
        _record_scan_problems(run, p, root_id, problems)
        plans.append((root_id, p))
    report.not_read = dict(sorted(report.not_read.items(), key=lambda kv: (-kv[1], kv[0])))
    return [] if run.cancelled() else plans


def _most_common(counts: Counter[str]) -> dict[str, int]:
    kept = dict(counts.most_common(NOT_READ_KEPT))
    rest = sum(counts.values()) - sum(kept.values())
    if rest:
        kept[OTHER_SUFFIXES] = kept.get(OTHER_SUFFIXES, 0) + rest
    return kept


def _scopes(roots: list[str], within: list[str]) -> dict[str, list[str]]:
    """Each path with the deepest of the roots that holds it (paths in no root are left out)."""
    out: dict[str, list[str]] = {}
    ordered = sorted((os.path.abspath(r) for r in roots), key=len, reverse=True)
    for path in within:
        path = os.path.abspath(path)
        for root in ordered:
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                out.setdefault(root, []).append(path)
                break
    return out


class _ScanCancelled(Exception):
    pass


def _record_ctimes(catalog: Catalog, ctimes: list[tuple[int, int]]) -> None:
    with catalog.write() as conn:
        catalog.record_ctimes(conn, ctimes)


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


def _record_scan_problems(run: Run, p: Plan, root_id: int, problems: list[ScanProblem]) -> None:
    """Report what the scan could not read, and keep a file-level problem (broken symlink, loop,
    unstat-able file) in the catalog as a file in error, so `mmsearch status` lists it too."""
    catalog, vectors, report = run.catalog, run.vectors, run.report
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
            catalog.move_file(conn, row.id, f.path, root_id, f.size, f.mtime_ns, f.ctime_ns)
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
