"""Text out of the document formats that are not plain text or PDF: office files (.docx .odt .pptx
.xlsx .ods), EPUB books, HTML, RTF and mail (.eml), each as (location, text) sections.

The office formats and EPUB are zip files of XML: read with the standard library (zipfile and
ElementTree's iterparse, element by element, so a large part is never held as a tree), which measured
as fast as or faster than python-docx / python-pptx / openpyxl / odfpy / ebooklib with the same text
(docs/documents.md). RTF is read with striprtf; HTML with the standard library's html.parser; mail
with its email package. Embedded pictures are not read.

A location is the slide (.pptx), the sheet (.xlsx, .ods) or the spine item, a chapter (.epub), 1-based;
None where the format has none (a word-processor file has no fixed pages). Every function stops once
`max_chars` characters are out (a section is cut there), so a huge sheet costs no more than the
documents step keeps. Problems raise FormatError with the reason; the caller names the file.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import IO
from xml.etree import ElementTree

from .media import ZIP_SUFFIXES

Section = tuple[int | None, str]  # (slide, sheet or chapter number; None for none) and its text

_SEGMENT_CHARS = 1 << 20  # a word-processor file's text comes in sections of about this much


class FormatError(Exception):
    """A file whose format can't be read; the message is the reason (the caller names the file)."""


def sections(suffix: str, file: IO[bytes] | None, text: str | None, max_chars: int) -> Iterator[Section]:
    """The sections of a document in format `suffix`: a zip format from its open `file`, the others
    from their decoded `text` (HTML, RTF) or the file's bytes (.eml)."""
    if suffix in ZIP_SUFFIXES:
        assert file is not None
        head = file.read(8)
        file.seek(0)
        if head.startswith(b"\xd0\xcf\x11\xe0") and suffix != ".epub":
            # An OLE compound file: what Office writes for a password-protected file (or an old .doc/.xls
            # renamed).
            raise FormatError("is encrypted (it needs a password to open) or is an old binary Office file, "
                              "not " + suffix)
        try:
            archive = zipfile.ZipFile(file)
        except zipfile.BadZipFile as e:
            raise FormatError(f"not a readable {suffix[1:].upper()} file: not a zip archive ({e})") from e
        with archive:
            try:
                yield from _capped(_ZIP_READERS[suffix](archive), max_chars)
            except (KeyError, ElementTree.ParseError, zipfile.BadZipFile, EOFError, ValueError) as e:
                raise FormatError(f"not a readable {suffix[1:].upper()} file ({_why(e)})") from e
        return
    if suffix == ".eml":
        assert file is not None
        yield from _capped(iter([(None, mail_text(file.read()))]), max_chars)
        return
    assert text is not None
    if suffix == ".rtf":
        yield from _capped(iter([(None, rtf_text(text))]), max_chars)
    else:
        yield from _capped(iter([(None, html_text(text))]), max_chars)


def _why(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"{e.args[0] if e.args else e} is missing"
    return str(e) or type(e).__name__


def _capped(items: Iterator[Section], max_chars: int) -> Iterator[Section]:
    total = 0
    for number, text in items:
        if total + len(text) > max_chars:
            yield number, text[: max_chars - total + 1]  # one past the limit: the caller sees the cut
            return
        total += len(text)
        yield number, text


# -- XML helpers ----------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _events(archive: zipfile.ZipFile, name: str) -> Iterator[tuple[str, ElementTree.Element]]:
    with archive.open(name) as f:
        yield from ElementTree.iterparse(f, events=("start", "end"))


def _rels(archive: zipfile.ZipFile, part: str) -> dict[str, str]:
    """An OOXML part's relationships: id -> the target's name in the zip."""
    folder, base = posixpath.split(part)
    name = posixpath.join(folder, "_rels", base + ".rels")
    if name not in archive.namelist():
        return {}
    root = ElementTree.fromstring(archive.read(name))
    out = {}
    for rel in root:
        target = rel.get("Target", "")
        if rel.get("TargetMode") == "External":
            continue
        out[rel.get("Id", "")] = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
            posixpath.join(folder, target))
    return out


