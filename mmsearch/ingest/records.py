"""What the producers of a run make and commit.py writes: one Record per file found by the scan, whoever
made it (this machine's worker threads or a Ray cluster's, through a shard), Words for what the OCR
step reads in a file already indexed, and Vectors for documents' chunks written before their vectors. A
long video is several Records, one per part of it, each committed in its own transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..catalog import FileRow
from ..scanner import FoundFile

# Items per encoder call, wherever they are made (a Ctrl-C waits for at most one call):
ENCODE_SLICE = 8  # images
DOCUMENT_BATCH = 64  # a document's chunks

Task = tuple[int, FoundFile, "FileRow | None"]  # (root id, the file as scanned, the row it was planned against)
Chunk = tuple["int | None", int, int, str]  # a document item's page, span and text
Planned = tuple[int, int, "str | None", str]  # (size, mtime_ns, content hash, status) of the row planned against


@dataclass
class Record:
    """One file as a producer left it: its row's facts, what became of it, and its items.

    status: "indexed" (its items are `vectors`, with `chunks` for a document; or a document's chunks come
    from `stream`, without vectors: the vectors step computes them),
    "error" (`error` says why), "touched" (the same content as indexed: its items stay) or "copy"
    (content another indexed file has: its items are copied at commit, not encoded again)."""

    path: str  # the path that opens the file (surrogate escapes for names that are not UTF-8)
    root_id: int
    kind: str  # "image" | "document" | "video"
    size: int
    mtime_ns: int
    planned: Planned | None  # None: a new file
    ctime_ns: int | None = None  # the inode's change time as scanned (None: not known, a shard's record)
    status: str = "indexed"
    digest: str | None = None
    error: str | None = None
    note: str | None = None  # a document indexed only in part, and why
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    taken_at: str | None = None  # ISO 8601, with its offset where the photo (or the video) records one
    vectors: np.ndarray | None = None  # [n, dim] float32
    chunks: list[Chunk] = field(default_factory=list)
    # A document's pages without a text layer, for the OCR step; None: not known (a copy of indexed content)
    scanned: list[int] | None = None
    # Never in a shard: what a run on this machine adds.
    # A document's chunks, cut batch by batch as the commit writes them (a long document), their vectors
    # left to the vectors step: raises ItemsFailed where the rest of the file cannot be read; a cancel
    # ends it early, the document then `unfinished`.
    stream: Iterator[list[Chunk]] | None = None
    # Its reading stopped at a cancel: what was read is kept and searchable, its row 'indexing' (as a video
    # committed in part), and the next run reads the file again whole.
    unfinished: bool = False
    no_words: bool = False  # the OCR glance saw no words in it: its words count as read
    # A video, one part of it at a time: its length, its frames' times (one per vector), how far into it
    # the frames go once this part commits (None: to its end, the video is whole), and whether this part
    # goes on from frames committed before (its row is kept, not replaced).
    duration_s: float | None = None
    times: list[float] | None = None
    done_s: float | None = None
    resumes: bool = False
    new_file: bool = False  # a video first indexed by this run (counted as added when whole)
    committed: bool = False  # set by the commit that wrote it (a stale or repeated record is left out)

    @classmethod
    def of(cls, task: Task) -> Record:
        """A record for a task of the plan, before anything is known of its content."""
        root_id, found, old = task
        planned = None if old is None else (old.size, old.mtime_ns, old.content_hash, old.status)
        return cls(found.path, root_id, found.kind, found.size, found.mtime_ns, planned, found.ctime_ns)

    @property
    def unchanged_content(self) -> bool:
        """Touched, not changed: the bytes hash as the row it was planned against has them."""
        return (self.planned is not None and self.digest is not None and self.planned[2] == self.digest
                and self.planned[3] == "indexed")


@dataclass
class Words:
    """The words read in an indexed file by the OCR step: a picture's text (an item without a vector),
    or a scanned page's chunks and their vectors. `done`: the file's words are all read now (its content
    hash recorded; a note that said they were not goes)."""

    file_id: int
    path: str
    kind: str  # "image" | "document"
    content_hash: str  # the content they were read in
    text: str = ""  # a picture's words
    page: int | None = None  # a scanned page's number (None: a picture, or only `done`)
    chunks: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray | None = None
    done: bool = True
    problems: list[str] = field(default_factory=list)  # what could not be read, for the report

    @property
    def counted(self) -> bool:
        """A picture or a page was read (the report counts it); else this only finishes the file."""
        return self.kind == "image" or self.page is not None


@dataclass
class Vectors:
    """The vectors of chunks committed before them (the vectors step): item ids and their vectors."""

    item_ids: list[int]
    vectors: np.ndarray  # [n, dim] float32


Batch = list["Record | Words | Vectors"]  # committed in one transaction


class ItemsFailed(Exception):
    """The rest of a file's items cannot be made (a page further on cannot be read): the reason."""
