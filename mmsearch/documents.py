"""Documents: text out of .txt/.md/.pdf files, then cut into chunks that fit the text tower's context.

Chunks are character spans of one page's text, cut on token boundaries of the model's own tokenizer,
preferably at a paragraph break, a sentence end or a space, and overlapping by a few tokens so a phrase
cut in two is still whole in one of them.

Both steps stream: a PDF gives a page at a time and a text file a segment of about a megabyte (cut at a
paragraph break), and chunks come out as they are cut, so a document of any size is read, chunked and
encoded in flat memory and a cancel is seen between pieces.

Text files are read in the encoding they are in: a BOM's, else UTF-8 where the bytes are UTF-8, else the
legacy encoding chardet finds (Latin-1/cp1252, GBK, Big5, Shift_JIS, EUC-JP, EUC-KR, ...); bytes that
are no text in any encoding are refused as binary.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import MmsearchError
from .media import DOCUMENT_SUFFIXES


# Not text: control bytes above this share of the first bytes, or after decoding, replacement and
# control characters above _JUNK_FRACTION (Latin-1 French or German stays well under it).
_CONTROL_FRACTION = 0.10
_JUNK_FRACTION = 0.30
_SAMPLE_BYTES = 1 << 16  # the binary sniff and the encoding detector look at this much
_SEGMENT_BYTES = 1 << 20  # a text file is read, decoded and chunked this much at a time
_PIECE_CHARS = 4096  # text per encode call; pieces end at a newline or space, so tokens never straddle two
_BATCH_CHARS = 1 << 18  # text per encode_batch: enough for its threads, little enough to keep memory flat
# Random high bytes (no NUL, no controls) decode in some code page as "text"; chardet's confidence
# tells them apart: at most 0.063 for random high bytes (30 draws each of 32 B to 64 KB; 0.035-0.058
# below 2 KB) against 0.46 and more for real text that is mostly non-ASCII from 2 KB on, and 0.062 for
# 65 bytes of Chinese. Text that is mostly ASCII is text.
_MIN_CONFIDENCE, _MIN_CONFIDENCE_SHORT, _SHORT = 0.07, 0.05, 2048
_MOSTLY_HIGH = 0.30

# pdfium is not thread-safe; indexing may extract from several threads. Re-entrant: a PDF page
# generator dropped while this thread holds the lock closes its document under it.
_PDFIUM_LOCK = threading.RLock()


class DocumentError(MmsearchError):
    """A document that can't be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Page:
    number: int | None  # 1-based page for PDFs, None for text files
    text: str
    offset: int = 0  # where `text` starts in the whole text (a text file comes in segments)


@dataclass(frozen=True)
class Chunk:
    page: int | None
    start: int  # character span: page.text[start - page.offset : end - page.offset] == text
    end: int
    text: str


class Encoding(Protocol):
    offsets: list[tuple[int, int]]

    def __len__(self) -> int: ...


class TokenizerLike(Protocol):
    """What chunking needs of a `tokenizers.Tokenizer`."""

    def encode(self, sequence: str, *, add_special_tokens: bool = ...) -> Encoding: ...

    def encode_batch(self, input: list[str], *, add_special_tokens: bool = ...) -> list[Encoding]: ...


# -- extraction --


def extract_pages(path: Path, *, max_bytes: int | None = None) -> list[Page]:
    """The text of a document, page by page; a text file is one page. With `max_bytes`, only that much of
    a text file is read, and a PDF stops giving pages once that many characters are out."""
    path = Path(path)
    if _suffix(path) != ".pdf":
        text = "".join(page.text for page in _text_pages(path, max_bytes=max_bytes))
        return [Page(None, text)]
    return list(_pdf_pages(path, max_bytes))


def iter_pages(path: Path) -> Iterator[Page]:
    """The whole text of a document, lazily: PDF pages one at a time, a text file in segments of about
    a megabyte that end at a paragraph break (Page.offset says where each starts)."""
    path = Path(path)
    if _suffix(path) == ".pdf":
        return _pdf_pages(path, None)
    return _text_pages(path)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        raise DocumentError(f"{path}: not a document type mmsearch reads ({', '.join(sorted(DOCUMENT_SUFFIXES))})")
    return suffix


