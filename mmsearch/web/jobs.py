""""Index now": one index run at a time, on a thread, its progress readable at any moment.

The run is the library's `Index.index` over the index's roots, with `progress=` updating a state that
the server streams (server-sent events) and `cancel=` reading a flag. Searches go on meanwhile: the
library answers them from the last committed state.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import MmsearchError, first_line

if TYPE_CHECKING:
    from .. import Index, Progress


class RunInProgress(MmsearchError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class IndexJob:
    """The state of the server's index run: `snapshot()` gives (version, state); the version grows with
    every change, so a reader sends only what is new."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._version = 0
        self._state: dict[str, Any] = {"running": False, "phase": "idle", "done": 0, "total": 0, "path": None,
                                       "started_at": None, "finished_at": None, "report": None, "error": None,
                                       "skipped_roots": [], "cancelling": False,
                                       "estimated": False}

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._version, dict(self._state)

    @property
    def running(self) -> bool:
        with self._lock:
            return bool(self._state["running"])

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state.update(changes)
            self._version += 1

    def start(self, index: Index, observe: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Start a run over the index's roots; refuses while one runs (here; another process's run makes
        this one fail at once with the library's IndexBusyError message)."""
        roots = index.roots()
        if not roots:
            raise MmsearchError(f"{index.path}: this index has no folders yet. Add one from a terminal:\n"
                                f"  mmsearch index ~/Pictures --index {index.path}")
        present = [p for p in roots if os.path.exists(p)]
        counts = index.counts()
        # What the scan will find, about: the files the index holds (it counts them as it walks).
        expected = counts["image"] + counts["document"] + counts["errors"]
        skipped = [{"path": p, "reason": f"no longer exists (`mmsearch forget {p}` drops it from the index)"}
                   for p in roots if p not in present]
        with self._lock:
            if self._state["running"]:
                raise RunInProgress("an index run is already going on; wait for it to finish, or cancel it")
            self._cancel.clear()
            self._state.update(running=True, phase="starting", done=0, total=expected, estimated=True, path=None,
                               started_at=_now(),
                               finished_at=None, report=None, error=None, skipped_roots=skipped, cancelling=False)
            self._version += 1
            self._thread = threading.Thread(target=self._run, args=(index, present, observe, expected),
                                            name="mmsearch-index-now", daemon=True)
            self._thread.start()
            return dict(self._state)

    def cancel(self) -> dict[str, Any]:
        with self._lock:
            if self._state["running"]:
                self._cancel.set()
                self._state["cancelling"] = True
                self._version += 1
            return dict(self._state)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel a run and wait for it (the server is shutting down): what it finished stays committed."""
        self._cancel.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, index: Index, roots: list[str], observe: Callable[[str], None] | None, expected: int) -> None:
        last = [0.0]

        def progress(p: Progress) -> None:
            # Called per file: a change of phase always goes out, counts at most every 50 ms.
            now = time.monotonic()
            with self._lock:
                if p.phase == self._state["phase"] and now - last[0] < 0.05:
                    return
                last[0] = now
                # The scan counts files without knowing how many there are: out of those indexed so far
                # (`estimated`), so its bar moves too.
                total, estimated = p.total, False
                if p.phase == "scanning" and not total:
                    total, estimated = max(expected, p.done), True
                self._state.update(phase=p.phase, done=p.done, total=total, estimated=estimated,
                                   path=None if p.path is None else os.path.basename(p.path))
                self._version += 1

        try:
            if not roots:
                raise MmsearchError("none of this index's folders exists any more; nothing was indexed")
            report = index.index(roots, progress=progress, cancel=self._cancel.is_set, wait=0, observe=observe)
        except Exception as e:  # reported to the page; the library's own errors say what to do
            message = str(e) if isinstance(e, MmsearchError) else f"the index run failed: {first_line(e)}"
            self._update(running=False, phase="error", error=message, finished_at=_now(), cancelling=False)
            return
        self._update(running=False, phase="cancelled" if report.cancelled else "done", report=report.to_dict(),
                     finished_at=_now(), cancelling=False, path=None)
