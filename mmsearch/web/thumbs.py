"""Thumbnails of indexed items: made on demand, cached in the index folder by content hash.

An item is named by its id, never by a path from a request; its file is opened where the catalog
says it is, and only while it is still the file that was indexed (Index.open_file: the same size,
modification and change time, a regular file; a thumbnail in the cache is served on the same terms).
Photos are decoded at a reduced scale (libjpeg's 1/2, 1/4, 1/8) and turned upright by their EXIF
orientation; a PDF chunk's page is drawn with pdfium. The cache (INDEX/thumbs/) is keyed by the
file's content hash, so a moved or duplicated photo reuses its thumbnail, and is kept under a size
bound by dropping the least recently served ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import FileChangedError, FileGoneError, Index, InvalidArgument, MmsearchError, private

if TYPE_CHECKING:
    from .. import ItemFile

# Longest side in pixels: a grid tile (up to ~220 CSS px, sharp at 2x) and the larger view.
SIZES = {"small": 440, "large": 1600}
QUALITY = {"small": 80, "large": 85}
CACHE_DIR = "thumbs"
_HEX = re.compile(r"[0-9a-f]{16,128}")  # what a cache file may be named by
DEFAULT_CACHE_BYTES = 512 * 2**20


class ThumbnailError(MmsearchError):
    """No thumbnail for this item; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Thumbnail:
    data: bytes  # a JPEG
    etag: str  # the cache key: content hash, page and size


def has_thumbnail(item: ItemFile) -> bool:
    """Photos have one, a video's frames (the frame), and PDF chunks (their page); text files do not (the
    card shows their text)."""
    return item.kind in ("image", "video") or (item.page is not None and item.fs_path.lower().endswith(".pdf"))


def check_unchanged(item: ItemFile) -> None:
    """Whether the item's file is still the one that was indexed (ThumbnailError, 404 or 409, where not):
    what the app serves is an indexed item, never whatever a path holds now."""
    with opened_as(item):
        Index.open_file(item).close()


@contextlib.contextmanager
def opened_as(item: ItemFile) -> Iterator[None]:
    """Index.open_file's refusals, within, as HTTP statuses: gone 404, not the file indexed 409."""
    try:
        yield
    except FileGoneError as e:
        raise ThumbnailError(str(e), 404) from None
    except FileChangedError as e:
        raise ThumbnailError(str(e), 409) from None


class Thumbnails:
    """The thumbnail cache of one index folder. Safe from many threads: requests for the same thumbnail
    while it is being made wait for it (one decode), and each file is written whole (a rename), so a
    reader, in this process or another, never sees half of one."""

    def __init__(self, index_folder: Path, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.index_folder = index_folder
        self.folder = index_folder / CACHE_DIR
        self.max_bytes = max_bytes
        self._guard = threading.Lock()
        self._making: dict[str, tuple[threading.Lock, list[int]]] = {}  # key -> (lock, [waiters])
        self._total: int | None = None  # bytes in the cache, counted on the first write
        # Decoding is CPU work: at most one per core at a time; other requests wait their turn.
        self._decoders = threading.BoundedSemaphore(max(1, len(os.sched_getaffinity(0))
                                                        if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

    def get(self, item: ItemFile, size: str = "small") -> Thumbnail:
        if size not in SIZES:
            raise InvalidArgument(f"size must be one of {', '.join(SIZES)} (got {size!r})")
        if not has_thumbnail(item):
            raise ThumbnailError(f"{item.path}: a text file has no picture", 404)
        check_unchanged(item)
        moment = f"-t{item.frame_s:.3f}" if item.frame_s is not None else ""  # a video's frame
        key = f"{item.content_hash}-p{item.page or 0}{moment}-{SIZES[size]}"
        if not item.content_hash or not _HEX.fullmatch(item.content_hash):  # (indexed files have a sha256)
            return Thumbnail(self._make(item, size), f"item{item.item_id}-{item.mtime_ns}-{SIZES[size]}")
        path = self.folder / key[:2] / f"{key}.jpg"
        data = self._read(path)
        if data is not None:
            return Thumbnail(data, key)
        lock = self._lock_for(key)
        try:
            with lock:
                data = self._read(path)  # made by another request while this one waited
                if data is None:
                    data = self._make(item, size)
                    self._store(path, data)
        finally:
            self._release(key)
        return Thumbnail(data, key)

    # -- making ----------------------------------------------------------------------------------

    def _make(self, item: ItemFile, size: str) -> bytes:
        from PIL import Image

        fit = SIZES[size]
        with self._decoders:
            try:
                with opened_as(item):
                    img = Index.picture(item, fit)
            except ThumbnailError:
                raise
            except MmsearchError as e:  # not an image it can decode, a page it cannot draw
                raise ThumbnailError(str(e) if item.kind != "image" else f"{item.path}: {e}", 422) from None
            except OSError as e:
                raise ThumbnailError(f"{item.path}: cannot be read ({e.strerror or e})", 404) from None
            if item.kind == "image":
                # The draft decode left at most twice the pixels needed: a good filter costs little here.
                img.thumbnail((fit, fit), Image.Resampling.LANCZOS, reducing_gap=None)
            out = io.BytesIO()
            img.save(out, "JPEG", quality=QUALITY[size])
            return out.getvalue()

    # -- the cache -------------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        try:
            os.utime(path)  # recently served: kept longest when the cache is trimmed
        except OSError:
            pass  # a read-only index folder: the cache still serves
        return data

    def _store(self, path: Path, data: bytes) -> None:
        if not private.owned(self.index_folder):
            return  # another account's index: served, not cached (its files keep one owner)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            private.make_folder(path.parent)  # thumbnails of the user's photos: private, as the index
            with private.open_file(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:  # a read-only or full index folder: served, not cached
            try:
                tmp.unlink()
            except OSError:
                pass
            return
        with self._guard:
            if self._total is None:
                self._total = self._count()
            else:
                self._total += len(data)
            over = self._total > self.max_bytes
        if over:
            self._trim()

    def _entries(self) -> list[tuple[float, int, str]]:
        out: list[tuple[float, int, str]] = []
        try:
            shards = list(os.scandir(self.folder))
        except OSError:
            return out
        for shard in shards:
            if not shard.is_dir():
                continue
            try:
                for entry in os.scandir(shard.path):
                    if entry.name.endswith(".jpg") and not entry.name.startswith("."):
                        try:
                            st = entry.stat()
                        except OSError:
                            continue
                        out.append((st.st_mtime, st.st_size, entry.path))
            except OSError:
                continue
        return out

    def _count(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _trim(self) -> None:
        """Drop the least recently served thumbnails until the cache holds 90% of its bound."""
        with self._guard:
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            goal = int(self.max_bytes * 0.9)
            for _, size, path in entries:
                if total <= goal:
                    break
                try:
                    os.unlink(path)
                    total -= size
                except OSError:
                    pass
            self._total = total

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            lock, waiters = self._making.setdefault(key, (threading.Lock(), [0]))
            waiters[0] += 1
            return lock

    def _release(self, key: str) -> None:
        with self._guard:
            lock, waiters = self._making[key]
            waiters[0] -= 1
            if waiters[0] == 0:
                del self._making[key]
