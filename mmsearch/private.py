"""Private by default: what mmsearch keeps of the user's material is readable by the user alone.

An index holds the text of every document, the words read in pictures, file names, capture times and
every photo's vector; the caches hold thumbnails and what models made of them. Every folder mmsearch
creates for them is 0700 and every file 0600, whatever the process's umask: a file is created with its
mode (os.open), and a file that a library writes (SQLite, hnswlib, NumPy, Parquet, onnxruntime) is
created empty with it first, since a library that truncates a file keeps its mode; what onnxruntime
writes under a name of its own is sealed before it is renamed into place. SQLite gives the catalog's
-wal and -shm files the catalog's own mode. The umask is never changed: it is process-wide, the
embedding application's, and not safe to touch while other threads create files.

An index is written only by the account that owns it, so its files never have two owners: a writer
`claim`s the folder first, which refuses an index (or a file in it) that another account owns and
tightens one whose permissions are looser, saying so in one line. In a folder that also holds the
user's own files (one given with --index), only mmsearch's entries are checked and tightened.

Windows keeps permissions in ACLs and a user's profile is private there: mode bits are not touched. A
file system that keeps no POSIX permissions (FAT, exFAT, some network mounts: the mount options decide
them) costs nothing but the privacy: a chmod it refuses is not an error, and `claim` says so.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import MmsearchError

log = logging.getLogger("mmsearch")

FOLDER_MODE = 0o700
FILE_MODE = 0o600
OPEN_TO_OTHERS = 0o077  # the group's and other accounts' bits
ENFORCED = os.name == "posix"

_FLAGS = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


class NotOwnerError(MmsearchError):
    """A folder (or a file in it) that belongs to another account: mmsearch does not write it."""


# -- creating ------------------------------------------------------------------------------------------


def make_folder(path: str | os.PathLike[str]) -> Path:
    """The folder, created 0700 with any missing parents (0700 too: mmsearch made them to hold it);
    an existing one is left as it is."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise FileExistsError(errno.EEXIST, "not a folder", str(path))
    missing = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, FOLDER_MODE)  # the umask can only take bits away from 0700
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by another process meanwhile: theirs
        if ENFORCED:
            _chmod(folder, FOLDER_MODE)  # a umask that took the owner's own bits away
    return path


