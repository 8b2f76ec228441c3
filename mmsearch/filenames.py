"""File names that are not UTF-8 (`caf\\xe9.jpg` from an old Latin-1 disk, say).

Python holds such a name as a str with surrogate escapes (os.fsdecode), which opens the file but
cannot be encoded as UTF-8 text. So mmsearch keeps three forms:
- the path itself (`str`, surrogate escapes): what the API returns, what opens the file;
- a display form, valid UTF-8, the odd bytes written as `\\xe9`: what is printed, and the key the
  catalog stores in files.path (with the exact bytes beside it in files.path_bytes);
- in JSON, the display form in `path` plus `path_bytes_b64`, the exact bytes in base64, where the
  name is not UTF-8 (JSON text cannot carry raw bytes); `path_encoding` says which case a hit is.
"""

from __future__ import annotations

import base64
import os
import re


def is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def display_path(path: str) -> str:
    """Valid UTF-8 text for a path: itself, or with each undecodable byte written as \\xNN."""
    return path if is_utf8(path) else os.fsencode(path).decode("utf-8", "backslashreplace")


def path_bytes(path: str) -> bytes | None:
    """The exact bytes of a non-UTF-8 path (None for a UTF-8 one: its text says it all)."""
    return None if is_utf8(path) else os.fsencode(path)


def from_stored(display: str, raw: bytes | None) -> str:
    """The path that opens the file, from what the catalog stored."""
    return display if raw is None else os.fsdecode(raw)


def json_fields(path: str) -> dict[str, str]:
    """How a path goes into JSON output."""
    if is_utf8(path):
        return {"path": path, "path_encoding": "utf-8"}
    return {"path": display_path(path), "path_encoding": "bytes",
            "path_bytes_b64": base64.b64encode(os.fsencode(path)).decode("ascii")}


# C0 and C1 control characters and DEL: in a file name (or a document's text) they would reach the
# terminal as commands (ESC starts an escape sequence that can retitle or repaint it; CR and LF forge
# lines), so printed output shows them escaped.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """Text as it may be printed to a terminal: control characters escaped (\\n, \\r, \\t, else \\xNN);
    `keep_newlines` for a message whose own lines are meant (its paths escaped already, by shown)."""

    def escape(m: re.Match[str]) -> str:
        c = m.group()
        if keep_newlines and c == "\n":
            return c
        return _NAMED.get(c, f"\\x{ord(c):02x}")

    return _CONTROLS.sub(escape, text)


def shown(path: str) -> str:
    """A path as printed: its display form with control characters escaped."""
    return printable(display_path(path))


# What a document's numbered locations are called (formats.py cuts these files into them; every other
# document's are pages).
LOCATIONS = {".pptx": "slide", ".xlsx": "sheet", ".ods": "sheet", ".epub": "chapter"}


def location(path: str, page: int | None) -> str | None:
    """Where in its file a hit is, as a person says it: "page 3", "slide 3", "sheet 2", "chapter 4"."""
    if page is None:
        return None
    return f"{LOCATIONS.get(os.path.splitext(path)[1].lower(), 'page')} {page}"
