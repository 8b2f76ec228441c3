"""An indexed file, opened for an app to show or send: only while its path holds the file that was indexed.

What an app serves (the web app's "open file", its thumbnails, a text's view) is an indexed item, never
whatever a path holds now. The file is opened once, and everything is checked on that open descriptor
(fstat), so nothing can be swapped in between the check and the read:

- a regular file: a FIFO (which would hold a reader forever), a device or a folder put in its place is
  refused; the open never blocks (O_NONBLOCK) nor takes a terminal (O_NOCTTY);
- its size and mtime as indexed, and its change time (ctime: set by the kernel, by no one who writes
  the file), so another file given the same size and mtime, or a symlink to one, is refused;
- where the index has no change time for it yet (indexed before change times were kept, or by a Ray
  run's shards, until the next run records it), a symlink at its path is not followed (O_NOFOLLOW).

A symlink that was there when the file was indexed (the scan follows them) opens its target, whose
change time is the one recorded. The inode number and the device are not compared: FAT and exFAT make
inode numbers up as they mount, and a drive plugged in again gets another device number.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import IO

from .catalog import ItemFile
from .errors import MmsearchError
from .scanner import change_time

READ_BLOCK = 1 << 16


class FileGoneError(MmsearchError):
    """The indexed file is no longer there (or cannot be read)."""


class FileChangedError(MmsearchError):
    """The path holds another file than the one indexed (changed, replaced, a symlink put there)."""


def open_indexed(item: ItemFile) -> IO[bytes]:
    """The item's file opened for reading, as long as it is the one that was indexed; raises
    FileGoneError or FileChangedError saying why not."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    if item.ctime_ns is None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(item.fs_path, flags)
    except FileNotFoundError:
        raise FileGoneError(f"{item.path}: no longer exists; index it again to update the index") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _changed(item, "is a symbolic link now") from None
        raise FileGoneError(f"{item.path}: cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _changed(item, "is no longer a regular file")
        if st.st_size != item.size or st.st_mtime_ns != item.mtime_ns:
            raise _changed(item, "changed since it was indexed")
        if item.ctime_ns is not None and change_time(st) != item.ctime_ns:
            raise _changed(item, "is another file than the one indexed (replaced, or its permissions changed)")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # reads of the regular file it is
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _changed(item: ItemFile, why: str) -> FileChangedError:
    return FileChangedError(f"{item.path}: {why}; index it again to update the index")


def blocks(f: IO[bytes], size: int) -> Iterator[bytes]:
    """At most `size` bytes of an opened file, block by block, and the file closed after."""
    with f:
        left = size
        while left > 0:
            data = f.read(min(READ_BLOCK, left))
            if not data:
                return
            left -= len(data)
            yield data
