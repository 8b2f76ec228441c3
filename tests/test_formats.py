"""Each document format mmsearch reads (mmsearch/formats.py), written here from real text (Python's
language reference, benchmarks/real_corpus.py) the way its format lays it out, indexed with the
committed toy model, and found by a phrase from the middle of its text at the right slide, sheet or
chapter. A corrupt office file ends in error with its reason; a text file with no suffix is read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.format_corpus import esc as _esc  # noqa: E402
from benchmarks.format_corpus import write_docx, write_epub, write_odt, write_ods, write_pptx, write_xlsx  # noqa: E402
from benchmarks.real_corpus import python_docs  # noqa: E402

TOYCLIP = Path(__file__).parent / "fixtures" / "toyclip"


def _paragraphs() -> list[str]:
    text = python_docs(1)["python-reference-01.txt"]
    paras = [" ".join(p.split()) for p in text.split("\n\n")]
    return [p for p in paras if len(p.split()) >= 30 and all(c not in p for c in "<>&\\{}")]


def _middle(paragraph: str) -> str:
    words = paragraph.split()
    at = len(words) // 2
    return " ".join(words[at : at + 5])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A folder of every format, and for each file the phrase from its middle and where it lies."""
    paras = _paragraphs()
    assert len(paras) > 120
    take = iter(paras)

    def some(n: int) -> list[str]:
        return [next(take) for _ in range(n)]

    folder = tmp_path_factory.mktemp("formats") / "docs"
    folder.mkdir()
    wanted: dict[str, tuple[str, int | None]] = {}

    docx = some(9)
    write_docx(folder / "report.docx", docx)
    wanted["report.docx"] = (_middle(docx[4]), None)
    odt = some(9)
    write_odt(folder / "letter.odt", odt)
    wanted["letter.odt"] = (_middle(odt[4]), None)
    slides = some(5)
    write_pptx(folder / "talk.pptx", slides)
    wanted["talk.pptx"] = (_middle(slides[2]), 3)

    def sheets(n: int) -> list[list[list[str]]]:
        out = []
        for _ in range(n):
            words = " ".join(some(3)).split()
            cells = [" ".join(words[i : i + 6]) for i in range(0, len(words) - 6, 6)]
            out.append([cells[i : i + 4] for i in range(0, len(cells), 4)])
        return out

    xlsx = sheets(3)
    write_xlsx(folder / "budget.xlsx", xlsx)
    wanted["budget.xlsx"] = (" ".join(xlsx[1][2][1].split()[1:5]), 2)
    ods = sheets(3)
    write_ods(folder / "plan.ods", ods)
    wanted["plan.ods"] = (" ".join(ods[2][2][1].split()[1:5]), 3)
    chapters = some(4)
    write_epub(folder / "book.epub", chapters)
    wanted["book.epub"] = (_middle(chapters[2]), 3)

    html = some(3)
    (folder / "page.html").write_text(
        "<!doctype html><html><head><title>A page</title><script>var hidden = 'scriptword';</script>"
        "<style>body { font-family: serif }</style></head><body>"
        + "".join(f"<p>{_esc(p)}</p>" for p in html) + "</body></html>", encoding="utf-8")
    wanted["page.html"] = (_middle(html[1]), None)
    rtf = some(3)
    body = "\\par\n".join(rtf[:1] + ["Caf\\'e9 \\u8364? " + rtf[1], rtf[2]])
    (folder / "notes.rtf").write_text("{\\rtf1\\ansi\\ansicpg1252{\\fonttbl{\\f0 Times;}}\n" + body + "}", "ascii")
    wanted["notes.rtf"] = (_middle(rtf[1]), None)
    mail = some(2)
    (folder / "plain.eml").write_text(
        "From: Ada <ada@example.org>\nTo: Bob <bob@example.org>\nSubject: Quarterly zephyr figures\n"
        "Date: Mon, 3 Mar 2025 10:00:00 +0000\nContent-Type: text/plain; charset=utf-8\n\n" + mail[0] + "\n",
        encoding="utf-8")
    wanted["plain.eml"] = (_middle(mail[0]), None)
    (folder / "html-only.eml").write_text(
        "From: Carol <carol@example.org>\nTo: Dan <dan@example.org>\nSubject: Minutes\nMIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\n\n<html><body><p>" + _esc(mail[1]) + "</p></body></html>\n",
        encoding="utf-8")
    wanted["html-only.eml"] = (_middle(mail[1]), None)
    csv_rows = some(2)
    (folder / "table.csv").write_text("id,text\n" + "".join(f'{i},"{p}"\n' for i, p in enumerate(csv_rows)))
    wanted["table.csv"] = (_middle(csv_rows[1]), None)
    js = some(2)
    (folder / "data.json").write_text('{"items": [' + ", ".join(f'{{"text": "{p}"}}' for p in js) + "]}")
    wanted["data.json"] = (_middle(js[0]), None)
    src = some(2)
    (folder / "module.py").write_text(f'"""{src[0]}"""\n\n\ndef f():\n    return 1\n')
    wanted["module.py"] = (_middle(src[0]), None)
    (folder / "main.rs").write_text(f"// {src[1]}\nfn main() {{}}\n")
    wanted["main.rs"] = (_middle(src[1]), None)
    plain = some(1)
    (folder / "README").write_text(plain[0] + "\n")  # no suffix: read by its content
    wanted["README"] = (_middle(plain[0]), None)
    (folder / "program").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)  # no suffix, binary
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 this is not really a zip archive at all")
    return folder, wanted


