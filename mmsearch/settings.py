"""Settings from the environment: the one place mmsearch reads it.

    MMSEARCH_HOME          models, the default index and caches (default: the platform's user data
                           folder, ~/.local/share/mmsearch on Linux)
    MMSEARCH_THREADS       onnxruntime threads per session (default: the cores this process may use)
    MMSEARCH_NO_ORT_CACHE  set: do not cache onnxruntime's optimised graphs under MMSEARCH_HOME/cache
    MMSEARCH_ORT_SPIN      1 or 0: force onnxruntime's thread spinning on or off (a benchmark knob)
    MMSEARCH_MAX_DOCUMENT_CHARS  characters of a document's text indexed at most (default 4000000, a
                           book of 1,500 pages; 0: no limit); past it, the report's `partial` says so
    RAY_ADDRESS            the Ray cluster an `--engine ray` run joins when it names none (Ray's own variable)
    LC_ALL, LC_MESSAGES, LANG  the user's language, the first set in that order (POSIX's precedence):
                           which default model a first run pulls (zh_CN.UTF-8 -> "zh"; C or POSIX: none)

Read when asked, never at import: an app may change them between uses, and tests do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    threads: int | None  # None: one per core
    ort_cache: bool
    ort_spin: bool | None  # None: as the caller chooses
    ray_address: str | None  # None: a Ray started for the run on this machine
    language: str | None  # an ISO 639 code from the locale ("zh"), None where the locale names none
    locale: str | None  # the variable it came from, as set ("LANG=zh_CN.UTF-8")


def current() -> Settings:
    env = os.environ
    home = env.get("MMSEARCH_HOME")
    threads = env.get("MMSEARCH_THREADS")
    spin = env.get("MMSEARCH_ORT_SPIN")
    # POSIX: LC_ALL overrides LC_MESSAGES, which overrides LANG; an empty one counts as unset
    name = next((n for n in ("LC_ALL", "LC_MESSAGES", "LANG") if env.get(n)), None)
    return Settings(
        home=Path(home).expanduser() if home else _default_home(),
        threads=max(1, int(threads)) if threads else None,
        ort_cache=not env.get("MMSEARCH_NO_ORT_CACHE"),
        ort_spin=None if spin is None else spin == "1",
        ray_address=env.get("RAY_ADDRESS") or None,
        language=language_code(env[name]) if name else None,
        locale=f"{name}={env[name]}" if name else None,
    )


# The default of MMSEARCH_MAX_DOCUMENT_CHARS (ingest/documents.py says why there is one).
DEFAULT_MAX_DOCUMENT_CHARS = 4_000_000


def max_document_chars() -> int | None:
    """MMSEARCH_MAX_DOCUMENT_CHARS: a document's characters indexed at most; None: no limit (0). Raises
    ValueError naming the variable where it is not a whole number of 0 or more."""
    value = os.environ.get("MMSEARCH_MAX_DOCUMENT_CHARS", "").strip().replace("_", "")
    if not value:
        return DEFAULT_MAX_DOCUMENT_CHARS
    if not value.isdigit():
        raise ValueError(f"MMSEARCH_MAX_DOCUMENT_CHARS={value!r}: must be a whole number of characters "
                         "(0: no limit)")
    return int(value) or None


def language_code(value: str) -> str | None:
    """The language of a locale or language name: "zh_CN.UTF-8", "zh-Hans", "ZH" -> "zh"; "C",
    "POSIX" and "C.UTF-8" name none (None)."""
    code = value.strip().split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    if code in ("", "c", "posix") or not code.isalpha():
        return None
    return code


def _default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("mmsearch", appauthor=False))
