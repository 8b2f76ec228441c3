"""What a run carries, in one object handed to every step: the catalog and the vectors it writes, the
models, the report, progress, the cancel flag and the observer; and what the plan left to do."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..catalog import Catalog
from ..settings import DEFAULT_MAX_DOCUMENT_CHARS
from ..vectors import VectorStore
from .records import Batch, Task
from .report import IndexReport, Observer, Progress, ProgressFn

if TYPE_CHECKING:
    from ..bundle import Bundle
    from ..encoder import ImageEncoder, TextEncoder
    from ..ocr import TextReader
    from ..preprocess import ImageSpec


class Encoders:
    """Loads each tower (and the OCR models) the first time it is needed: a run with nothing new loads
    no model. `ocr` None: words in pictures are not read this run."""

    def __init__(self, image: Callable[[], ImageEncoder], text: Callable[[], TextEncoder],
                 ocr: Callable[[], TextReader] | None = None, ocr_off: str | None = None):
        self._make_image, self._make_text, self._make_ocr = image, text, ocr
        self.ocr_off = None if ocr is not None else (ocr_off or "OCR is off")  # why, to say so
        self._image: ImageEncoder | None = None
        self._text: TextEncoder | None = None
        self._ocr: TextReader | None = None

    @property
    def reads_words(self) -> bool:
        return self._make_ocr is not None

    @property
    def ocr(self) -> TextReader:
        if self._ocr is None:
            assert self._make_ocr is not None
            self._ocr = self._make_ocr()
        return self._ocr

    def let_go_of_ocr(self) -> None:
        """The OCR models are not needed until the words step (which loads them again where it has
        pictures to read): their memory is not held through the documents step."""
        self._ocr = None

    @property
    def image(self) -> ImageEncoder:
        if self._image is None:
            self._image = self._make_image()
        return self._image

    @property
    def text(self) -> TextEncoder:
        if self._text is None:
            self._text = self._make_text()
        return self._text

    @property
    def device(self) -> str | None:
        enc = self._image or self._text
        return enc.device if enc else None


@dataclass
class Run:
    """One index run, as every step sees it. `tick` moves the progress of the step in hand."""

    catalog: Catalog
    vectors: VectorStore
    encoders: Encoders
    image_spec: ImageSpec
    progress: ProgressFn = lambda p: None
    cancelled: Callable[[], bool] = lambda: False
    observe: Observer = lambda step: None
    workers: int | None = None  # decode and extract threads (None: the engine's choice)
    batch_size: int | None = None  # images per encoder batch (None: the engine's choice)
    report: IndexReport = field(default_factory=IndexReport)
    # Characters of a document's text indexed at most (None: all of it); past it, the report's `partial`
    # says how far it was indexed.
    max_document_chars: int | None = DEFAULT_MAX_DOCUMENT_CHARS
    # Pictures the images step glanced at and found worth reading in full: the words step reads them
    # without glancing again.
    worth_reading: set[str] = field(default_factory=set)
    read_words: bool = False  # the words step read something (the vector files are saved again)
    vectors_computed: bool = False  # the chunks step computed some (the vector files are saved again)
    # The model's files: the documents step cuts chunks with its tokenizer alone (no tower loaded).
    bundle: Bundle | None = None
    _phase: str = ""
    _done: int = 0
    _total: int = 0

    def begin(self, phase: str, total: int) -> None:
        """A counted phase begins (the CLI's bar): `total` files, none done."""
        self._phase, self._done, self._total = phase, 0, total
        self.progress(Progress(phase, 0, total))

    def tick(self, path: str) -> None:
        self._done += 1
        self.progress(Progress(self._phase, self._done, self._total, path))

    def advance(self, n: int) -> None:
        """`n` more done of a phase counted in something other than files (chunks)."""
        self._done += n
        self.progress(Progress(self._phase, self._done, self._total))

    def within(self, path: str, characters: int) -> None:
        """How far into the long document in hand the step is (the file count stays)."""
        self.progress(Progress(self._phase, self._done, self._total, path, characters))

    def within_video(self, path: str, seconds: float, duration: float) -> None:
        """How far into the video in hand its frames are committed (the file count stays)."""
        self.progress(Progress(self._phase, self._done, self._total, path, video_s=seconds, duration_s=duration))

    def say(self, phase: str) -> None:
        """A phase without files of its own (saving), at the count the last one reached."""
        self.progress(Progress(phase, self._done, self._total))


@dataclass
class Work:
    """What the plan left to do: the new and changed files, and the roots whose words are to be read."""

    images: list[Task] = field(default_factory=list)
    documents: list[Task] = field(default_factory=list)
    videos: list[Task] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)


Producer = Callable[[Run, Work], Generator[Batch, None, None]]


@dataclass(frozen=True)
class Step:
    """A named step of the flow (run.py): it yields batches of records, each committed in one transaction
    before the step goes on (its code after a `yield` runs once the batch is committed)."""

    name: str
    produce: Producer
    encodes: bool = False  # one of the engine's (images, documents): its towers are let go after them
