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
