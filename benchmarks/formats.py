"""How mmsearch reads the document formats (mmsearch/formats.py: the standard library's zipfile and
ElementTree, html.parser, email; striprtf for RTF) against the maintained libraries for each format:
seconds per file and the share of the source's words found in the text, side by side in alternating
rounds.

Files are written from real text (Python's language reference, benchmarks/real_corpus.py) by the
libraries themselves (python-docx, python-pptx, openpyxl, odfpy, ebooklib), so each file is as its
library writes it; the HTML pages are real ones from /usr/share/doc (their words as lxml reads them stand for
the source).

    pip install python-docx python-pptx openpyxl odfpy ebooklib selectolax lxml
    python -m benchmarks.formats [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.real_corpus import python_docs
from mmsearch.textfiles import extract_pages

HTML_PAGES = ("/usr/share/doc/gcc-12/NEWS.html", "/usr/share/doc/bzip2/manual.html")
_WORD = re.compile(r"[A-Za-z]{4,}")


def _paragraphs() -> list[str]:
    text = python_docs(1)["python-reference-01.txt"]
    return [p.strip().replace("\n", " ") for p in text.split("\n\n") if p.strip()][:3000]


def write_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the text written into it)."""
    import docx
    import ebooklib.epub as epub
    import openpyxl
    import pptx
    from odf import opendocument, table
    from odf import text as odftext

    paras = _paragraphs()
    out = {}
    d = docx.Document()
    for p in paras:
        d.add_paragraph(p)
    d.save(folder / "reference.docx")
    out["docx"] = (folder / "reference.docx", "\n".join(paras))

    deck = pptx.Presentation()
    used = []
    for i in range(150):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = paras[i * 3][:80]
        slide.placeholders[1].text = paras[i * 3 + 1] + "\n" + paras[i * 3 + 2]
        used += [paras[i * 3][:80], paras[i * 3 + 1], paras[i * 3 + 2]]
    deck.save(folder / "reference.pptx")
    out["pptx"] = (folder / "reference.pptx", "\n".join(used))

    words = " ".join(paras).split()
    cells = [" ".join(words[i : i + 6]) for i in range(0, min(len(words), 6 * 4 * 6000), 6)]
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(0, len(cells), 4):
        ws.append(cells[r : r + 4] + [r])
    wb.save(folder / "reference.xlsx")
    out["xlsx"] = (folder / "reference.xlsx", "\n".join(cells))

    doc = opendocument.OpenDocumentText()
    for p in paras:
        doc.text.addElement(odftext.P(text=p))
    doc.save(str(folder / "reference.odt"))
    out["odt"] = (folder / "reference.odt", "\n".join(paras))

    sheet = opendocument.OpenDocumentSpreadsheet()
    t = table.Table(name="Reference")
    for r in range(0, len(cells) // 4, 4):
        row = table.TableRow()
        for c in cells[r : r + 4]:
            cell = table.TableCell(valuetype="string")
            cell.addElement(odftext.P(text=c))
            row.addElement(cell)
        t.addElement(row)
    sheet.spreadsheet.addElement(t)
    sheet.save(str(folder / "reference.ods"))
    out["ods"] = (folder / "reference.ods", "\n".join(cells[: len(cells) // 4]))

    book = epub.EpubBook()
    book.set_identifier("reference")
    book.set_title("Reference")
    chapters = []
    for i in range(30):
        ch = epub.EpubHtml(title=f"Chapter {i + 1}", file_name=f"ch{i + 1}.xhtml", lang="en")
        ch.content = "<h1>Chapter</h1>" + "".join(f"<p>{_esc(p)}</p>" for p in paras[i * 100 : i * 100 + 100])
        book.add_item(ch)
        chapters.append(ch)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    epub.write_epub(str(folder / "reference.epub"), book)
    out["epub"] = (folder / "reference.epub", "\n".join(paras[:3000]))

    body = "\\par\n".join(_rtf(p) for p in paras)
    (folder / "reference.rtf").write_text("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times;}}\n" + body + "}", "ascii")
    out["rtf"] = (folder / "reference.rtf", "\n".join(paras))
    for page in HTML_PAGES:
        if Path(page).exists():
            # (the words lxml finds, another parser's, stand for the page's text)
            out[f"html {Path(page).parent.name}"] = (Path(page), lxml_html(Path(page)))
    return out


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rtf(s: str) -> str:
    return "".join(c if c.isascii() and c not in "\\{}" else f"\\u{ord(c)}?" if not c.isascii() else "\\" + c
                   for c in s)


# -- the libraries' readers -----------------------------------------------------------------------

def lib_docx(path: Path) -> str:
    import docx

    return "\n".join(p.text for p in docx.Document(str(path)).paragraphs)


def lib_pptx(path: Path) -> str:
    import pptx

    return "\n".join(sh.text_frame.text for s in pptx.Presentation(str(path)).slides for sh in s.shapes
                     if sh.has_text_frame)


def lib_xlsx(path: Path) -> str:
    import openpyxl

    wb = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    return "\n".join("\t".join(str(v) for v in row if v is not None) for ws in wb.worksheets
                     for row in ws.iter_rows(values_only=True))


def lib_odt(path: Path) -> str:
    from odf import opendocument, teletype, text

    doc = opendocument.load(str(path))
    return "\n".join(teletype.extractText(p) for p in doc.getElementsByType(text.P))


def lib_ods(path: Path) -> str:
    from odf import opendocument, table, teletype

    doc = opendocument.load(str(path))
    return "\n".join("\t".join(teletype.extractText(c) for c in row.getElementsByType(table.TableCell))
                     for row in doc.getElementsByType(table.TableRow))


def lib_epub(path: Path) -> str:
    import ebooklib
    from ebooklib import epub

    from mmsearch.formats import html_text

    book = epub.read_epub(str(path))
    return "\n".join(html_text(book.get_item_with_id(i).get_content().decode()) for i, _ in book.spine
                     if book.get_item_with_id(i) is not None
                     and book.get_item_with_id(i).get_type() == ebooklib.ITEM_DOCUMENT)


def selectolax_html(path: Path) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(path.read_bytes())
    for node in tree.css("script, style"):
        node.decompose()
    return tree.body.text(separator="\n") if tree.body else ""


def lxml_html(path: Path) -> str:
    import lxml.html

    tree = lxml.html.fromstring(path.read_bytes())
    for node in tree.xpath("//script|//style"):
        node.drop_tree()
    return str(tree.text_content())


LIBRARIES: dict[str, list[tuple[str, Callable[[Path], str]]]] = {
    "docx": [("python-docx", lib_docx)], "pptx": [("python-pptx", lib_pptx)],
    "xlsx": [("openpyxl (read-only)", lib_xlsx)], "odt": [("odfpy", lib_odt)], "ods": [("odfpy", lib_ods)],
    "epub": [("ebooklib", lib_epub)], "rtf": [],
}


def ours(path: Path) -> str:
    return "\n".join(p.text for p in extract_pages(path))


def recall(source: str, text: str) -> float:
    want = set(_WORD.findall(source))
    got = set(_WORD.findall(text))
    return len(want & got) / max(1, len(want))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp))
        print(f"{'format':<18}{'size':>9}  {'reader':<28}{'s/file':>8}{'chars':>10}{'words found':>13}")
        for name, (path, source) in files.items():
            readers: list[tuple[str, Callable[[Path], str]]] = [("mmsearch (stdlib" + (" + striprtf)" if name == "rtf" else ")"), ours)]
            readers += LIBRARIES.get(name, [("selectolax", selectolax_html), ("lxml.html", lxml_html)])
            times: dict[str, list[float]] = {r: [] for r, _ in readers}
            texts: dict[str, str] = {}
            for _ in range(args.rounds):  # alternating: each reader once a round
                for label, fn in readers:
                    t0 = time.perf_counter()
                    texts[label] = fn(path)
                    times[label].append(time.perf_counter() - t0)
            for label, _ in readers:
                print(f"{name:<18}{path.stat().st_size / 1e6:>8.2f}M  {label:<28}"
                      f"{statistics.median(times[label]):>8.3f}{len(texts[label]):>10,}"
                      f"{recall(source, texts[label]):>12.1%}")


if __name__ == "__main__":
    main()
