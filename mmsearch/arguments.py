"""What the entry points accept, checked and normalised in one place. The library's methods call
these, so the CLI (a thin layer over the library) and an app that embeds it get the same answers
and the same errors for the same input.

Dates: a date or time without a zone is the user's local time (`2024-05-01` is local midnight); one
with a zone (`2024-05-01T12:00+02:00`) is that instant. Both become an aware datetime, compared with
each file's date as an instant (see catalog.py, `files.time_s`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from datetime import datetime

from .errors import InvalidArgument
from .filenames import shown

DEVICES = ("auto", "cpu", "cuda")
TYPES = ("all", "image", "document", "video")
MODES = ("hybrid", "vector", "keyword")
VARIANTS = ("fp32", "fp16", "int8")
ENGINES = ("local", "ray")  # where an index run decodes and encodes: this process, or a Ray cluster


def choice(name: str, value: str, choices: Sequence[str]) -> str:
    """`value` as one of `choices`, case and surrounding spaces ignored ("CPU" is "cpu")."""
    normal = str(value).strip().lower()
    if normal not in choices:
        raise InvalidArgument(f"{name} must be one of {', '.join(choices)} (got {value!r})")
    return normal


def optional_choice(name: str, value: str | None, choices: Sequence[str]) -> str | None:
    return None if value is None else choice(name, value, choices)


def at_least_one(name: str, value: int | None) -> int | None:
    """A count that must be 1 or more (None: the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be a whole number (got {value!r})")
    if value < 1:
        raise InvalidArgument(f"{name} must be at least 1 (got {value})")
    return value


def similarity(name: str, value: float | None) -> float | None:
    """A cosine similarity: a number in [-1, 1], or None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number in [-1, 1] (got {value!r})") from None
    if not -1.0 <= number <= 1.0:
        raise InvalidArgument(f"{name} must be in [-1, 1], a cosine similarity (got {value!r})")
    return number


def user_path(path: str | os.PathLike[str]) -> str:
    """A path as the user means it: `~` expanded, made absolute (not resolved: a symlinked folder
    keeps the name the user indexed it under)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def query_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("the query is empty: give words to search for (or an image)")
    return text


def query(text: str | None, image: str | os.PathLike[str] | None, mode: str) -> tuple[str | None, str]:
    """A search's text or image (one of them) and mode, checked: (text, mode)."""
    if (text is None) == (image is None):
        raise InvalidArgument("give a text or an image to search for (one of them)")
    if text is not None:
        text = query_text(text)
    return text, choice("mode", mode, MODES)


def when(name: str, value: datetime | str | None) -> datetime | None:
    """A date filter as an aware datetime: text is parsed (YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], a space
    instead of the T, an optional zone such as +02:00 or Z); a naive value is local time."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(
                f"{name}: {text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time), "
                "optionally with a zone such as +02:00 or Z"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{name} must be a datetime or a date string (got {value!r})")
    return value if value.tzinfo is not None else value.astimezone()  # naive: the local zone


def existing_paths(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The paths to index, as user_path gives them; every one must exist, else nothing is done (a
    typo should not cost a long run, nor create an empty index)."""
    out = [user_path(p) for p in paths]
    if not out:
        raise InvalidArgument("give at least one folder or file to index")
    missing = [p for p in out if not os.path.exists(p)]
    if missing:
        names = ", ".join(shown(p) for p in missing)
        raise InvalidArgument(f"{names}: no such folder or file; nothing was indexed")
    for p in out:
        mode = os.stat(p).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            from .media import special_file_kind

            raise InvalidArgument(f"{shown(p)}: is {special_file_kind(mode)}, neither a folder nor a file to "
                                  "index; nothing was indexed")
    return out


def image_file(path: str | os.PathLike[str]) -> str:
    """A picture to search by: an existing regular file (a FIFO or a device would never end the read)."""
    out = user_path(path)
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        raise InvalidArgument(f"{shown(out)}: no such file") from None
    except OSError as e:
        raise InvalidArgument(f"{shown(out)}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise InvalidArgument(f"{shown(out)}: is a folder; give a picture to search by")
    if not stat.S_ISREG(mode):
        from .media import special_file_kind

        raise InvalidArgument(f"{shown(out)}: is {special_file_kind(mode)}, not a picture to search by")
    return out


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


def hub_repo_id(value: str) -> str:
    """A Hugging Face hub model repository id, "owner/name"."""
    text = str(value).strip()
    if not _HUB_ID.match(text) or ".." in text or text.endswith((".", "-")):
        raise InvalidArgument(
            f"{value!r} is neither a model of the catalogue (`mmsearch models --available`) nor a hub repository "
            "id such as Xenova/clip-vit-base-patch32"
        )
    return text


def model_name(value: str) -> str:
    """A name for an installed model: one folder name under MMSEARCH_HOME/models."""
    text = str(value).strip()
    if not text or text.startswith(".") or any(c in text for c in "/\\\0") or len(text) > 128:
        raise InvalidArgument(f"model name {value!r}: use letters, digits, '-', '_' or '.', not starting with '.'")
    return text


def language(value: str) -> str:
    """A language: an ISO 639 code ("zh") or a locale name ("zh_CN.UTF-8"), as its code."""
    from .settings import language_code

    code = language_code(str(value))
    if code is None or not 2 <= len(code) <= 3:
        raise InvalidArgument(f"language {value!r}: give an ISO 639 code such as en, zh, ja or de "
                              "(or a locale such as zh_CN.UTF-8)")
    return code
