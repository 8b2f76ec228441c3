"""Documents of the formats people keep (Word, OpenDocument, slides, sheets, EPUB, HTML, RTF, mail, CSV),
written from real text as each format lays it out, for the tests and the benchmarks.

The writers make the parts a reader needs and a few that real programs add beside them (the OOXML
content types and core properties, ODF's mimetype and meta.xml), with the standard library only, so
no test needs python-docx and friends. write_format_corpus fills one file of each format with its own
paragraphs of real text nobody else's corpus file holds: the docstrings of Python's standard library
(real_corpus.library_paragraphs), so a phrase found in a file was read from that file's format.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
P = 'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
S = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = '<Relationship Id="{}" Type="x" Target="{}"/>'
RELS = '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}</Relationships>'
ODF = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
       'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
       'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"')
_CORE = ('<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties '
         'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
         'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{}</dc:title></cp:coreProperties>')
_TYPES = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
          'content-types"><Default Extension="xml" ContentType="application/xml"/>{}</Types>')
_ODF_META = ('<?xml version="1.0" encoding="UTF-8"?><office:document-meta '
             'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
             'xmlns:dc="http://purl.org/dc/elements/1.1/"><office:meta><dc:title>{}</dc:title></office:meta>'
             '</office:document-meta>')


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _zip(path: Path, parts: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            # ODF and EPUB want their mimetype first and stored (readers sniff it at a fixed offset)
            z.writestr(name, data, zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED)


def _ooxml(main: str, content_type: str, title: str) -> dict[str, str]:
    return {"[Content_Types].xml": _TYPES.format(f'<Override PartName="/{main}" ContentType="{content_type}"/>'),
            "docProps/core.xml": _CORE.format(esc(title))}


def write_docx(path: Path, paras: list[str]) -> None:
    body = "".join(f'<w:p><w:r><w:t xml:space="preserve">{esc(p[:40])}</w:t></w:r><w:r><w:t>{esc(p[40:])}</w:t>'
                   f"</w:r></w:p>" for p in paras)
    _zip(path, {**_ooxml("word/document.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml."
                         "document.main+xml", path.stem),
                "word/document.xml": f"<w:document {W}><w:body>{body}</w:body></w:document>"})


def write_pptx(path: Path, slides: list[str]) -> None:
    parts = _ooxml("ppt/presentation.xml", "application/vnd.openxmlformats-officedocument.presentationml."
                   "presentation.main+xml", path.stem)
    ids = "".join(f'<p:sldId id="{256 + i}" r:id="rId{i + 1}"/>' for i in range(len(slides)))
    parts["ppt/presentation.xml"] = f"<p:presentation {P} {R}><p:sldIdLst>{ids}</p:sldIdLst></p:presentation>"
    parts["ppt/_rels/presentation.xml.rels"] = RELS.format(
        "".join(REL.format(f"rId{i + 1}", f"slides/slide{i + 1}.xml") for i in range(len(slides))))
    for i, text in enumerate(slides):
        parts[f"ppt/slides/slide{i + 1}.xml"] = (f"<p:sld {P} {A}><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r>"
                                                 f"<a:t>{esc(text)}</a:t></a:r></a:p></p:txBody></p:sp>"
                                                 f"</p:spTree></p:cSld></p:sld>")
    _zip(path, parts)


def write_xlsx(path: Path, sheets: list[list[list[str]]]) -> None:
    strings: list[str] = []
    parts = _ooxml("xl/workbook.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                   path.stem)
    for n, rows in enumerate(sheets, 1):
        xml_rows = []
        for r, row in enumerate(rows, 1):
            cells = []
            for c, value in enumerate(row):
                strings.append(value)
                cells.append(f'<c r="{"ABCD"[c]}{r}" t="s"><v>{len(strings) - 1}</v></c>')
            cells.append(f'<c r="E{r}"><v>{r * 7}</v></c>')  # a number, as written
            xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
        parts[f"xl/worksheets/sheet{n}.xml"] = f"<worksheet {S}><sheetData>{''.join(xml_rows)}</sheetData></worksheet>"
    sis = "".join(f"<si><t>{esc(s)}</t></si>" for s in strings)
    parts["xl/sharedStrings.xml"] = f'<sst {S} count="{len(strings)}">{sis}</sst>'
    names = "".join(f'<sheet name="Sheet {n}" sheetId="{n}" r:id="rId{n}"/>' for n in range(1, len(sheets) + 1))
    parts["xl/workbook.xml"] = f"<workbook {S} {R}><sheets>{names}</sheets></workbook>"
    parts["xl/_rels/workbook.xml.rels"] = RELS.format(
        "".join(REL.format(f"rId{n}", f"worksheets/sheet{n}.xml") for n in range(1, len(sheets) + 1)))
    _zip(path, parts)


def write_odt(path: Path, paras: list[str]) -> None:
    body = "".join(f"<text:p>{esc(p[:30])}<text:span>{esc(p[30:])}</text:span></text:p>" for p in paras)
    _zip(path, {"mimetype": "application/vnd.oasis.opendocument.text", "meta.xml": _ODF_META.format(esc(path.stem)),
                "content.xml": f"<office:document-content {ODF}><office:body><office:text>{body}"
                               f"</office:text></office:body></office:document-content>"})


def write_ods(path: Path, sheets: list[list[list[str]]]) -> None:
    tables = "".join(
        f'<table:table table:name="Sheet {n}">' + "".join(
            "<table:table-row>" + "".join(f'<table:table-cell office:value-type="string"><text:p>{esc(v)}</text:p>'
                                          f"</table:table-cell>" for v in row)
            + '<table:table-cell table:number-columns-repeated="1000"/></table:table-row>' for row in rows)
        + "</table:table>" for n, rows in enumerate(sheets, 1))
    _zip(path, {"mimetype": "application/vnd.oasis.opendocument.spreadsheet",
                "meta.xml": _ODF_META.format(esc(path.stem)),
                "content.xml": f"<office:document-content {ODF}><office:body><office:spreadsheet>{tables}"
                               f"</office:spreadsheet></office:body></office:document-content>"})


def write_epub(path: Path, chapters: list[str]) -> None:
    manifest = "".join(f'<item id="c{i}" href="text/ch{i}.xhtml" media-type="application/xhtml+xml"/>'
                       for i in range(len(chapters)))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    parts = {"mimetype": "application/epub+zip",
             "META-INF/container.xml": '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                                       '<rootfiles><rootfile full-path="OEBPS/book.opf" '
                                       'media-type="application/oebps-package+xml"/></rootfiles></container>',
             "OEBPS/book.opf": f'<package xmlns="http://www.idpf.org/2007/opf" version="2.0"><metadata '
                               f'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{esc(path.stem)}</dc:title>'
                               f'</metadata><manifest>{manifest}</manifest><spine>{spine}</spine></package>'}
    for i, text in enumerate(chapters):
        parts[f"OEBPS/text/ch{i}.xhtml"] = (f'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                                            f"<head><title>Chapter</title><style>p {{ color: red }}</style></head>"
                                            f"<body><h1>Chapter {i + 1}</h1><p>{esc(text)}</p></body></html>")
    _zip(path, parts)


def write_html(path: Path, title: str, paras: list[str]) -> None:
    path.write_text(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
                    "<script>var hidden = 'scriptword';</script><style>body { font-family: serif }</style></head><body>"
                    + "".join(f"<p>{esc(p)}</p>" for p in paras) + "</body></html>", encoding="utf-8")


def rtf_escape(s: str) -> str:
    """Text as RTF: its control characters escaped, anything past ASCII as \\uN? escapes."""
    out = []
    for ch in s.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}"):
        out.append(ch if ord(ch) < 128 else f"\\u{ord(ch) if ord(ch) < 32768 else ord(ch) - 65536}?")
    return "".join(out)


def write_rtf(path: Path, paras: list[str]) -> None:
    body = "\\par\n".join(rtf_escape(p) for p in paras)
    path.write_text("{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0 Times;}}\n" + body + "}", "ascii")


def write_eml(path: Path, subject: str, paras: list[str]) -> None:
    path.write_text("From: Ada <ada@example.org>\nTo: Bob <bob@example.org>\nSubject: " + subject + "\n"
                    "Date: Mon, 3 Mar 2025 10:00:00 +0000\nMIME-Version: 1.0\n"
                    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                    + "\n\n".join(paras) + "\n", encoding="utf-8")


def write_csv(path: Path, paras: list[str]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i, p in enumerate(paras):
            w.writerow([i, p])


def _sheets(paras: list[str], per_sheet: int) -> list[list[list[str]]]:
    """Each paragraph one cell, four to a row, `per_sheet` cells a sheet."""
    return [[paras[s + r : s + r + 4] for r in range(0, min(per_sheet, len(paras) - s), 4)]
            for s in range(0, len(paras), per_sheet)]


FORMATS = (".docx", ".odt", ".pptx", ".xlsx", ".ods", ".epub", ".html", ".rtf", ".eml", ".csv")


@dataclass(frozen=True)
class FormatCorpus:
    folder: Path
    paragraphs: dict[str, list[str]]  # file name -> the paragraphs written into it (cells, slides, ...)


def write_format_corpus(folder: Path, paragraphs: list[str], per_file: int = 60) -> FormatCorpus:
    """One file of each of FORMATS under `folder`, each with the next `per_file` of `paragraphs` (real
    text; each file its own): a paragraph a Word/ODF paragraph, a slide, a sheet's cell, an EPUB chapter,
    an HTML paragraph, an RTF paragraph, a paragraph of a mail's body, a CSV row."""
    folder.mkdir(parents=True, exist_ok=True)
    need = per_file * len(FORMATS)
    if len(paragraphs) < need:
        raise ValueError(f"{len(paragraphs)} paragraphs, {need} needed for {per_file} a file")
    out: dict[str, list[str]] = {}
    for n, suffix in enumerate(FORMATS):
        paras = paragraphs[n * per_file : (n + 1) * per_file]
        path = folder / f"library{suffix}"
        {".docx": lambda: write_docx(path, paras), ".odt": lambda: write_odt(path, paras),
         ".pptx": lambda: write_pptx(path, paras), ".xlsx": lambda: write_xlsx(path, _sheets(paras, 20)),
         ".ods": lambda: write_ods(path, _sheets(paras, 20)), ".epub": lambda: write_epub(path, paras),
         ".html": lambda: write_html(path, "Library notes", paras), ".rtf": lambda: write_rtf(path, paras),
         ".eml": lambda: write_eml(path, "Library notes", paras), ".csv": lambda: write_csv(path, paras)}[suffix]()
        out[path.name] = paras
    return FormatCorpus(folder, out)
