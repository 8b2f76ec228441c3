"""Text out of documents, page by page, in flat memory: PDFs and plain-text files here, the other
formats (office files, EPUB, HTML, RTF, mail) by formats.py, dispatched here by suffix.

A PDF gives a page at a time (pypdfium2) and a text file a segment of about a megabyte (cut at a
paragraph break), so a document of any size is read in flat memory and a cancel is seen between pieces.

Text files are read in the encoding they are in: a BOM's, else UTF-8 where the bytes are UTF-8, else the
legacy encoding chardet finds (Latin-1/cp1252, GBK, Big5, Shift_JIS, EUC-JP, EUC-KR, ...); bytes that
are no text in any encoding are refused as binary.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import formats
from .errors import MmsearchError
from .media import DOCUMENT_SUFFIXES, FORMAT_SUFFIXES, ZIP_SUFFIXES


# Not text: control bytes above this share of the first bytes, or after decoding, replacement and
# control characters above _JUNK_FRACTION (Latin-1 French or German stays well under it).
_CONTROL_FRACTION = 0.10
_JUNK_FRACTION = 0.30
_SAMPLE_BYTES = 1 << 16  # the binary sniff and the encoding detector look at this much
_SEGMENT_BYTES = 1 << 20  # a text file is read, decoded and chunked this much at a time
# Random high bytes (no NUL, no controls) decode in some code page as "text"; chardet's confidence
# tells them apart: at most 0.063 for random high bytes (30 draws each of 32 B to 64 KB; 0.035-0.058
# below 2 KB) against 0.46 and more for real text that is mostly non-ASCII from 2 KB on, and 0.062 for
# 65 bytes of Chinese. Text that is mostly ASCII is text.
_MIN_CONFIDENCE, _MIN_CONFIDENCE_SHORT, _SHORT = 0.07, 0.05, 2048
_MOSTLY_HIGH = 0.30

# pdfium is not thread-safe; indexing may extract from several threads. Re-entrant: a PDF page
# generator dropped while this thread holds the lock closes its document under it.
_PDFIUM_LOCK = threading.RLock()


# A PDF page whose text layer holds fewer characters than this (spaces aside) is a picture of a page
# (a scan, a photo, outlined text): OCR reads it (ingest/ocr.py). A page number or a stamp stays under it.
SCANNED_PAGE_CHARS = 10


def has_text_layer(text: str) -> bool:
    seen = 0
    for ch in text:
        if not ch.isspace():
            seen += 1
            if seen >= SCANNED_PAGE_CHARS:
                return True
    return False


class DocumentError(MmsearchError):
    """A document that can't be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Page:
    # 1-based: a PDF's page, a slide (.pptx), a sheet (.xlsx, .ods), a chapter (.epub's spine item);
    # None for text files and word-processor files, which have no fixed pages
    number: int | None
    text: str
    offset: int = 0  # where `text` starts in the whole text (a text file comes in segments)
    drawn: bool = field(default=False, compare=False)  # a PDF page: one without a text layer is a picture for OCR


def extract_pages(path: Path, *, max_bytes: int | None = None) -> list[Page]:
    """The text of a document, page by page; a text file is one page. With `max_bytes`, only that much of
    a text file is read, and a PDF or another format stops giving pages once that many characters are out."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".pdf":
        return list(_pdf_pages(path, max_bytes))
    if suffix in FORMAT_SUFFIXES:
        return list(_format_pages(path, suffix, max_bytes))
    text = "".join(page.text for page in _text_pages(path, max_bytes=max_bytes))
    return [Page(None, text)]


def iter_pages(path: Path, *, max_chars: int | None = None) -> Iterator[Page]:
    """The whole text of a document, lazily: PDF pages one at a time, a text file in segments of about
    a megabyte that end at a paragraph break (Page.offset says where each starts), the other formats
    slide by slide, sheet by sheet, chapter by chapter. With `max_chars`, a format that is not streamed
    (a sheet, an HTML page) stops one character past it, so the caller sees the cut."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".pdf":
        return _pdf_pages(path, None)
    if suffix in FORMAT_SUFFIXES:
        return _format_pages(path, suffix, max_chars)
    return _text_pages(path)


