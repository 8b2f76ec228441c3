"""What a walk leaves out besides hidden names and --exclude: folders that are not the user's own material
(the default excludes) and the patterns of `.mmsearchignore` files (gitignore syntax, read as git reads
.gitignore: a file applies to its folder and below, a deeper one's patterns win, `!` brings a file back)."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # pathspec loads with the first .mmsearchignore met (~13 ms of every index run's start otherwise).
    from pathspec import GitIgnoreSpec

IGNORE_FILE = ".mmsearchignore"

# Folders skipped by name unless --no-default-excludes: installed packages, virtualenvs, bytecode,
# version control and tools' caches. `build` and `dist` are not here: people name their own folders so.
DEFAULT_EXCLUDED_NAMES = frozenset({
    "node_modules", "__pycache__", ".venv", "venv", ".git", ".hg", ".svn",
    ".cache", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
})
# A folder holding one of these is skipped whatever its name: a virtualenv, and a cache marked by the
# Cache Directory Tagging convention (https://bford.info/cachedir/: cargo's target/, ccache, pip...).
VENV_MARK = "pyvenv.cfg"
CACHE_TAG = "CACHEDIR.TAG"
_CACHE_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def default_excluded_name(name: str) -> bool:
    return name in DEFAULT_EXCLUDED_NAMES


def marked_folder(folder: str, names: Collection[str] | None = None) -> bool:
    """A virtualenv or a tagged cache. `names`: the folder's entries where the walk listed them already."""
    if names is None:
        has_venv = os.path.isfile(os.path.join(folder, VENV_MARK))
        has_tag = os.path.isfile(os.path.join(folder, CACHE_TAG))
    else:
        has_venv, has_tag = VENV_MARK in names, CACHE_TAG in names
    if has_venv:
        return True
    if has_tag:  # the convention asks for the signature, so a file of that name alone does not hide a folder
        try:
            with open(os.path.join(folder, CACHE_TAG), "rb") as f:
                return f.read(len(_CACHE_TAG_SIGNATURE)) == _CACHE_TAG_SIGNATURE
        except OSError:
            return False
    return False


@dataclass(frozen=True)
class Ignores:
    """The .mmsearchignore files in force in a folder, from the root down: (their folder, their patterns)."""

    specs: tuple[tuple[str, GitIgnoreSpec], ...] = ()

    def entering(self, folder: str, problems: list[tuple[str, str]]) -> Ignores:
        """These rules, plus those of `folder`'s own .mmsearchignore (the caller saw it listed). One that
        cannot be read is said in `problems` (path, reason) and leaves the rules as they were."""
        from pathspec import GitIgnoreSpec

        path = os.path.join(folder, IGNORE_FILE)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                spec = GitIgnoreSpec.from_lines(f.read().splitlines())
        except OSError as e:
            problems.append((path, f"cannot read ({e.strerror or e}); its patterns are not applied"))
            return self
        except ValueError as e:  # pathspec's GitWildMatchPatternError: a pattern it cannot read
            problems.append((path, f"a pattern cannot be read ({e}); its patterns are not applied"))
            return self
        return Ignores(self.specs + ((folder, spec),))

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Whether the rules leave `path` out; the deepest file with a pattern that matches decides."""
        verdict: bool | None = None
        for base, spec in self.specs:
            top = base.rstrip(os.sep) + os.sep
            if not path.startswith(top):  # (sliced rather than os.path.relpath: 4 us a file, the walk's most)
                continue
            rel = path[len(top):]
            if os.sep != "/":
                rel = rel.replace(os.sep, "/")
            rel = rel + "/" if is_dir else rel
            if len(self.specs) == 1:
                return spec.match_file(rel)  # one file of patterns: its last match decides (a third faster)
            include = spec.check_file(rel).include
            if include is not None:
                verdict = include
        return bool(verdict)


def ignores_above(base: str, folder: str, problems: list[tuple[str, str]]) -> Ignores:
    """The rules in force in `folder` before its own .mmsearchignore: those of `base` and of every folder
    between (for a walk that starts below its root)."""
    ignores = Ignores()
    rel = os.path.relpath(folder, base)
    parts = [] if rel == os.curdir else rel.split(os.sep)
    for i in range(len(parts)):
        here = os.path.join(base, *parts[:i])
        if os.path.isfile(os.path.join(here, IGNORE_FILE)):
            ignores = ignores.entering(here, problems)
    return ignores