@pytest.fixture(scope="module")
def indexed(made, tmp_path_factory):
    from mmsearch import Index

    folder, wanted = made
    idx = Index(tmp_path_factory.mktemp("formats") / "index", model=TOYCLIP, device="cpu")
    report = idx.index([folder])
    yield idx, report
    idx.close()


def test_every_format_is_found_by_a_phrase_from_its_middle_at_its_slide_sheet_or_chapter(made, indexed):
    folder, wanted = made
    idx, report = indexed
    assert report.added == len(wanted), report.errors
    for name, (phrase, page) in wanted.items():
        hits = idx.search(f'"{phrase}"', mode="keyword", k=3)
        assert hits, (name, phrase)
        assert (Path(hits[0].path).name, hits[0].page) == (name, page), (name, phrase)
        # Said as a person says it: "slide 3" in a deck, "sheet 2" in a workbook, "chapter 3" in a book.
        word = {".pptx": "slide", ".xlsx": "sheet", ".ods": "sheet", ".epub": "chapter"}.get(Path(name).suffix, "page")
        assert hits[0].to_dict()["location"] == (f"{word} {page}" if page else None), name


def test_a_corrupt_office_file_is_in_error_with_its_reason_and_a_binary_without_suffix_is_not_read(indexed):
    idx, report = indexed
    errors = {Path(e["path"]).name: e["reason"] for e in report.errors}
    assert list(errors) == ["broken.docx"]
    assert "not a readable DOCX file" in errors["broken.docx"] and "zip" in errors["broken.docx"]


def test_html_text_leaves_out_script_and_style_and_mail_says_its_headers(made):
    from mmsearch.textfiles import extract_pages

    folder, _ = made
    html = extract_pages(folder / "page.html")[0].text
    assert "scriptword" not in html and "font-family" not in html and html.startswith("A page")
    mail = extract_pages(folder / "plain.eml")[0].text
    assert mail.startswith("Subject: Quarterly zephyr figures\nFrom: Ada <ada@example.org>\nTo: Bob")
    assert "Date: Mon, 03 Mar 2025 10:00:00 +0000" in mail
    rtf = extract_pages(folder / "notes.rtf")[0].text
    assert "Café €" in rtf and "fonttbl" not in rtf and "Times" not in rtf


def test_a_sheet_is_cut_at_the_character_limit_and_an_encrypted_office_file_says_so(tmp_path):
    from mmsearch.textfiles import DocumentError, iter_pages

    rows = [[f"cell {r} {c} lorem ipsum" for c in range(4)] for r in range(3000)]
    write_xlsx(tmp_path / "big.xlsx", [rows, rows])
    pages = list(iter_pages(tmp_path / "big.xlsx", max_chars=10_000))
    assert [p.number for p in pages] == [1] and len(pages[0].text) == 10_001
    (tmp_path / "locked.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    with pytest.raises(DocumentError, match="locked.docx: is encrypted"):
        list(iter_pages(tmp_path / "locked.docx"))


def test_text_types_are_shown_as_text_and_the_others_downloaded():
    """The web app shows a text/* file as plain text (never rendered: HTML neither) and downloads the rest."""
    from mmsearch.media import kind_of, media_type

    assert [media_type(n) for n in ("a.py", "a.ts", "a.rs", "README", "a.json")] == ["text/plain"] * 5
    assert media_type("a.html") == "text/html" and media_type("a.csv") == "text/csv"
    assert not any(media_type(n).startswith("text/") for n in ("a.docx", "a.xlsx", "a.epub", "a.rtf", "a.eml"))
    assert kind_of("Makefile") is None and kind_of("REPORT.DOCX") == "document"


def test_the_benchmarks_corpus_of_every_format_holds_its_own_real_text_as_each_reader_reads_it(tmp_path):
    """benchmarks.documents against-recoll measures phrase recall per format on write_format_corpus's
    files: each must be readable and hold exactly the paragraphs it says, none shared with another."""
    import re

    from benchmarks.format_corpus import FORMATS, write_format_corpus
    from benchmarks.real_corpus import library_paragraphs
    from mmsearch.textfiles import extract_pages

    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w]+", " ", text).split())

    corpus = write_format_corpus(tmp_path / "formats", library_paragraphs(), per_file=6)
    assert sorted(Path(name).suffix for name in corpus.paragraphs) == sorted(FORMATS)
    assert sorted(p.name for p in corpus.folder.iterdir()) == sorted(corpus.paragraphs)
    written = [p for paras in corpus.paragraphs.values() for p in paras]
    assert len(set(written)) == len(written) == 6 * len(FORMATS)
    for name, paras in corpus.paragraphs.items():
        text = words(" ".join(page.text for page in extract_pages(corpus.folder / name)))
        for para in paras:
            assert words(_middle(para)) in text, (name, _middle(para))


def test_the_command_line_says_slide_sheet_and_chapter(made, indexed, capsys):
    from mmsearch.cli_output import write_hits

    idx, _ = indexed
    phrase, _ = made[1]["talk.pptx"]
    write_hits(idx.search(f'"{phrase}"', mode="keyword", k=1), as_json=False)
    assert "talk.pptx (slide 3)" in capsys.readouterr().out
