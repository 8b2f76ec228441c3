"""A small desktop app that embeds mmsearch: search your photos and documents in a window.

    pip install 'mmsearch[cpu]' PySide6-Essentials
    python examples/desktop/mmsearch_desktop.py [--index DIR] [--model NAME|DIR]

A search box; photos as a grid of thumbnails, documents as a list with their snippets; "More like this"
on a selected result; "Add folder…" indexes a folder on a worker thread with a progress bar and a Cancel
button; and while the window is open, Index.watch keeps the index current (results refresh when files
change). Everything it does goes through mmsearch's public library API: Index.index / watch / search /
similar / thumbnail, Progress, Cancel. No work runs on the UI thread.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QApplication, QCheckBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QMainWindow, QProgressBar, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from mmsearch import Cancel, Cancelled, Index, IndexReport, MmsearchError, Progress, SearchResult, WatchEvent

THUMB = 160


class _Signals(QObject):
    done = Signal(object)  # the worker's result
    failed = Signal(str)
    progress = Signal(object)  # a mmsearch Progress


class Worker(QRunnable):
    """A function on Qt's thread pool; its result, error or progress come back as signals on the UI thread."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = _Signals()

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except Exception as e:  # shown in the window's status line
            self.signals.failed.emit(str(e))
            return
        self.signals.done.emit(result)


def to_pixmap(picture: Any) -> QPixmap:
    """A PIL image (Index.thumbnail) as a QPixmap."""
    rgb = picture.convert("RGB")
    data = rgb.tobytes()
    image = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the bytes above go away