def _segments(paragraphs: Iterator[str]) -> Iterator[Section]:
    """Paragraphs joined by blank lines, in sections of about _SEGMENT_CHARS."""
    parts: list[str] = []
    size = 0
    for p in paragraphs:
        parts.append(p)
        size += len(p) + 2
        if size >= _SEGMENT_CHARS:
            yield None, "\n\n".join(parts) + "\n\n"
            parts, size = [], 0
    if parts:
        yield None, "\n\n".join(parts)


# -- Word (.docx) ---------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx(archive: zipfile.ZipFile) -> Iterator[Section]:
    parts = ["word/document.xml"] + [p for p in ("word/footnotes.xml", "word/endnotes.xml")
                                     if p in archive.namelist()]
    return _segments(p for part in parts for p in _ooxml_paragraphs(archive, part, _W))


def _ooxml_paragraphs(archive: zipfile.ZipFile, part: str, ns: str) -> Iterator[str]:
    """The text of each paragraph (w:p or a:p) of an OOXML part: its runs' text, tabs and breaks."""
    para, t, tab, br, cr = ns + "p", ns + "t", ns + "tab", ns + "br", ns + "cr"
    out: list[str] = []
    depth = 0
    for event, el in _events(archive, part):
        tag = el.tag
        if event == "start":
            if tag == para:
                depth += 1
            continue
        if tag == t:
            out.append(el.text or "")
        elif tag == tab and depth:
            out.append("\t")
        elif tag in (br, cr):
            out.append("\n")
        elif tag == para:
            depth -= 1
            if depth == 0:
                text = "".join(out).strip()
                out = []
                if text:
                    yield text
            el.clear()


# -- PowerPoint (.pptx): one section a slide, its speaker notes with it ---------------------------

_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _pptx(archive: zipfile.ZipFile) -> Iterator[Section]:
    rels = _rels(archive, "ppt/presentation.xml")
    root = ElementTree.fromstring(archive.read("ppt/presentation.xml"))
    slides = [rels[s.get(_R + "id", "")] for s in root.iter() if _local(s.tag) == "sldId"]
    for number, slide in enumerate(slides, 1):
        text = "\n".join(_ooxml_paragraphs(archive, slide, _A))
        notes = [t for t in _rels(archive, slide).values() if "notesSlide" in t and t in archive.namelist()]
        for part in notes:
            said = "\n".join(p for p in _ooxml_paragraphs(archive, part, _A) if not p.isdigit())
            if said:
                text = f"{text}\n\n{said}" if text else said
        yield number, text


# -- Excel (.xlsx): one section a sheet, its cells row by row, tab-separated ----------------------

_S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _xlsx(archive: zipfile.ZipFile) -> Iterator[Section]:
    shared: list[str] = []
    if "xl/sharedStrings.xml" in archive.namelist():
        parts: list[str] = []
        phonetic = False  # a reading of East Asian text (rPh) is not the cell's text
        for event, el in _events(archive, "xl/sharedStrings.xml"):
            if el.tag == _S + "rPh":
                phonetic = event == "start"
            if event != "end":
                continue
            if el.tag == _S + "t" and el.text and not phonetic:
                parts.append(el.text)
            elif el.tag == _S + "si":
                shared.append("".join(parts))
                parts = []
                el.clear()
    rels = _rels(archive, "xl/workbook.xml")
    root = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    sheets = [(s.get("name", ""), rels[s.get(_R + "id", "")]) for s in root.iter(_S + "sheet")]
    for number, (name, part) in enumerate(sheets, 1):
        yield number, "\n".join([name, *_xlsx_rows(archive, part, shared)])