def _text_pages(path: Path, *, max_bytes: int | None = None, segment_bytes: int | None = None) -> Iterator[Page]:
    # Markdown stays as written: stripping markup would gain little for the text tower and lose the
    # one-to-one spans into the file the user opens.
    segment_bytes = segment_bytes or _SEGMENT_BYTES
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e
    with f:
        decoder = _TextDecoder(path)
        carry, offset, left = "", 0, max_bytes
        while True:
            want = segment_bytes if left is None else min(segment_bytes, left)
            try:
                data = f.read(want)
            except OSError as e:
                raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e
            final = len(data) < want  # a buffered read comes back short only at the end of the file
            if left is not None:
                left -= len(data)
            # At max_bytes the decoder is not flushed: a multi-byte character cut there is left out.
            last = final or left == 0
            text = carry + decoder.decode(data, final=final)
            held = ""
            if not last and text.endswith("\r"):
                text, held = text[:-1], "\r"  # the "\n" of a "\r\n" may open the next block
            text = _tidy(text)
            cut = len(text) if last else _segment_end(text)
            yield Page(None, text[:cut], offset)
            offset += cut
            carry = text[cut:] + held
            if last:
                return


def _segment_end(text: str) -> int:
    """Where a segment ends: after the last paragraph break in its second half, else the last line
    break, else the last space (chunks never cross segments, so a phrase is rarely cut)."""
    half = len(text) // 2
    for mark in ("\n\n", "\n", " "):
        at = text.rfind(mark, half)
        if at >= 0:
            return at + len(mark)
    return len(text)


class _TextDecoder:
    """A text file's bytes to text, block by block, in the encoding the first non-ASCII block shows."""

    def __init__(self, path: Path):
        self.path = path
        self.decoder: codecs.IncrementalDecoder | None = None
        self.first = True

    def decode(self, data: bytes, *, final: bool) -> str:
        if self.decoder is None:
            if self.first:
                self.first = False
                self.decoder = _bom_decoder(data)
            if self.decoder is None:
                self._sniff(data)
                if data.isascii() and not _escapes(data):
                    return self._checked(data.decode("ascii"))  # no encoding shows in ASCII: wait for one
                self.decoder = self._choose(data)
        return self._checked(self.decoder.decode(data, final))

    def _sniff(self, data: bytes) -> None:
        sample = data[:_SAMPLE_BYTES]
        if b"\x1b$)C" in sample:  # ISO-2022-KR shifts in and out of Korean with SO and SI
            sample = sample.replace(b"\x0e", b"").replace(b"\x0f", b"")
        if b"\x00" in sample or _junk_fraction(sample) > _CONTROL_FRACTION:
            raise DocumentError(f"{self.path}: looks binary, not text")

    def _checked(self, text: str) -> str:
        if "\x00" in text or _junk_fraction(text[: 4 * _SAMPLE_BYTES]) > _JUNK_FRACTION:
            raise DocumentError(f"{self.path}: looks binary, not text")
        return text

    def _choose(self, data: bytes) -> codecs.IncrementalDecoder:
        if not data.isascii():  # (ASCII with escapes is ISO-2022 or HZ: the detector names which)
            try:
                codecs.getincrementaldecoder("utf-8")().decode(data, False)
                return codecs.getincrementaldecoder("utf-8")(errors="replace")
            except UnicodeDecodeError:
                pass
            if _damaged_utf8(data):
                return codecs.getincrementaldecoder("utf-8")(errors="replace")
        encoding = self._detect(data)
        try:
            return codecs.getincrementaldecoder(encoding)(errors="replace")
        except LookupError:
            raise DocumentError(f"{self.path}: text in an encoding Python cannot read ({encoding})") from None

    def _detect(self, data: bytes) -> str:
        import chardet  # only for files that are not UTF-8

        at = len(data) - len(data.lstrip(_ASCII))  # the first non-ASCII byte: where the encoding shows
        if at == len(data):
            at = 0  # ISO-2022 or HZ: all ASCII bytes
        sample = data[max(0, at - 1024) : at + _SAMPLE_BYTES]
        results = [(str(r["encoding"]), float(r.get("confidence") or 0.0)) for r in chardet.detect_all(sample)
                   if r.get("encoding")]
        high = sum(1 for b in sample if b >= 0x80) / max(1, len(sample))
        floor = _MIN_CONFIDENCE_SHORT if len(sample) < _SHORT else _MIN_CONFIDENCE
        if not results or (high > _MOSTLY_HIGH and results[0][1] < floor):
            raise DocumentError(f"{self.path}: looks binary, not text")
        return _pick_encoding(sample, results)


