"""Keeping an index current while files change: `mmsearch watch` and `Index.watch`.

watchdog reports what changes under the roots (inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows: the kernel wakes it, so a quiet folder costs nothing). A changed
path waits until it has been quiet for `settle` seconds (a file still being copied or saved keeps
changing), then every settled path goes to one incremental run over those paths alone
(`Index.update`): a burst of ten thousand new files is one run, or a few; an editor's save by rename is
one update; a moved file or folder keeps its vectors (the run sees both names at once); a deleted one
leaves the index. On start, and whenever the watcher's own queue overflowed (events were lost), a
normal incremental run over the whole roots finds what was missed.

While it runs, the watch holds `watch.lock` in the index folder (a second watch of the same index is
refused; `mmsearch status` says a watch runs); each run takes the index's write lock as any run does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import private
from .ignore import IGNORE_FILE
from .errors import MmsearchError

if TYPE_CHECKING:
    from .ingest import IndexReport


class Index(Protocol):
    """What a watch needs of an index (api.Index; a protocol, since the index is above this module)."""

    path: Path

    def index(self, paths_: Iterable[str], *, exclude: Iterable[str], include_hidden: bool, default_excludes: bool,
              cancel: Callable[[], bool] | None, wait: float | None) -> IndexReport: ...

    def update(self, paths_: Iterable[str], *, exclude: Iterable[str], include_hidden: bool, default_excludes: bool,
               cancel: Callable[[], bool] | None) -> IndexReport: ...

log = logging.getLogger("mmsearch")

WATCH_LOCK = "watch.lock"
SETTLE_S = 2.0  # a path quiet this long is indexed
MAX_BATCH_WAIT_S = 30.0  # a path that never goes quiet (a log written every second) waits at most this long


class WatchError(MmsearchError):
    pass


@dataclass(frozen=True)
class WatchEvent:
    """What a watch tells its `on_event` callback (on the watch's own thread)."""

    kind: str  # "started" | "indexed" | "reconciled" | "events lost" | "error" | "stopped"
    report: IndexReport | None = None  # the run's report, for "indexed" and "reconciled"
    paths: int = 0  # how many changed paths the run took
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": self.paths, "error": self.error,
                "report": self.report.to_dict() if self.report is not None else None}


