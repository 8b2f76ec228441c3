"""What an index run tells as it goes and when it ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..filenames import display_path


@dataclass
class IndexReport:
    """What an index run did; `mmsearch index --json` prints exactly this."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    partial: list[dict[str, str]] = field(default_factory=list)  # documents indexed only in part, and why
    # Files of types mmsearch does not read, by suffix (".key": 120, "(no suffix)": 3), as the scan found
    # them; left out, never silently: `mmsearch status` keeps the last complete walk's counts.
    not_read: dict[str, int] = field(default_factory=dict)
    encoded_items: int = 0
    # OCR: pictures and scanned pages read this run, those of them that held words, the files whose
    # words are still to be read (the run was stopped, or OCR is off or not installed), its device.
    ocr_read: int = 0
    ocr_with_words: int = 0
    ocr_left: int = 0
    ocr_device: str | None = None
    # Documents' chunks whose vectors are still to be computed (the run was stopped): their words are
    # searchable, their meaning after the next run's vectors step.
    vectors_left: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def error(self, path: str, reason: str) -> None:
        self.errors.append({"path": display_path(path), "reason": reason})

    def add(self, other: IndexReport) -> None:
        """What another part of the run counted (a committed transaction), added to this."""
        for name in ("added", "updated", "removed", "moved", "unchanged", "encoded_items", "ocr_read",
                     "ocr_with_words"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.partial += other.partial


@dataclass(frozen=True)
class Progress:
    phase: str  # "scanning" | "encoding" | "saving" | "computing vectors" (counted in chunks) | "reading text"
    done: int
    total: int
    path: str | None = None
    # Within a long document being encoded (BIG_DOCUMENT_CHARS and more): its characters indexed so far.
    characters: int | None = None
    # Within a video being read: how far into it its frames are committed, in seconds, and its length.
    video_s: float | None = None
    duration_s: float | None = None


ProgressFn = Callable[[Progress], None]

# Called with the name of each step as the run enters it: "scan" (a root, then every 100 files), "encode"
# (a slice of images or a batch of chunks), "ocr" (the OCR phase's start, then each picture or scanned
# page read past the glance), "commit" (inside the catalog transaction, before it commits), "save"
# (before the vector files are written) and "done". For tracing and for the crash tests, which hold
# each step open to aim a kill inside it; an observer that raises stops the run like a crash would.
Observer = Callable[[str], None]


def no_observer(phase: str) -> None:
    pass
