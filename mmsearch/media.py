"""What mmsearch reads, by file suffix: images, documents and videos, and their media types. Imports nothing
heavy, so the scan that sorts files needs neither Pillow nor a PDF library."""

from __future__ import annotations

import importlib.util
import mimetypes
import os
import stat
from functools import lru_cache

# Read as plain text, as written (no markup to take out, or markup a searcher types: code, CSV, JSON).
PLAIN_SUFFIXES = frozenset({
    ".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".xml", ".svg", ".yaml", ".yml",
    ".toml", ".ini", ".cfg", ".conf", ".properties", ".log", ".tex", ".bib", ".rst", ".org", ".adoc",
    ".srt", ".vtt", ".sql", ".diff", ".patch",
    ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".css", ".scss", ".less", ".vue",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".m", ".mm", ".java", ".kt", ".kts", ".scala", ".groovy",
    ".gradle", ".go", ".rs", ".rb", ".php", ".pl", ".pm", ".lua", ".r", ".jl", ".swift", ".dart", ".cs",
    ".fs", ".vb", ".hs", ".ml", ".mli", ".ex", ".exs", ".erl", ".clj", ".lisp", ".el", ".scm", ".zig",
    ".nim", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".mk", ".cmake", ".proto", ".graphql",
})
ZIP_SUFFIXES = frozenset({".docx", ".odt", ".pptx", ".xlsx", ".ods", ".epub"})  # zip files of XML
# Read by formats.py: the zip formats, and markup or mail whose text is taken out of it.
FORMAT_SUFFIXES = ZIP_SUFFIXES | {".html", ".htm", ".xhtml", ".rtf", ".eml"}
DOCUMENT_SUFFIXES = frozenset({".pdf"}) | PLAIN_SUFFIXES | FORMAT_SUFFIXES
SNIFF_BYTES = 4096  # a file with no suffix is a document when this much of its start is text
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})  # read with PyAV (video.py)
# mimetypes' table depends on the platform (and lacks some of these on older ones): ours is fixed.
# Plain-text types are text/* (the web app shows them as plain text, never rendered: HTML and SVG too);
# the office formats, EPUB, RTF and mail are downloaded, to be opened by the user's own program.
_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".heic": "image/heic", ".heif": "image/heif",
          ".webp": "image/webp", ".csv": "text/csv", ".tsv": "text/tab-separated-values", ".html": "text/html",
          ".htm": "text/html", ".xhtml": "text/html", ".xml": "text/xml", ".svg": "text/plain",
          ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
          ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          ".odt": "application/vnd.oasis.opendocument.text",
          ".ods": "application/vnd.oasis.opendocument.spreadsheet", ".epub": "application/epub+zip",
          ".rtf": "application/rtf", ".eml": "message/rfc822", ".mp4": "video/mp4", ".m4v": "video/mp4",
          ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".webm": "video/webm", ".avi": "video/x-msvideo"}


@lru_cache(maxsize=1)
def heif_supported() -> bool:
    """Whether the optional pillow-heif is installed (looked up, not imported)."""
    return importlib.util.find_spec("pillow_heif") is not None


def image_suffixes() -> frozenset[str]:
    return _IMAGE_SUFFIXES | _HEIF_SUFFIXES if heif_supported() else _IMAGE_SUFFIXES


def kind_of(name: str, path: str | None = None) -> str | None:
    """"image", "document", "video" or None (a file mmsearch does not read), by suffix, any case; a file with no
    suffix is a document if its first bytes are text (read from `path` where given: README, Makefile)."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in image_suffixes():
        return "image"
    if suffix in DOCUMENT_SUFFIXES:
        return "document"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if not suffix and path is not None and is_text_file(path):
        return "document"
    return None


def is_text_file(path: str) -> bool:
    """Whether a file's first SNIFF_BYTES are text: no NUL, UTF-8 (a character cut at the end aside) or
    few bytes above ASCII, and few control characters. An unreadable or empty file is not."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3 and sum(b >= 0x80 for b in head) > 0.3 * len(head):
            return False
    controls = sum(1 for b in head if b < 32 and b not in b"\t\n\r\f\v\x1b") + head.count(b"\x7f")
    return controls <= 0.1 * len(head)


def media_type(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in PLAIN_SUFFIXES or not suffix:  # (a file with no suffix is read only if it is text)
        return _TYPES.get(suffix) or "text/plain"
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