class Watch:
    """A running watch over an index's roots; `stop()` ends it (a run in progress stops at its next
    batch and keeps what it finished). Also a context manager."""

    def __init__(self, index: Index, roots: Iterable[str], *, on_event: Callable[[WatchEvent], None] | None = None,
                 settle: float = SETTLE_S, exclude: Iterable[str] = (), include_hidden: bool = False,
                 default_excludes: bool = True, reconcile: bool = True):
        self.index = index
        self.roots = [os.path.abspath(r) for r in roots]
        self.settle = settle
        self.exclude = tuple(exclude)
        self.include_hidden = include_hidden
        self.default_excludes = default_excludes
        self._on_event = on_event or (lambda _e: None)
        self._reconcile = reconcile  # the first run: the whole roots
        self._pending: dict[str, float] = {}  # path -> when it first changed since its last run
        self._last_change = 0.0
        self._lost = False
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._observer: Any = None
        self._thread: threading.Thread | None = None
        self._lock: Any = None
        self._busy = True  # until the first run is done
        self.runs = 0

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> Watch:
        from filelock import FileLock, Timeout
        from watchdog.observers import Observer

        # Taken on the caller's thread, released on the watch's own: not a thread-local lock.
        lock = FileLock(str(Path(self.index.path) / WATCH_LOCK), mode=private.FILE_MODE, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise WatchError(f"{self.index.path}: another `mmsearch watch` keeps this index current already") from None
        self._lock = lock
        with private.open_file(Path(self.index.path, WATCH_LOCK + ".json"), "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "roots": self.roots, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        try:
            self._observer = Observer()
            handler = _handler(self)
            for root in self.roots:
                folder = root if os.path.isdir(root) else os.path.dirname(root)
                self._observer.schedule(handler, folder, recursive=True)
            self._observer.start()
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._loop, name="mmsearch-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the watch stops (for a command that runs until Ctrl-C)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every change seen so far is indexed (nothing waiting, no run going); False when the
        timeout passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while self._busy or self._pending or self._lost:
                if not self.running:
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._wake.wait(0.1 if left is None else min(left, 0.1))
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Watch:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _release(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
        Path(self.index.path, WATCH_LOCK + ".json").unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release()

    # -- events from watchdog (its thread) ---------------------------------------------------------

    def changed(self, *paths: str) -> None:
        now = time.monotonic()
        with self._wake:
            for path in paths:
                if path and self._concerns(path):
                    self._pending.setdefault(path, now)
            self._last_change = now
            self._wake.notify_all()

    def lost_events(self) -> None:
        with self._wake:
            self._lost = True
            self._wake.notify_all()

    def _concerns(self, path: str) -> bool:
        index_folder = str(self.index.path).rstrip(os.sep) + os.sep
        if path.startswith(index_folder) or path == index_folder.rstrip(os.sep):
            return False  # the index's own files
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    # -- the runs (this watch's thread) ------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._emit(WatchEvent("started"))
            if self._reconcile:
                self._run_whole("reconciled")
            while not self._stop.is_set():
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()
                batch, whole = self._next_batch()
                with self._wake:
                    self._busy = bool(batch) or whole
                if whole:
                    self._emit(WatchEvent("events lost"))
                    self._run_whole("reconciled")
                elif batch:
                    self._run_paths(batch)
        finally:
            self._release()
            self._emit(WatchEvent("stopped"))

    def _next_batch(self) -> tuple[list[str], bool]:
        """Wait for settled paths (or lost events, or the stop): the paths quiet for `settle` seconds,
        and those waiting longer than MAX_BATCH_WAIT_S."""
        with self._wake:
            while not self._stop.is_set():
                if self._lost:
                    self._lost = False
                    self._pending.clear()
                    return [], True
                if self._pending:
                    now = time.monotonic()
                    quiet = now - self._last_change >= self.settle
                    overdue = now - min(self._pending.values()) >= MAX_BATCH_WAIT_S
                    if quiet or overdue:
                        batch = sorted(self._pending)
                        self._pending.clear()
                        return batch, False
                    self._wake.wait(self.settle - (now - self._last_change) + 0.05)
                else:
                    self._wake.wait()
        return [], False

    def _run_whole(self, kind: str) -> None:
        try:
            report = self.index.index(self.roots, exclude=self.exclude, include_hidden=self.include_hidden,
                                      default_excludes=self.default_excludes, cancel=self._stop.is_set, wait=None)
            self.runs += 1
            self._emit(WatchEvent(kind, report=report))
        except MmsearchError as e:
            self._emit(WatchEvent("error", error=str(e)))

    def _run_paths(self, paths: list[str]) -> None:
        # A changed .mmsearchignore changes what its folder holds to the index: the folder is judged again.
        paths = sorted({os.path.dirname(p) if os.path.basename(p) == IGNORE_FILE else p for p in paths})
        try:
            report = self.index.update(paths, exclude=self.exclude, include_hidden=self.include_hidden,
                                       default_excludes=self.default_excludes, cancel=self._stop.is_set)
            self.runs += 1
            self._emit(WatchEvent("indexed", report=report, paths=len(paths)))
        except MmsearchError as e:
            self._emit(WatchEvent("error", error=str(e)))

    def _emit(self, event: WatchEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # the app's callback must not end the watch
            log.exception("mmsearch watch: on_event raised")


def running(index_folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The watch keeping this index current ({"pid", "roots", "since"}), or None where none runs."""
    from filelock import FileLock, Timeout

    folder = Path(index_folder)
    if not (folder / WATCH_LOCK).exists():
        return None
    probe = FileLock(str(folder / WATCH_LOCK), mode=private.FILE_MODE, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        try:
            return dict(json.loads((folder / (WATCH_LOCK + ".json")).read_text()))
        except (OSError, ValueError):
            return {"pid": None, "roots": [], "since": None}
    probe.release()
    return None


def _handler(watch: Watch) -> Any:
    """watchdog's events as changed paths: a move is both its names, a lost-events notice a full run.
    (Made here: watchdog loads when a watch starts, not when the status of an index is read.)"""
    from watchdog.events import (EVENT_TYPE_CLOSED_NO_WRITE, EVENT_TYPE_MODIFIED, EVENT_TYPE_OPENED, EventsLostEvent,
                                 FileSystemEventHandler)

    class Handler(FileSystemEventHandler):  # type: ignore[misc]
        def on_any_event(self, event: Any) -> None:
            if isinstance(event, EventsLostEvent):
                watch.lost_events()
                return
            if event.event_type in (EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE):
                return  # reading a file changes nothing
            if event.is_directory and event.event_type == EVENT_TYPE_MODIFIED:
                return  # a folder's listing changed: its entries have their own events
            paths = [os.fsdecode(event.src_path)]
            if getattr(event, "dest_path", ""):
                paths.append(os.fsdecode(event.dest_path))
            watch.changed(*paths)

    return Handler()