def _pick_encoding(sample: bytes, results: list[tuple[str, float]]) -> str:
    """chardet's first guess, corrected where measured wrong (benchmarks/documents.py encodings):
    a guess whose accented words come out in another script ("café" as MacCyrillic "cafй", as short
    or repetitive text may be guessed) gives way to the next that reads as one script; and among
    guesses as confident (within 5%), Windows-1252 wins, by far the most common legacy encoding,
    which also reads what is labelled Latin-1 (its C1 range is punctuation in real files)."""
    plausible = [(e, c) for e, c in results[:12] if _mixed_share(sample, e) <= 0.2] or results
    best, confidence = plausible[0]
    for encoding, c in plausible:
        if c >= 0.95 * confidence and _normal(encoding) in _WINDOWS_1252:
            return "cp1252"
    return "utf-8" if _normal(best) == "ascii" else best


_WINDOWS_1252 = {"cp1252", "windows-1252", "latin-1", "iso-8859-1", "iso8859-1", "latin1"}
_LETTER_RUN = re.compile(r"[^\W\d_]+")


def _normal(encoding: str) -> str:
    return encoding.lower().replace("_", "-")


def _mixed_share(sample: bytes, encoding: str) -> float:
    """Of the words in `sample` read as `encoding` that hold a non-ASCII letter, the share that mix ASCII
    letters with letters of another script than Latin: what a wrong code page makes of accented words."""
    import unicodedata

    try:
        text = sample.decode(encoding, errors="replace")
    except LookupError:
        return 1.0
    mixed = accented = 0
    for word in _LETTER_RUN.findall(text):
        if word.isascii():
            continue
        accented += 1
        if any(c.isascii() for c in word) and any(
            not c.isascii() and not unicodedata.name(c, "").startswith("LATIN") for c in word
        ):
            mixed += 1
    return mixed / accented if accented else 0.0


def _bom_decoder(data: bytes) -> codecs.IncrementalDecoder | None:
    # UTF-32's BOM starts like UTF-16's: test it first.
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return codecs.getincrementaldecoder(encoding)(errors="replace")
    return None


def _escapes(data: bytes) -> bool:
    """ISO-2022 and HZ write Chinese, Japanese and Korean in ASCII bytes, between escapes."""
    return b"\x1b$" in data or b"\x1b(" in data or (b"~{" in data and b"~}" in data)


def _damaged_utf8(data: bytes) -> bool:
    """UTF-8 with a few broken bytes (a cut download, one pasted Latin-1 line) rather than another
    encoding: its valid multi-byte characters outnumber the broken ones (text in a legacy encoding
    forms valid UTF-8 sequences only by chance)."""
    at = len(data) - len(data.lstrip(_ASCII))
    text = data[at : at + 4 * _SAMPLE_BYTES].decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    valid = len(text) - len(text.encode("ascii", errors="ignore")) - broken
    return valid > 0 and valid >= 4 * broken


_CONTROLS = bytes(i for i in range(32) if chr(i) not in "\t\n\r\f\v\x1b") + b"\x7f"
_ASCII = bytes(range(0x80))


def _junk_fraction(data: bytes | str) -> float:
    """Share of replacement characters and control characters that don't occur in text."""
    if not data:
        return 0.0
    if isinstance(data, bytes):
        return (len(data) - len(data.translate(None, _CONTROLS))) / len(data)
    junk = data.count("\ufffd") + sum(data.count(chr(c)) for c in _CONTROLS)
    return junk / len(data)