_MARKUP_BYTES_PER_CHAR = 8  # HTML and RTF are read at most this many bytes a character of the limit


def _format_pages(path: Path, suffix: str, max_chars: int | None) -> Iterator[Page]:
    limit = max_chars if max_chars is not None else 1 << 62
    try:
        if suffix in ZIP_SUFFIXES or suffix == ".eml":
            try:
                f = open(path, "rb")
            except OSError as e:
                raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e
            with f:
                yield from _numbered(formats.sections(suffix, f, None, limit))
            return
        max_bytes = None if max_chars is None else _MARKUP_BYTES_PER_CHAR * max_chars
        text = "".join(page.text for page in _text_pages(path, max_bytes=max_bytes))
        yield from _numbered(formats.sections(suffix, None, text, limit))
    except formats.FormatError as e:
        raise DocumentError(f"{path}: {e}") from e
    except OSError as e:
        raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e


def _numbered(sections: Iterator[formats.Section]) -> Iterator[Page]:
    offset = 0
    for number, text in sections:
        text = _tidy(text)
        yield Page(number, text, offset if number is None else 0)
        offset += len(text)


def decode_text(f: IO[bytes], name: str) -> Iterator[str]:
    """A text file's text as it is written, block by block, decoded as indexing decodes it (the same
    blocks, so the same encoding is chosen): for showing the file, where its bytes in a legacy encoding
    would read as U+FFFD if taken for UTF-8. Raises DocumentError naming the file."""
    decoder = _TextDecoder(Path(name))
    while True:
        try:
            data = f.read(_SEGMENT_BYTES)
        except OSError as e:
            raise DocumentError(f"{name}: cannot be read ({e.strerror or e})") from e
        final = len(data) < _SEGMENT_BYTES
        text = decoder.decode(data, final=final)
        if text:
            yield text
        if final:
            return


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES and suffix:  # (a file with no suffix is read as text)
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
            yield Page(i + 1, text, drawn=True)
            if max_chars is not None and total >= max_chars:
                return
    finally:
        with _PDFIUM_LOCK:
            pdf.close()


def render_page(path: Path, number: int, fit: int, file: IO[bytes] | None = None) -> Any:
    """Page `number` (1-based) of a PDF as an RGB PIL image whose longest side is `fit` pixels (the web
    app's thumbnails; OCR reads a scanned page at 2000, ~180 dpi for A4); read from `file` where given
    (the path then only names it). Raises DocumentError naming the file and the page."""
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:  # the whole render: pdfium is not thread-safe
        try:
            pdf = pdfium.PdfDocument(file if file is not None else str(path))
        except pdfium.PdfiumError as e:
            raise DocumentError(f"{path}: not a readable PDF ({_pdfium_reason(e)})") from e
        except OSError as e:
            raise DocumentError(f"{path}: cannot be read ({e.strerror or e})") from e
        try:
            if not 1 <= number <= len(pdf):
                raise DocumentError(f"{path}: has no page {number} (it has {len(pdf)})")
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
                bitmap = page.render(scale=fit / max(width, height, 1.0))
                img = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer goes with the page
            except pdfium.PdfiumError as e:
                raise DocumentError(f"{path}: page {number} could not be drawn ({_pdfium_reason(e)})") from e
            finally:
                page.close()
        finally:
            pdf.close()
    if max(img.size) > fit:  # pdfium rounds the bitmap's size up
        img.thumbnail((fit, fit))
    return img


def _pdfium_reason(e: Exception) -> str:
    # "Failed to load document (PDFium: Data format error)." -> "Data format error"
    message = str(e)
    return message.split("PDFium: ", 1)[1].rstrip(").") if "PDFium: " in message else message


def scanned_pages(path: Path) -> list[int]:
    """The 1-based numbers of a PDF's pages that have no text layer (see SCANNED_PAGE_CHARS)."""
    return [page.number for page in _pdf_pages(Path(path), None) if page.number is not None and page.drawn
            and not has_text_layer(page.text)]