class Window(QMainWindow):
    watch_event = Signal(object)

    def __init__(self, index: Index):
        super().__init__()
        self.index = index
        self.pool = QThreadPool.globalInstance()
        self.search_generation = 0  # a search that comes back after a newer one was asked is dropped
        self.search_cancel: Cancel | None = None
        self.run_cancel: Cancel | None = None
        self.running: Worker | None = None
        self.watch: Any = None
        self.thumbnails_loaded = 0
        self.in_flight: set[Worker] = set()  # held until they report: a collected worker's signals are lost
        self.last_report: IndexReport | None = None
        self.setWindowTitle("mmsearch")
        self.resize(1100, 720)

        self.query = QLineEdit(placeholderText="Search photos and documents…")
        self.query.returnPressed.connect(self.search)
        go = QPushButton("Search")
        go.clicked.connect(self.search)
        add = QPushButton("Add folder…")
        add.clicked.connect(self.choose_folder)
        # Files found by meaning below the model's relevance floor are left out unless asked for.
        self.less_alike = QCheckBox("Less alike too")
        self.less_alike.toggled.connect(lambda _: self.query.text().strip() and self.search())
        self.like = QPushButton("More like this")
        self.like.setEnabled(False)
        self.like.clicked.connect(self.more_like_selected)
        top = QHBoxLayout()
        for w in (self.query, go, self.less_alike, self.like, add):
            top.addWidget(w)

        self.progress = QProgressBar()
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_run)
        self.status = QLabel("")
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.cancel_button)

        self.heading = QLabel("")
        self.photos = QListWidget()
        self.photos.setViewMode(QListWidget.ViewMode.IconMode)
        self.photos.setIconSize(QSize(THUMB, THUMB))
        self.photos.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.photos.setSpacing(6)
        self.photos.itemSelectionChanged.connect(lambda: self.like.setEnabled(bool(self.selected())))
        self.documents = QListWidget()
        self.documents.setWordWrap(True)
        self.documents.itemSelectionChanged.connect(lambda: self.like.setEnabled(bool(self.selected())))
        split = QSplitter()
        split.addWidget(self.photos)
        split.addWidget(self.documents)
        split.setSizes([700, 400])

        layout = QVBoxLayout()
        layout.addLayout(top)
        layout.addWidget(self.heading)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)

        self.watch_event.connect(self.on_watch_event)
        self.show_counts()
        if index.roots():
            self.start_watch()

    def start(self, worker: Worker) -> None:
        self.in_flight.add(worker)
        worker.signals.done.connect(lambda _result: self.in_flight.discard(worker))
        worker.signals.failed.connect(lambda _message: self.in_flight.discard(worker))
        self.pool.start(worker)

    # -- searching ---------------------------------------------------------------------------------

    def search(self) -> None:
        text = self.query.text().strip()
        if text:
            floor = -1.0 if self.less_alike.isChecked() else None
            self._ask(f'Results for "{text}"', self.index.search, text, k=40, min_similarity=floor)

    def more_like_selected(self) -> None:
        hit = self.selected()
        if hit is not None:
            self._ask(f"More like {Path(hit.path).name}", self.index.similar, hit.path, k=40)

    def _ask(self, heading: str, fn: Callable[..., list[SearchResult]], *args: Any, **kwargs: Any) -> None:
        if self.search_cancel is not None:
            self.search_cancel.cancel()  # the previous search is not wanted any more
        self.search_generation += 1
        generation = self.search_generation
        cancel = self.search_cancel = Cancel()
        if fn == self.index.search:
            kwargs["cancel"] = cancel
        worker = Worker(fn, *args, **kwargs)
        worker.signals.done.connect(lambda hits: self.show_results(generation, heading, hits))
        worker.signals.failed.connect(lambda message: self.failed(generation, message))
        self.status.setText("Searching…")
        self.start(worker)

    def failed(self, generation: int, message: str) -> None:
        if generation == self.search_generation:
            self.status.setText(message)

    def show_results(self, generation: int, heading: str, hits: list[SearchResult]) -> None:
        if generation != self.search_generation:
            return
        self.photos.clear()
        self.documents.clear()
        photos = [h for h in hits if h.kind == "image"]
        documents = [h for h in hits if h.kind != "image"]
        self.heading.setText(f"{heading}: {_count(len(photos), 'photo')}, {_count(len(documents), 'document')}")
        for hit in photos:
            item = QListWidgetItem(Path(hit.path).name)
            item.setData(Qt.ItemDataRole.UserRole, hit)
            item.setToolTip(hit.path)
            self.photos.addItem(item)
            self._load_thumbnail(generation, item, hit)
        for hit in documents:
            where = f" (p. {hit.page})" if hit.page else ""
            snippet = " ".join((hit.snippet or "").split())
            item = QListWidgetItem(f"{Path(hit.path).name}{where}\n{snippet}")
            item.setData(Qt.ItemDataRole.UserRole, hit)
            item.setToolTip(hit.path)
            self.documents.addItem(item)
        self.status.setText("")

    def _load_thumbnail(self, generation: int, item: QListWidgetItem, hit: SearchResult) -> None:
        worker = Worker(self.index.thumbnail, hit.item_id, THUMB)

        def show(picture: Any) -> None:
            if generation == self.search_generation:
                item.setIcon(QIcon(to_pixmap(picture)))
                self.thumbnails_loaded += 1

        worker.signals.done.connect(show)
        self.start(worker)

    def selected(self) -> SearchResult | None:
        for view in (self.photos, self.documents):
            chosen = view.selectedItems()
            if chosen:
                hit = chosen[0].data(Qt.ItemDataRole.UserRole)
                return hit if isinstance(hit, SearchResult) else None
        return None

    # -- indexing --------------------------------------------------------------------------------------

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to search")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> None:
        """Index a folder on a worker thread, with progress and Cancel; then keep it current."""
        if self.running is not None:
            self.status.setText("An indexing run is going on; wait for it or cancel it.")
            return
        cancel = self.run_cancel = Cancel()
        worker = Worker(self._index_folder, str(folder), cancel)
        worker.signals.progress.connect(self.on_progress)
        worker.signals.done.connect(self.on_indexed)
        worker.signals.failed.connect(self.on_index_failed)
        self.running = worker
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.status.setText(f"Indexing {folder}…")
        self.start(worker)

    def _index_folder(self, folder: str, cancel: Cancel) -> IndexReport:
        assert self.running is not None
        signals = self.running.signals
        return self.index.index([folder], progress=signals.progress.emit, cancel=cancel)

    def on_progress(self, event: Progress) -> None:
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.done)
            self.progress.setFormat(f"{event.phase}: %v of %m")
        else:
            self.progress.setRange(0, 0)

    def cancel_run(self) -> None:
        if self.run_cancel is not None:
            self.run_cancel.cancel()
            self.status.setText("Stopping: what is finished is kept…")

    def on_indexed(self, report: IndexReport) -> None:
        self.last_report = report
        self._run_ended()
        what = (f"added {report.added}, updated {report.updated}, moved {report.moved}, removed {report.removed}, "
                f"{len(report.errors)} in error")
        self.status.setText(("Stopped early, what was finished is kept: " if report.cancelled else "Done: ") + what)
        self.show_counts()
        self.start_watch()

    def on_index_failed(self, message: str) -> None:
        self._run_ended()
        self.status.setText(message)

    def _run_ended(self) -> None:
        self.running = None
        self.run_cancel = None
        self.progress.hide()
        self.cancel_button.hide()

    def show_counts(self) -> None:
        c = self.index.counts()
        if not self.query.text():
            self.heading.setText(f"{c['image']} photos and {c['document']} documents indexed"
                                 if c["image"] or c["document"] else "Nothing indexed yet: add a folder.")

    # -- live updates ---------------------------------------------------------------------------------

    def start_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        try:
            # on_event runs on the watch's thread: handed to the UI thread by a signal
            self.watch = self.index.watch(on_event=self.watch_event.emit)
        except MmsearchError as e:  # another app watches this index already
            self.watch = None
            self.status.setText(str(e))

    def on_watch_event(self, event: WatchEvent) -> None:
        if event.kind == "indexed" and event.report is not None:
            self.show_counts()
            if self.query.text().strip():
                self.search()  # the results follow the files

    def closeEvent(self, event: Any) -> None:
        if self.run_cancel is not None:
            self.run_cancel.cancel()
        if self.search_cancel is not None:
            self.search_cancel.cancel()
        if self.watch is not None:
            self.watch.stop()
        self.pool.waitForDone(30_000)
        super().closeEvent(event)



def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default=None, help="index folder [default: mmsearch's default index]")
    ap.add_argument("--model", default=None, help="model name or folder [default: the index's, or the default]")
    args = ap.parse_args(argv)
    app = QApplication(sys.argv[:1])
    with Index(args.index, model=args.model) as index:
        window = Window(index)
        window.show()
        return app.exec()


if __name__ == "__main__":
    sys.exit(main())