def _xlsx_rows(archive: zipfile.ZipFile, part: str, shared: list[str]) -> Iterator[str]:
    row: list[str] = []
    value: str | None = None
    inline: list[str] = []
    for event, el in _events(archive, part):
        if event != "end":
            continue
        tag = el.tag
        if tag == _S + "v":
            value = el.text
        elif tag == _S + "t":
            inline.append(el.text or "")
        elif tag == _S + "c":
            kind = el.get("t")
            if kind == "s" and value is not None:
                cell = shared[int(value)] if value.isdigit() and int(value) < len(shared) else ""
            elif kind == "inlineStr":
                cell = "".join(inline)
            else:
                cell = value or ""
            if cell:
                row.append(cell)
            value, inline = None, []
            el.clear()
        elif tag == _S + "row":
            if row:
                yield "\t".join(row)
            row = []
            el.clear()


# -- OpenDocument (.odt text, .ods sheets) --------------------------------------------------------

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"


def _check_odf(archive: zipfile.ZipFile) -> None:
    manifest = "META-INF/manifest.xml"
    if manifest in archive.namelist() and b"encryption-data" in archive.read(manifest):
        raise FormatError("is encrypted (it needs a password to open)")


def _odf_text(el: ElementTree.Element) -> str:
    """A paragraph's text with its spaces (text:s), tabs and line breaks as written."""
    out = [el.text or ""]
    for child in el:
        tag = child.tag
        if tag == _TEXT + "s":
            out.append(" " * int(child.get(_TEXT + "c", "1") or 1))
        elif tag == _TEXT + "tab":
            out.append("\t")
        elif tag == _TEXT + "line-break":
            out.append("\n")
        elif tag in (_TEXT + "p", _TEXT + "h"):
            out.append("\n" + _odf_text(child) + "\n")  # a note's or a frame's paragraph
        else:
            out.append(_odf_text(child))
        out.append(child.tail or "")
    return "".join(out)


def _odt(archive: zipfile.ZipFile) -> Iterator[Section]:
    _check_odf(archive)
    return _segments(_odt_paragraphs(archive))


def _odt_paragraphs(archive: zipfile.ZipFile) -> Iterator[str]:
    depth = 0
    for event, el in _events(archive, "content.xml"):
        if el.tag not in (_TEXT + "p", _TEXT + "h"):
            continue
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if depth == 0:  # the outermost paragraph, its notes and frames with it
            text = _odf_text(el).strip()
            el.clear()
            if text:
                yield text


def _ods(archive: zipfile.ZipFile) -> Iterator[Section]:
    _check_odf(archive)
    events = _events(archive, "content.xml")
    number = 0
    for event, el in events:
        if event == "start" and el.tag == _TABLE + "table":
            number += 1
            yield number, "\n".join([el.get(_TABLE + "name", ""), *_ods_rows(events)])


def _ods_rows(events: Iterator[tuple[str, ElementTree.Element]]) -> Iterator[str]:
    """A sheet's rows, its cells' text tab-separated, up to the end of the table. A repeated row or cell
    (how OpenDocument writes a run of empty ones) is written once: empty runs add nothing."""
    row: list[str] = []
    for event, el in events:
        if event == "start":
            continue
        tag = el.tag
        if tag == _TABLE + "table-cell":
            text = " ".join(t for t in (_odf_text(p).strip() for p in el if p.tag in (_TEXT + "p", _TEXT + "h")) if t)
            if text:
                row.append(text)
            el.clear()
        elif tag == _TABLE + "table-row":
            if row:
                yield "\t".join(row)
            row = []
            el.clear()
        elif tag == _TABLE + "table":
            el.clear()
            return


# -- EPUB: one section a spine item (a chapter), its XHTML as text --------------------------------

_OPF = "{http://www.idpf.org/2007/opf}"


def _epub(archive: zipfile.ZipFile) -> Iterator[Section]:
    container = ElementTree.fromstring(archive.read("META-INF/container.xml"))
    rootfile = next((el.get("full-path") for el in container.iter() if _local(el.tag) == "rootfile"), None)
    if not rootfile:
        raise FormatError("not a readable EPUB file (its container names no package file)")
    opf = ElementTree.fromstring(archive.read(rootfile))
    folder = posixpath.dirname(rootfile)
    manifest = {el.get("id"): el.get("href", "") for el in opf.iter(_OPF + "item")}
    spine = [manifest.get(el.get("idref")) for el in opf.iter(_OPF + "itemref")]
    if any(el.get("Algorithm") for el in _encryption(archive)):
        raise FormatError("is encrypted (DRM: its chapters can't be read)")
    for number, href in enumerate(spine, 1):
        if not href:
            continue
        from urllib.parse import unquote

        name = posixpath.normpath(posixpath.join(folder, unquote(href.split("#")[0])))
        data = archive.read(name)
        yield number, html_text(_decode_markup(data))


