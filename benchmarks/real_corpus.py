"""Real text for the document tests and benchmarks, written by others and found on every machine of
this kind or installed by pip: Debian's manuals as PDFs, Python's own documentation, the Chinese,
Japanese and Korean text of Python's codec tests (each in a legacy encoding with a UTF-8 twin),
a Latin-1 source file of Python's tests, package READMEs (METADATA) pip installed, and the prose of
the standard library's docstrings (library_paragraphs: text no other file of the corpus holds).

A missing source raises MissingSource with what to install; nothing is skipped quietly.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class MissingSource(Exception):
    pass


# name -> (path, Debian package that ships it)
PDFS = {
    "libtasn1.pdf": ("/usr/share/doc/libtasn1-doc/libtasn1.pdf", "libtasn1-doc"),
    "shared-mime-info-spec.pdf": ("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", "shared-mime-info"),
}
# Legacy encodings of Python's codec test texts; each file has a "-utf8" twin with the same text.
CJK_ENCODINGS = ("gb2312", "gbk", "gb18030", "big5", "shift_jis", "euc_jp", "euc_kr", "cp949", "iso2022_jp",
                 "iso2022_kr", "hz", "johab", "shift_jisx0213", "euc_jisx0213", "big5hkscs")
# Pip-installed packages (the dev extra) whose METADATA is a long README.
METADATA_PACKAGES = ("fonttools", "fpdf2")


def _missing(what: str, install: str) -> MissingSource:
    return MissingSource(f"{what} is missing: install it with `{install}` (.ci/run does on CI)")


def pdf(name: str) -> Path:
    path, package = PDFS[name]
    if not os.path.exists(path):
        raise _missing(path, f"apt-get install {package}")
    return Path(path)


def stdlib_tests() -> Path:
    folder = Path(sysconfig.get_paths()["stdlib"]) / "test"
    if not (folder / "cjkencodings").is_dir():
        version = sysconfig.get_python_version()
        raise _missing(f"Python's own test data ({folder}/cjkencodings)",
                       f"apt-get install libpython{version}-testsuite` (Debian's Python) or a full CPython build")
    return folder


def cjk_pairs() -> dict[str, tuple[bytes, str]]:
    """encoding -> (the text in that encoding, the same text from its UTF-8 twin)."""
    folder = stdlib_tests() / "cjkencodings"
    out = {}
    for name in CJK_ENCODINGS:
        legacy, twin = folder / f"{name}.txt", folder / f"{name}-utf8.txt"
        if legacy.exists() and twin.exists():
            out[name] = (legacy.read_bytes(), twin.read_bytes().decode("utf-8"))
    return out


def latin1_source() -> tuple[bytes, str]:
    """A real ISO-8859-1 file (Python's tests of source encodings): its bytes and its text."""
    path = stdlib_tests() / "encoded_modules" / "module_iso_8859_1.py"
    if not path.exists():
        raise _missing(str(path), "apt-get install libpython3-testsuite")
    data = path.read_bytes()
    return data, data.decode("iso-8859-1")


def python_docs(parts: int = 8) -> dict[str, str]:
    """Python's language reference (pydoc_data.topics, ~465k characters) as `parts` text documents
    of whole topics, in the order Python keeps them."""
    import pydoc_data.topics

    topics = list(pydoc_data.topics.topics.values())
    total = sum(len(t) for t in topics)
    groups: list[list[str]] = [[] for _ in range(parts)]
    done = 0
    for text in topics:  # each topic to the part its first character falls in
        groups[min(parts - 1, done * parts // total)].append(text)
        done += len(text)
    return {f"python-reference-{i + 1:02d}.txt": "\n\n".join(g) for i, g in enumerate(groups) if g}


# Standard library modules whose docstrings are long prose (the same on every CPython of a version).
LIBRARY_MODULES = ("argparse", "subprocess", "difflib", "tarfile", "zipfile", "smtplib", "imaplib", "ftplib",
                   "pickle", "typing", "inspect", "threading", "logging", "unittest.case", "doctest", "optparse",
                   "configparser", "shutil", "mailbox", "email.message", "http.client", "urllib.request",
                   "xml.dom.minidom", "tkinter", "asyncio.events", "concurrent.futures._base", "sched", "pydoc",
                   "turtle", "trace", "pdb", "cmd", "codecs", "decimal", "_pydecimal", "fractions", "statistics",
                   "random", "string", "textwrap", "calendar", "datetime", "_pydatetime", "collections",
                   "functools", "contextlib", "dataclasses", "enum", "pathlib", "tempfile", "socket", "ssl",
                   "selectors", "queue", "heapq", "bisect", "csv", "json.decoder", "json.encoder", "re._parser",
                   "multiprocessing.pool", "sqlite3", "wave", "zipapp", "ast", "dis", "tokenize", "platform")


def library_paragraphs(min_words: int = 12) -> list[str]:
    """The prose paragraphs of the docstrings of LIBRARY_MODULES (module, class and function docstrings,
    in the order ast walks them), each on one line, none twice, none holding an interactive example: real text that
    no other file of the corpus holds."""
    import ast
    import importlib.util

    out: dict[str, None] = {}
    for name in LIBRARY_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue  # (not in this build: tkinter without Tk)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for para in (doc or "").split("\n\n"):
                    line = " ".join(para.split())
                    if len(line.split()) >= min_words and ">>>" not in line:
                        out[line] = None
    return list(out)


def metadata_readmes() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in METADATA_PACKAGES:
        try:
            text = metadata.distribution(package).read_text("METADATA")
        except metadata.PackageNotFoundError:
            raise _missing(f"the {package} package", "pip install -e '.[dev]'") from None
        if text:
            out[f"{package}-README.md"] = text
    return out


@dataclass(frozen=True)
class Corpus:
    folder: Path
    texts: dict[str, str]  # file name -> its text as a reader sees it (PDFs: absent, see pdf_pages)
    pdfs: list[str]


def write_corpus(folder: Path, *, docs_parts: int = 8, with_pdfs: bool = True, with_cjk: bool = True) -> Corpus:
    """The real corpus as files under `folder`: PDFs, Python's reference as text, package READMEs, the
    CJK texts in UTF-8 and in their legacy encodings, and the Latin-1 file as .txt."""
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    pdfs = []
    if with_pdfs:
        for name in PDFS:
            shutil.copyfile(pdf(name), folder / name)
            pdfs.append(name)
    for name, text in {**python_docs(docs_parts), **metadata_readmes()}.items():
        (folder / name).write_text(text, encoding="utf-8")
        texts[name] = text
    if with_cjk:
        for name, (legacy, text) in cjk_pairs().items():
            (folder / f"{name}-utf8.txt").write_text(text, encoding="utf-8")
            (folder / f"{name}.txt").write_bytes(legacy)
            texts[f"{name}-utf8.txt"] = texts[f"{name}.txt"] = text
        data, text = latin1_source()
        (folder / "latin1-module.txt").write_bytes(data)
        texts["latin1-module.txt"] = text
    return Corpus(folder, texts, pdfs)


# -- tokenizers for chunking at CLIP's granularity ---------------------------------------------------

CLIP_VOCAB = Path(__file__).resolve().parent.parent / ".work" / "bench" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SOURCE = "open-clip-torch==3.3.0"  # ships OpenAI CLIP's BPE merges (MIT) as open_clip/bpe_simple_vocab_16e6.txt.gz


def clip_tokenizer():
    """OpenAI CLIP's own BPE (49,408 symbols) as a `tokenizers.Tokenizer`, no specials added, for
    chunking exactly as a real CLIP bundle chunks. The merges come from the open-clip-torch wheel
    (downloaded once with pip, no dependencies installed, kept under .work/bench/)."""
    import gzip
    import subprocess
    import sys
    import tempfile
    import zipfile

    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE

    from mmsearch_export.tiny import clip_pipeline

    if not CLIP_VOCAB.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", CLIP_VOCAB_SOURCE, "-d", tmp],
                           check=True)
            [wheel] = Path(tmp).glob("*.whl")
            CLIP_VOCAB.parent.mkdir(parents=True, exist_ok=True)
            CLIP_VOCAB.write_bytes(zipfile.ZipFile(wheel).read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
    lines = gzip.decompress(CLIP_VOCAB.read_bytes()).decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    alphabet = list(_bytes_to_unicode().values())
    symbols = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {s: i for i, s in enumerate(symbols)}
    tokenizer = Tokenizer(BPE(vocab, merges, end_of_word_suffix="</w>", unk_token=None))
    clip_pipeline(tokenizer)
    assert isinstance(tokenizer.pre_tokenizer, pre_tokenizers.Sequence)
    return tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's / CLIP's map of the 256 bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def prose_bpe(vocab_size: int = 30_000):
    """A CLIP-style BPE (CLIP's normalizer and pre-tokenizer, `</w>` word ends) trained on Python's
    reference: it cuts English about as finely as CLIP's own, for tests that must not download
    CLIP's merges (clip_tokenizer). The committed toy CLIP's 621 symbols cut English words into
    letters, a few words a chunk, which no overlap can keep 4-word phrases whole in."""
    from tokenizers import Tokenizer, trainers
    from tokenizers.models import BPE

    from mmsearch_export.tiny import clip_pipeline

    tokenizer = clip_pipeline(Tokenizer(BPE(end_of_word_suffix="</w>")))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, end_of_word_suffix="</w>", show_progress=False,
                                  initial_alphabet=sorted(_bytes_to_unicode().values()))
    tokenizer.train_from_iterator(python_docs(1).values(), trainer)
    return tokenizer