def _tidy(text: str) -> str:
    # One newline convention, so "\n\n" means a paragraph break everywhere.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_pages(path: Path, max_chars: int | None) -> Iterator[Page]:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as e:
            if getattr(e, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
                raise DocumentError(f"{path}: is encrypted (it needs a password to open)") from e
            raise DocumentError(f"{path}: not a readable PDF ({_pdfium_reason(e)})") from e
        except OSError as e:
            raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e
        count = len(pdf)
    total = 0
    try:
        for i in range(count):
            with _PDFIUM_LOCK:  # one page at a time: other threads' documents go on between pages
                try:
                    page = pdf[i]
                    try:
                        textpage = page.get_textpage()
                        try:
                            # get_text_bounded, not get_text_range: the latter is UCS-2 only.
                            text = textpage.get_text_bounded()
                        finally:
                            textpage.close()
                    finally:
                        page.close()
                except pdfium.PdfiumError as e:
                    raise DocumentError(f"{path}: page {i + 1} could not be read ({_pdfium_reason(e)})") from e
            # pdfium marks a hyphen that ends a line as \x02 (or U+FFFE); it's a hyphen in the text.
            text = _tidy(text).replace("\x00", "").replace("\x02", "-").replace("\ufffe", "-")
            if max_chars is not None:
                text = text[: max_chars - total]
            total += len(text)
            yield Page(i + 1, text)
            if max_chars is not None and total >= max_chars:
                return
    finally:
        with _PDFIUM_LOCK:
            pdf.close()


def _pdfium_reason(e: Exception) -> str:
    # "Failed to load document (PDFium: Data format error)." -> "Data format error"
    message = str(e)
    return message.split("PDFium: ", 1)[1].rstrip(").") if "PDFium: " in message else message


# -- chunking --


def chunk_pages(pages: Iterable[Page], tokenizer: TokenizerLike, *, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Cut pages into chunks of at most `max_tokens` tokens (as `tokenizer` encodes the chunk's text on
    its own, without special tokens), consecutive chunks sharing about `overlap_tokens` tokens.

    max_tokens is the text tower's context less its special tokens (77 - 2 for CLIP). Chunks never cross
    pages; pages with only whitespace give none.
    """
    return list(iter_chunks(pages, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap_tokens))


def iter_chunks(pages: Iterable[Page], tokenizer: TokenizerLike, *, max_tokens: int,
                overlap_tokens: int) -> Iterator[Chunk]:
    """chunk_pages, lazily: pages are read and cut as the chunks are taken (at most about _BATCH_CHARS
    of text is tokenized ahead), so a caller that stops taking them stops the work."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {overlap_tokens}")
    if getattr(tokenizer, "truncation", None) or getattr(tokenizer, "padding", None):
        # A truncating tokenizer hides all but the first tokens of every piece: most of the text would
        # never reach a chunk. encoder.chunk_tokenizer gives the right one.
        raise ValueError("chunking needs a tokenizer that neither truncates nor pads")
    return _iter_chunks(pages, tokenizer, max_tokens, overlap_tokens)


def _iter_chunks(pages: Iterable[Page], tokenizer: TokenizerLike, max_tokens: int, overlap: int) -> Iterator[Chunk]:
    for page in pages:
        if page.text.strip():
            yield from _Chunker(page, tokenizer, max_tokens, overlap).run()


# Boundary kinds before a token, weakest to strongest: where a chunk may end.
_INSIDE, _WORD, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3
_CUT_PREFERENCE = [bytes([k]) for k in (_PARAGRAPH, _SENTENCE, _WORD)]
_TABLE_SIZE = 0x10000  # lookup tables cover the Basic Multilingual Plane; no space or stop lies beyond it
_SPACE = np.array([chr(c).isspace() for c in range(_TABLE_SIZE)])
_STOP = np.zeros(_TABLE_SIZE, dtype=bool)
_STOP[[ord(c) for c in ".!?…\u3002\uff01\uff1f"]] = True  # with 。！？, which need no space after them
_CLOSER = np.zeros(_TABLE_SIZE, dtype=bool)
_CLOSER[[ord(c) for c in "\"')]}»’”」』"]] = True
_STOP_NO_SPACE = np.zeros(_TABLE_SIZE, dtype=bool)
_STOP_NO_SPACE[[ord(c) for c in "\u3002\uff01\uff1f"]] = True


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return table[np.minimum(codes, _TABLE_SIZE - 1)] & (codes < _TABLE_SIZE)


class _Chunker:
    """Windows over one page's token stream, fed a batch of pieces at a time so memory stays flat.

    Pending tokens are numpy arrays: start/end offsets in the page, `kind` of the boundary before each
    token, `hard` where a piece was cut without whitespace, `spaced` where the token itself begins with
    whitespace (byte-level tokenizers), since cuts there may not re-encode to the same tokens.
    """

    def __init__(self, page: Page, tokenizer: TokenizerLike, max_tokens: int, overlap: int):
        self.page, self.text, self.tokenizer = page, page.text, tokenizer
        self.max_tokens, self.overlap = max_tokens, overlap
        empty = np.zeros(0, dtype=np.int64)
        self.starts, self.ends, self.kind = empty, empty, empty
        self.hard = self.spaced = np.zeros(0, dtype=bool)
        self.first = 0  # start of the next window in the pending arrays
        self.chunks: list[Chunk] = []  # cut, not yet taken
        self.last = (0, -1)  # the span of the last chunk cut

    def run(self) -> Iterator[Chunk]:
        batch: list[tuple[int, int, bool]] = []
        size = 0
        for piece in _pieces(self.text):
            batch.append(piece)
            size += piece[1] - piece[0]
            if size >= _BATCH_CHARS:
                self._feed(batch)
                yield from self._take()
                batch, size = [], 0
        if batch:
            self._feed(batch)
        self._emit(final=True)
        yield from self._take()

    def _take(self) -> list[Chunk]:
        done, self.chunks = self.chunks, []
        return done

    def _feed(self, batch: list[tuple[int, int, bool]]) -> None:
        encodings = self.tokenizer.encode_batch([self.text[a:b] for a, b, _ in batch], add_special_tokens=False)
        starts, ends, hard = [], [], []
        for (a, _, clean), encoding in zip(batch, encodings):
            pairs = encoding.offsets
            offsets = np.fromiter(chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs)).reshape(-1, 2)
            if len(offsets):
                starts.append(offsets[:, 0] + a)
                ends.append(offsets[:, 1] + a)
                cut = np.zeros(len(offsets), dtype=bool)
                cut[0] = not clean
                hard.append(cut)
        if not starts:
            return
        # Offsets in order (a few normalisers emit (0, 0) for inserted characters).
        floor = int(self.ends[-1]) if len(self.ends) else 0
        new_starts = np.maximum.accumulate(np.maximum(np.concatenate(starts), floor))
        new_ends = np.maximum(np.maximum.accumulate(np.concatenate(ends)), new_starts)
        kind, spaced = self._boundaries(new_starts, new_ends, batch[-1][1])
        if not len(self.starts):
            kind[0] = _PARAGRAPH  # the page start
        self.starts = np.concatenate([self.starts[self.first :], new_starts])
        self.ends = np.concatenate([self.ends[self.first :], new_ends])
        self.kind = np.concatenate([self.kind[self.first :], kind])
        self.hard = np.concatenate([self.hard[self.first :], np.concatenate(hard)])
        self.spaced = np.concatenate([self.spaced[self.first :], spaced])
        self.first = 0
        self._emit(final=False)

    def _boundaries(self, starts: np.ndarray, ends: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The kind of boundary before each new token, and whether it begins with whitespace."""
        previous_end = int(self.ends[-1]) if len(self.ends) else int(starts[0])
        base = max(0, min(previous_end, int(starts[0])) - 2)  # two characters back, to see a sentence end
        codes = np.frombuffer(self.text[base:limit].encode("utf-32-le"), dtype="<u4").astype(np.int64)
        n = len(codes)
        if not n:  # only zero-width tokens at the very end: nothing to cut between
            return np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=bool)
        space = _lookup(_SPACE, codes)
        solid = np.flatnonzero(~space)
        # The gap before a token runs from the previous token's end to the first non-space at or after its
        # start (byte-level tokens carry their leading space with them).
        at = np.searchsorted(solid, starts - base)
        gap_end = np.where(at < len(solid), solid[np.minimum(at, len(solid) - 1)], n)
        gap_start = np.minimum(np.concatenate([[previous_end], ends[:-1]]) - base, gap_end)
        newlines = np.concatenate([[0], np.cumsum(codes == 10)])
        breaks = newlines[gap_end] - newlines[gap_start]
        last = codes[np.maximum(gap_start - 1, 0)]
        before_last = codes[np.maximum(gap_start - 2, 0)]
        stop = (_lookup(_STOP, last) | (_lookup(_CLOSER, last) & _lookup(_STOP, before_last))) & (gap_start > 0)
        kind = np.where(gap_end > gap_start, _WORD, _INSIDE)
        kind[(kind == _WORD) & stop] = _SENTENCE
        kind[_lookup(_STOP_NO_SPACE, last) & (gap_start > 0)] = _SENTENCE
        kind[breaks >= 2] = _PARAGRAPH
        spaced = space[np.minimum(starts - base, n - 1)] & (starts - base < n)
        return kind, spaced

    def _emit(self, *, final: bool) -> None:
        # Windows are sequential (each starts from the last cut), so this loop is Python; it scans bytes
        # and lists rather than slicing numpy arrays, which costs more per window than the scan itself.
        self._kinds = self.kind.astype(np.uint8).tobytes()
        self._words = (self.kind >= _WORD).astype(np.uint8).tobytes()
        self._hard = self.hard.astype(np.uint8).tobytes()
        self._spaced = self.spaced.astype(np.uint8).tobytes()
        self._starts, self._ends = self.starts.tolist(), self.ends.tolist()
        i, n, m = self.first, len(self._starts), self.max_tokens
        while n - i > m or (final and i < n):
            if n - i <= m:
                j = n  # the page's last window
            else:
                # Cut at the strongest boundary in the window's second half, the latest of those.
                lo, hi = i + max(1, m // 2), i + m
                for kind in _CUT_PREFERENCE:
                    j = self._kinds.rfind(kind, lo, hi + 1)
                    if j >= 0:
                        break
                else:
                    j = hi
            j = self._fit(i, j, last=final and j == n)
            self._add(i, j)
            if j >= n:
                i = n
                break
            # Overlap: step back, then forward to the first word start, so a chunk doesn't open mid-word.
            step = max(j - self.overlap, i + 1)
            word = self._words.find(b"\x01", step, j + 1)
            i = word if word >= 0 else step
        self.first = i

    def _fit(self, i: int, j: int, *, last: bool) -> int:
        """Shrink [i, j) until its text alone encodes to at most max_tokens, where that might not hold:
        cut inside a word, across a hard piece boundary, or with space-carrying tokens (byte-level BPE),
        since those can encode differently once cut out. Cuts between words re-encode to the same tokens."""
        while j - i > 1:
            risky = (
                self._kinds[i] == _INSIDE
                or (not last and j < len(self._kinds) and self._kinds[j] == _INSIDE)
                or self._hard.find(b"\x01", i + 1, j) >= 0
                or self._spaced.find(b"\x01", i, j) >= 0
            )
            if not risky:
                return j
            a, b = self._span(i, j)
            count = len(self.tokenizer.encode(self.text[a:b], add_special_tokens=False))
            if count <= self.max_tokens:
                return j
            j = max(i + 1, j - max(1, count - self.max_tokens))
            last = False
        return j  # one token: can't cut finer (only a tiny max_tokens gets here with it still too long)

    def _span(self, i: int, j: int) -> tuple[int, int]:
        a, b = self._starts[i], self._ends[j - 1]
        piece = self.text[a:b]
        return a + len(piece) - len(piece.lstrip()), b - len(piece) + len(piece.rstrip())

    def _add(self, i: int, j: int) -> None:
        a, b = self._span(i, j)
        if b <= a:
            return
        if self.last[0] <= a and b <= self.last[1]:
            return  # nothing new: tokens that share one character (byte-level pieces of it) map to one span
        self.last = (a, b)
        offset = self.page.offset
        self.chunks.append(Chunk(self.page.number, offset + a, offset + b, self.text[a:b]))


def _pieces(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, clean) pieces of about _PIECE_CHARS, ending after a newline, else after a space;
    `clean` is False where neither was found and the piece was cut mid-run."""
    start, n = 0, len(text)
    while start < n:
        limit = start + _PIECE_CHARS
        if limit >= n:
            yield start, n, True
            return
        floor = start + _PIECE_CHARS // 2
        cut = text.rfind("\n", floor, limit)
        if cut < 0:
            cut = text.rfind(" ", floor, limit)
        if cut < 0:
            yield start, limit, False
            start = limit
        else:
            yield start, cut + 1, True
            start = cut + 1