def _encryption(archive: zipfile.ZipFile) -> list[ElementTree.Element]:
    name = "META-INF/encryption.xml"
    if name not in archive.namelist():
        return []
    # Fonts are often obfuscated (an "encryption" only of the font files): only encrypted text counts.
    root = ElementTree.fromstring(archive.read(name))
    out = []
    for data in root:
        method = next((el for el in data.iter() if _local(el.tag) == "EncryptionMethod"), None)
        refs = [el.get("URI", "") for el in data.iter() if _local(el.tag) == "CipherReference"]
        if method is not None and any(r.lower().endswith((".xhtml", ".html", ".htm")) for r in refs):
            out.append(method)
    return out


def _decode_markup(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    match = re.search(rb"""encoding=["']([A-Za-z0-9_.-]+)""", data[:200]) or re.search(
        rb"""charset=["']?([A-Za-z0-9_.-]+)""", data[:2048])
    encoding = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


# -- HTML: the text a browser shows, no script or style -------------------------------------------

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "math", "head"})
_BLOCKS = frozenset({
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article", "header",
    "footer", "nav", "aside", "main", "blockquote", "pre", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "figure",
    "figcaption", "form", "title", "caption", "address", "details", "summary",
})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "param",
                   "source", "track", "wbr"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []  # open elements whose text is not shown
        self.title = False
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag in _BLOCKS:
                self.parts.append("\n")
            return
        if tag == "title":
            self.title = True
        elif tag in _SKIPPED:
            self.skipping.append(tag)
        if tag in _BLOCKS:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre += 1
        if tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.title = False
        elif self.skipping and tag == self.skipping[-1]:
            self.skipping.pop()
        elif tag in _SKIPPED and tag in self.skipping:
            while self.skipping and self.skipping.pop() != tag:
                pass
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skipping and not self.title:
            return
        self.parts.append(data if self.pre else _SPACES.sub(" ", data.replace("\n", " ")))


def html_text(markup: str) -> str:
    """The visible text of an HTML page: its title and body, blocks as paragraphs, no script or style."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = "\n".join(line.strip(" ") for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", lines).strip()


# -- RTF ------------------------------------------------------------------------------------------

def rtf_text(text: str) -> str:
    """An RTF file's text (striprtf: control words and groups such as fonts and pictures left out)."""
    from striprtf.striprtf import rtf_to_text

    if not text.lstrip().startswith("{\\rtf"):
        raise FormatError("not a readable RTF file (it does not start with {\\rtf)")
    return rtf_to_text(text, errors="replace")


# -- Mail (.eml): its headers, then its text body (an HTML-only body as text) ---------------------

def mail_text(data: bytes) -> str:
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    if not any(message.get(h) for h in ("From", "Subject", "To", "Date", "Message-ID")):
        raise FormatError("not a readable mail message (no From, To, Subject or Date header)")
    lines = [f"{h}: {message.get(h)}" for h in ("Subject", "From", "To", "Cc", "Date") if message.get(h)]
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        try:
            content = body.get_content()
        except (LookupError, ValueError, AssertionError) as e:
            raise FormatError(f"not a readable mail message (its body: {e})") from e
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        text = html_text(content) if body.get_content_subtype() == "html" else str(content)
    return "\n".join(lines) + "\n\n" + text.replace("\r\n", "\n").strip()


_ZIP_READERS: dict[str, Callable[[zipfile.ZipFile], Iterator[Section]]] = {
    ".docx": _docx, ".pptx": _pptx, ".xlsx": _xlsx, ".odt": _odt, ".ods": _ods, ".epub": _epub,
}