def open_file(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> IO[Any]:
    """`open(path, mode)` for writing ('wb', 'ab', 'w' or 'a'), the file created 0600."""
    fd = os.open(path, _FLAGS[mode] | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if ENFORCED:
            _chmod(fd, FILE_MODE)  # an existing file keeps its mode through O_TRUNC: it is written now
        return os.fdopen(fd, mode, encoding=None if "b" in mode else (encoding or "utf-8"))
    except BaseException:
        os.close(fd)
        raise


def empty_file(path: str | os.PathLike[str]) -> None:
    """An empty file at path, 0600, for a library to write: it truncates the file and keeps the mode."""
    with open_file(path, "wb"):
        pass


def seal(path: str | os.PathLike[str]) -> None:
    """A folder that a library filled (under a temporary name, in a private folder): its folders
    0700, its files 0600, before it is renamed into place."""
    if not ENFORCED:
        return
    for entry, st in _walk(Path(path)):
        if not stat.S_ISLNK(st.st_mode):
            _chmod(entry, FOLDER_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE)


# -- owners ------------------------------------------------------------------------------------------


def owned(path: str | os.PathLike[str]) -> bool:
    """Whether this process's account owns path (True where mode bits are not kept, and for a path
    that does not exist: whoever creates it owns it)."""
    if not ENFORCED:
        return True
    try:
        return os.stat(path).st_uid == os.geteuid()
    except FileNotFoundError:
        return True


def may_write(folder: str | os.PathLike[str]) -> bool:
    """Whether this process may write the folder as its owner (a folder it cannot write, or another
    account's, is opened read-only)."""
    return os.access(folder, os.W_OK) and owned(folder)


def account(uid: int) -> str:
    """An account as a person reads it: its name where the system knows it, and its number."""
    name = _user_name(uid)
    return f"{name} (uid {uid})" if name else f"uid {uid}"


def _user_name(uid: int) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


# -- an existing folder -----------------------------------------------------------------------------


Entries = Callable[[str], bool]  # which names in a folder are mmsearch's (None: all of them)


@dataclass
class Access:
    """Who may read what mmsearch keeps in a folder: its owner, and the entries open to other accounts.
    The folder itself counts where it holds mmsearch's entries alone (a folder given with --index may
    hold the user's own files too: those, and the folder then, are the user's business)."""

    folder: Path
    owner: int | None  # uid; None where mode bits are not kept
    yours: bool
    sole: bool = True  # the folder holds nothing but mmsearch's entries
    exposed: list[Path] = field(default_factory=list)  # the folder or entries in it with group/other bits
    foreign: list[tuple[Path, int]] = field(default_factory=list)  # entries in it another account owns

    @property
    def private(self) -> bool:
        return not self.exposed

    def to_dict(self) -> dict[str, Any]:
        return {"owner": None if self.owner is None else account(self.owner), "yours": self.yours,
                "private": self.private, "readable_by_others": [self._name(p) for p in self.exposed[:20]],
                "readable_by_others_count": len(self.exposed),
                "other_owners": [{"path": self._name(p), "owner": account(uid)} for p, uid in self.foreign[:20]],
                "summary": self.summary()}

    def _name(self, path: Path) -> str:
        return "." if path == self.folder else str(path.relative_to(self.folder))

    def summary(self) -> str:
        """One line: whose it is and who else can read it."""
        parts = []
        if not self.yours and self.owner is not None:
            parts.append(f"belongs to {account(self.owner)}, not to you: read-only here")
        if self.foreign:
            first, uid = self.foreign[0]
            parts.append(f"{len(self.foreign)} entries belong to another account ({self._name(first)}: "
                         f"{account(uid)})")
        if self.exposed:
            names = ", ".join("the folder" if p == self.folder else self._name(p) for p in self.exposed[:3])
            more = f" and {len(self.exposed) - 3} more" if len(self.exposed) > 3 else ""
            now = f" (or now: chmod -R go-rwx {self.folder})" if self.sole else ""
            fix = (f"mmsearch makes it private when it next writes it{now}" if self.yours
                   else "its owner can make it private")
            parts.append(f"readable by other accounts ({names}{more}); {fix}")
        return "; ".join(parts) or "private (only you)"


def inspect(folder: str | os.PathLike[str], ours: Entries | None = None) -> Access:
    """Who owns the folder and what of mmsearch's in it (`ours`: the names of its entries; None: all)
    other accounts may reach: its own entries, and what is under a subfolder open to them. Symbolic
    links are not followed."""
    folder = Path(folder)
    if not ENFORCED:
        return Access(folder, None, True)
    top = os.stat(folder)
    found = Access(folder, top.st_uid, top.st_uid == os.geteuid())
    for entry, st in _walk(folder, ours, found, enter_closed=False):
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & OPEN_TO_OTHERS:
            found.exposed.append(entry)
        if st.st_uid != top.st_uid:
            found.foreign.append((entry, st.st_uid))
    if not found.sole and found.exposed[:1] == [folder]:
        found.exposed.pop(0)  # (known only once the folder was read)
    return found


def claim(folder: str | os.PathLike[str], what: str = "index", ours: Entries | None = None) -> Path:
    """Before writing a folder: create it private, or check that this account owns it and what of
    mmsearch's is in it (`ours`, as for `inspect`; NotOwnerError names the first it does not own) and
    take the group's and others' permissions away from those, with one line saying so."""
    folder = Path(folder)
    if not folder.exists() or not ENFORCED:
        return make_folder(folder)
    found = inspect(folder, ours)
    if not found.yours:
        assert found.owner is not None
        raise NotOwnerError(
            f"{folder}: this {what} belongs to {account(found.owner)}, and you are {account(os.geteuid())}: "
            "mmsearch writes it only as the account that owns it, so its files never have two owners. "
            "Reading it works where its permissions let you; to write it, run as its owner, or use a folder of "
            "your own.")
    if found.foreign:
        path, uid = found.foreign[0]
        me = os.geteuid()
        more = f" (and {len(found.foreign) - 1} more)" if len(found.foreign) > 1 else ""
        raise NotOwnerError(
            f"{path}: belongs to {account(uid)}{more}, while the {what} {folder} is yours ({account(me)}): mmsearch "
            "does not write a folder whose files have two owners. Make them yours again (as root: chown -R "
            f"{_user_name(me) or me} {folder}) or delete them, then run the command again.")
    if found.exposed:
        kept = []  # what the file system would not tighten
        for entry in found.exposed:
            # The group's and others' bits go; the owner's stay as they are (a folder made read-only on
            # purpose stays read-only).
            mode = stat.S_IMODE(os.lstat(entry).st_mode)
            if not _chmod(entry, mode & ~OPEN_TO_OTHERS) or stat.S_IMODE(os.lstat(entry).st_mode) & OPEN_TO_OTHERS:
                kept.append(entry)
        if len(kept) < len(found.exposed):
            log.warning("%s: this %s was readable by other accounts (%d files and folders); made private: only "
                        "you can read it now", folder, what, len(found.exposed) - len(kept))
        if kept:
            log.warning("%s: the file system does not keep permissions (its mount options set them), so this %s "
                        "stays readable by other accounts of this machine (%s%s); keep it on a file system "
                        "that does, or mount this one for you alone", folder, what,
                        "the folder" if kept[0] == folder else found._name(kept[0]),
                        f" and {len(kept) - 1} more" if len(kept) > 1 else "")
    return folder


def _chmod(target: str | os.PathLike[str] | int, mode: int) -> bool:
    """chmod (fchmod for a descriptor); False where the file system refuses it (it keeps no permissions)."""
    try:
        if isinstance(target, int):
            os.fchmod(target, mode)
        else:
            os.chmod(target, mode)
        return True
    except OSError:  # EPERM from FAT and exFAT, ENOTSUP from some FUSE mounts
        return False


def _walk(folder: Path, ours: Entries | None = None, found: Access | None = None,
          enter_closed: bool = True) -> Iterator[tuple[Path, os.stat_result]]:
    """The folder and everything under it (of its own entries, those `ours` names), with each entry's
    own status (links not followed); `found.sole` is cleared where the folder holds other entries.
    `enter_closed=False`: a subfolder closed to others is not entered (nothing in it can be reached by
    them, whatever its mode; a thumbnail cache holds tens of thousands of files)."""
    yield folder, os.stat(folder)  # the folder named (a link to it is followed)
    stack = [folder]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        for entry in entries:
            if here == folder and ours is not None and not ours(entry.name):
                if found is not None:
                    found.sole = False
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile (a temporary file renamed)
            yield Path(entry.path), st
            if stat.S_ISDIR(st.st_mode) and (enter_closed or st.st_mode & OPEN_TO_OTHERS):
                stack.append(Path(entry.path))
