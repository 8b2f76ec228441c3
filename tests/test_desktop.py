"""The desktop app in examples/desktop, driven offscreen: it embeds the library (index on a worker thread
with progress and Cancel, search, thumbnails from Index.thumbnail, live updates from Index.watch)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import make_collection, picture

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("PySide6", reason="the desktop example needs PySide6 (in the dev extra)")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(ROOT / "examples" / "desktop"))


def pump(app, condition, timeout: float = 60.0, what: str = "the window") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} did not come within {timeout} s")


def test_the_desktop_app_indexes_searches_shows_thumbnails_and_cancels(tmp_path, toyclip, request):
    from PySide6.QtWidgets import QApplication

    import mmsearch_desktop
    from mmsearch import Index

    photos = tmp_path / "photos"
    make_collection(photos, n_images=6, docs={"note.txt": "a small red circle on a note"})
    many = tmp_path / "many"
    for i in range(300):
        picture(100 + i, size=(640, 480)).save(many / f"p{i:03d}.jpg" if many.exists() else _mk(many) / f"p{i:03d}.jpg")
    app = QApplication.instance() or QApplication([])
    with Index(tmp_path / "index", model=toyclip) as index:
        window = mmsearch_desktop.Window(index)
        window.show()
        assert "Nothing indexed yet" in window.heading.text()
        window.add_folder(photos)  # what "Add folder…" does once the folder is chosen
        assert window.progress.isVisible() and window.cancel_button.isVisible()
        pump(app, lambda: window.running is None, what="the first run")
        assert window.last_report is not None and window.last_report.added == 7
        assert window.watch is not None and window.watch.running

        window.query.setText("a red circle")
        window.search()
        pump(app, lambda: window.documents.count() == 1, what="the note that holds the words")
        # These photos are only alike in meaning, below the model's relevance floor: shown when asked.
        assert window.photos.count() == 0
        window.less_alike.setChecked(True)  # searches again
        pump(app, lambda: window.photos.count() > 0 and window.thumbnails_loaded == window.photos.count(),
             what="results with their thumbnails")
        assert window.photos.count() == 6 and window.documents.count() == 1
        assert all(not window.photos.item(i).icon().isNull() for i in range(window.photos.count()))
        if request.config.getoption("--update-screenshots"):
            window.grab().save(str(ROOT / "docs" / "images" / "desktop.png"))

        # More like this, from the selected photo
        window.photos.setCurrentRow(0)
        window.more_like_selected()
        pump(app, lambda: window.heading.text().startswith("More like"), what="more like this")

        # a second run, cancelled halfway: what it finished is kept
        window.add_folder(many)
        pump(app, lambda: window.progress.maximum() == 300 and window.progress.value() >= 30, what="progress")
        window.cancel_run()
        pump(app, lambda: window.running is None, what="the cancelled run's end")
        report = window.last_report
        assert report.cancelled and "Stopped early" in window.status.text()
        assert report.added < 300 and index.counts()["image"] == 6 + report.added

        # live: a picture dropped into a watched folder shows in the results
        picture(999).save(photos / "fresh.png")
        window.query.setText("a red circle")
        pump(app, lambda: index.counts()["image"] >= 7 + report.added, timeout=30, what="the watched change")
        window.close()
        assert window.watch is not None and not window.watch.running


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
