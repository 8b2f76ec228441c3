"""What mmsearch reads, by file suffix: images and documents, and their media types. Imports nothing
heavy, so the scan that sorts files needs neither Pillow nor a PDF library."""

from __future__ import annotations

import importlib.util
import mimetypes
import os
import stat
from functools import lru_cache

DOCUMENT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".pdf"})
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
# mimetypes' table depends on the platform (and lacks some of these on older ones): ours is fixed.
_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".heic": "image/heic", ".heif": "image/heif",
          ".webp": "image/webp"}


@lru_cache(maxsize=1)
def heif_supported() -> bool:
    """Whether the optional pillow-heif is installed (looked up, not imported)."""
    return importlib.util.find_spec("pillow_heif") is not None


def image_suffixes() -> frozenset[str]:
    return _IMAGE_SUFFIXES | _HEIF_SUFFIXES if heif_supported() else _IMAGE_SUFFIXES


def kind_of(name: str) -> str | None:
    """"image", "document" or None (a file mmsearch does not read), by suffix, any case."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in image_suffixes():
        return "image"
    if suffix in DOCUMENT_SUFFIXES:
        return "document"
    return None


def media_type(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    return _TYPES.get(suffix) or mimetypes.types_map.get(suffix)


def special_file_kind(mode: int) -> str:
    """What a path that is neither a regular file nor a folder is, in words (from its st_mode)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
