"""Documents on real text: phrase recall, CJK keyword tokenizers, encoding detection, indexing speed.

    python -m benchmarks.documents recall    [--phrases 300] [--lengths 4,8,16,32] [--cjk 300]
                                             [--model toyclip,vitb32] [--json FILE]
    python -m benchmarks.documents speed     [--against REF] [--model DIR] [--repeat 3] [--json FILE]
    python -m benchmarks.documents cjk       [--queries 200] [--json FILE]
    python -m benchmarks.documents encodings [--json FILE]
    python -m benchmarks.documents against-recoll [--model toyclip] [--rounds 2] [--phrases 300] [--queries 20]
                                                  [--format-phrases 30] [--format-paragraphs 60] [--json FILE]
    python -m benchmarks.documents vectors   [--n 500] [--overlaps default,0,0.5] [--caps none,128,32,8]
                                             [--cost-models clip-b32,toyclip] [--json FILE]

The corpus is benchmarks/real_corpus.py: Debian's libtasn1 manual (36 pages) and the shared-mime-info
spec (17 pages) as PDFs, Python's language reference as 8 text files (~58k characters each), two
package READMEs, the CJK texts of Python's codec tests (UTF-8 and legacy encodings) and a Latin-1 file.

- recall: indexes the corpus with each `--model` (toyclip: the committed toy CLIP, 32 tokens of
  context; vitb32: the ViT-B/32-sized bundle of benchmarks/common.py, 77; clip-b32: the same with
  OpenAI CLIP's own BPE; or a bundle folder) and asks a default `Index.search(phrase, k=3)` (hybrid)
  for random phrases of each of `--lengths` words taken from anywhere in the PDFs and text files,
  and for `--cjk` runs of 2 to 12 Chinese characters from the Chinese texts. A phrase is found when
  one of the 3 results is a page (for a text file: the file) that holds it; hit@1 counts the first
  result only. Bar: >= 99% found, for every length. --clip and --toyclip-chunks add the keyword side
  alone over chunks cut by CLIP's BPE or the toy CLIP's tokenizer, without a model (run from another
  checkout's folder with this one on PYTHONPATH, that code's keyword index: before/after).
- speed: `mmsearch index` of the corpus as a subprocess, files/s, characters/s (of the documents'
  text) and chunks/s, for this checkout and, with --against REF, for the code at REF (`git archive`
  under .work/), interleaved, the same model: ratios, on one machine, in one run. `--model clip-b32`:
  the ViT-B/32-sized random bundle with OpenAI CLIP's own BPE (chunks and cost of a real CLIP).
- against-recoll (or the flag --against-recoll): side by side with Recoll (`apt-get install recoll
  poppler-utils`; absent, its side is skipped and said) on the same corpus in alternating rounds: the
  CPU and wall time of mmsearch's words phase (a fresh `mmsearch index`, paused where its step trace
  enters the first "save": every chunk written, none with a vector) and of the whole index against
  `recollindex` with a private configuration; the index's size before vectors and at the end; a cold
  keyword query (a fresh process each, median); 300 phrases (pdf, txt, zh) found in the first 3 files.
  The corpus also holds one file of each document format (.docx .odt .pptx .xlsx .ods .epub .html .rtf
  .eml .csv, benchmarks/format_corpus.py), each written from paragraphs of real text no other file
  holds (the standard library's docstrings): --format-phrases 4-word phrases of each, found when its
  file is among the first 3, for both engines, and whether Recoll holds the file at all (its filters
  need helpers: RECOLL_INSTALL; the ones it found missing are printed). docs/performance.md keeps the
  figures.
- vectors: the vectors phase's cost per chunk against the choices that bound it (overlap, a cap on a
  document's vectors, float16 storage) and the toy world's image->text recall (benchmarks/vectors_cost.py).
- cjk: the FTS5 tokenizer choice for Chinese, Japanese and Korean, on the gettext catalogs of the
  machine's own programs (coreutils, bash, dpkg, ... in zh_CN, zh_TW, ja, ko; real translations):
  unicode61 as it was, trigram, and unicode61 over text with each CJK character apart (unigrams,
  what the catalog does) or in overlapping pairs (bigrams). Recall and precision of substring
  queries of 1, 2, 3, 4 and 6 characters against exact substring truth, index size, build and
  query time.
- encodings: decoded text against ground truth for the legacy-encoded CJK test texts, the Latin-1
  file, and real translations (the same catalogs in 17 languages) encoded in their legacy code pages
  at 100 to 64,000 bytes: chardet's first guess, charset-normalizer's (when installed), and
  mmsearch's own reading (textfiles.extract_pages).
"""

from __future__ import annotations

import argparse
import gettext
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, say, table, write_json
from benchmarks.real_corpus import write_corpus

TOYCLIP = ROOT / "tests" / "fixtures" / "toyclip"
CATALOG_PACKAGES = ("coreutils", "bash", "dpkg", "libc", "tar", "grep", "findutils", "diffutils", "wget", "apt",
                    "git", "gnupg2", "glib20")


def gettext_catalog_texts(lang: str) -> list[str]:
    """The translated messages of the machine's programs in `lang`, one text per program."""
    out = []
    for package in CATALOG_PACKAGES:
        path = f"/usr/share/locale/{lang}/LC_MESSAGES/{package}.mo"
        if os.path.exists(path):
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)
            messages = [v for k, v in catalog._catalog.items() if k and isinstance(v, str)]  # type: ignore[attr-defined]
            out.append("\n\n".join(messages))
    return out


def _table(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return table(rows, columns)


# -- recall ---------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def sample_phrases(pages: dict[tuple[str, int | None], str], n: int, seed: int = 0,
                   words: int = 4) -> list[tuple[str, tuple[str, int | None]]]:
    """n random phrases of `words` words, each from a random position of a random page (weighted by
    words)."""
    rng = random.Random(seed)
    keys = [k for k, t in pages.items() if len(t.split()) >= words]
    weights = [len(pages[k].split()) for k in keys]
    out = []
    while len(out) < n:
        key = rng.choices(keys, weights)[0]
        page = pages[key].split()
        i = rng.randrange(len(page) - words + 1)
        phrase = " ".join(page[i : i + words])
        if re.search(r"[^\W_]", phrase):
            out.append((phrase, key))
    return out


def sample_cjk_runs(pages: dict[tuple[str, int | None], str], n: int, seed: int = 0) -> list[tuple[str, tuple[str, int | None]]]:
    """n runs of 2 to 12 consecutive Han characters, each from a random place of a random page."""
    rng = random.Random(seed)
    runs = {k: [m for m in re.finditer(r"[\u4e00-\u9fff]{2,}", t)] for k, t in pages.items()}
    keys = [k for k, r in runs.items() if r]
    out = []
    while len(out) < n:
        key = rng.choice(keys)
        m = rng.choice(runs[key])
        length = min(rng.randint(2, 12), len(m.group()))
        at = rng.randrange(len(m.group()) - length + 1)
        out.append((m.group()[at : at + length], key))
    return out


def corpus_pages(corpus, *, cjk: bool = False) -> dict[tuple[str, int | None], str]:
    """(file name, page) -> text: the PDFs' pages, Python's reference and the READMEs; with `cjk`, the
    Chinese texts instead (their UTF-8 twins and legacy-encoded files hold the same text)."""
    from mmsearch.textfiles import extract_pages

    pages: dict[tuple[str, int | None], str] = {}
    if cjk:
        return {(name, None): text for name, text in corpus.texts.items()
                if name.split("-")[0].split(".")[0] in CHINESE}
    for name in corpus.pdfs:
        for page in extract_pages(corpus.folder / name):
            pages[(name, page.number)] = page.text
    for name, text in corpus.texts.items():
        if name.startswith("python-reference") or name.endswith("README.md"):
            pages[(name, None)] = text
    return pages


CHINESE = ("gb2312", "gbk", "gb18030", "big5", "hz", "big5hkscs")


def measure_recall(search, pages: dict[tuple[str, int | None], str], phrases, top: int = 3) -> dict:
    """search(phrase) -> SearchResults. Found: one of the first `top` results is a page that holds the
    phrase (spacing and case aside); hit@1: the first is; snippet: the first result's snippet shows the
    phrase, where the first result holds it and the phrase fits a snippet."""
    found = at1 = snippets = fits = 0
    misses = []
    for phrase, _ in phrases:
        hits = search(phrase)[:top]
        target = _norm(phrase)
        ok = [_norm(pages.get((os.path.basename(h.path), h.page), "")).find(target) >= 0 for h in hits]
        if any(ok):
            found += 1
            at1 += ok[0]
            if ok[0] and len(phrase) < 160:
                fits += 1
                snippets += target.replace(" ", "") in _norm(hits[0].snippet or "").replace(" ", "")
        else:
            misses.append(phrase)
    n = len(phrases)
    return {"phrases": n, "found": found, "recall": found / n, "hit_at_1": at1 / n,
            "snippet_shows_it": snippets / max(fits, 1), "misses": misses[:20]}


def chunk_catalog(folder: Path, files: list[Path], tokenizer, max_tokens: int, overlap: int):
    """The document path without a model: each file read and chunked as `mmsearch index` does, the
    chunks stored with dummy vectors in a real catalog (the keyword index sees exactly those)."""
    import numpy as np

    from mmsearch.catalog import Catalog
    from mmsearch.chunking import iter_chunks
    from mmsearch.textfiles import iter_pages

    catalog = Catalog(folder)
    root = catalog.add_root(str(files[0].parent))
    n = 0
    from mmsearch.textfiles import DocumentError

    for path in files:
        try:
            chunks = list(iter_chunks(iter_pages(path), tokenizer, max_tokens=max_tokens, overlap_tokens=overlap))
        except DocumentError:
            continue  # an index run lists it in error (a legacy text chardet cannot tell from binary)
        n += len(chunks)
        with catalog.write() as conn:
            fid, _ = catalog.put_file(conn, path=str(path), root_id=root, size=1, mtime_ns=1, content_hash=path.name,
                                      kind="document", media_type="text/plain")
            catalog.add_items(conn, fid, "document", np.zeros((len(chunks), 4), np.float32),
                              [(c.page, c.start, c.end, c.text) for c in chunks])
    return catalog, n


def keyword_search_of(catalog):
    from mmsearch.search import Filters, rank

    return lambda phrase: rank(catalog, None, query_vector=None, query_text=phrase, k=10, filters=Filters(),
                               mode="keyword")


def _bundle(name: str) -> Path:
    if name == "toyclip":
        return TOYCLIP
    if name == "vitb32":
        from benchmarks.common import vitb32_bundle

        return vitb32_bundle()
    if name == "clip-b32":
        return clip_b32_bundle()
    return Path(name)


def cmd_recall(args) -> dict:
    from mmsearch import Index

    work = Path(tempfile.mkdtemp(prefix="mmsearch-docs-"))
    try:
        corpus = write_corpus(work / "corpus")
        pages = corpus_pages(corpus)
        chinese = corpus_pages(corpus, cjk=True)
        lengths = [int(x) for x in args.lengths.split(",")]
        sets = {f"{n} words": sample_phrases(pages, args.phrases, args.seed + n, words=n) for n in lengths}
        if args.cjk:
            sets["Chinese, 2-12 characters"] = sample_cjk_runs(chinese, args.cjk, args.seed)
        truth = {**pages, **chinese}
        say(f"{len(pages)} pages, {sum(len(t) for t in pages.values())} characters; "
            f"{', '.join(f'{len(v)} of {k}' for k, v in sets.items())}")
        rows = []
        if args.clip:
            from benchmarks.real_corpus import clip_tokenizer

            files = sorted(corpus.folder.iterdir())
            t = time.perf_counter()
            catalog, chunks = chunk_catalog(work / "chunks", files, clip_tokenizer(), 75, 75 // 5)
            say(f"CLIP's BPE, 75 tokens a chunk: {chunks} chunks in {time.perf_counter() - t:.1f}s")
            for name, phrases in sets.items():
                rows.append({"model": "keyword side alone, CLIP BPE chunks", "set": name,
                             **measure_recall(keyword_search_of(catalog), truth, phrases)})
            catalog.close()
        if args.toyclip_chunks:
            from mmsearch.bundle import load_bundle
            from mmsearch.encoder import chunk_tokenizer, content_tokens

            bundle = load_bundle(TOYCLIP)
            size = content_tokens(bundle)
            catalog, chunks = chunk_catalog(work / "toy-chunks", sorted(corpus.folder.iterdir()), chunk_tokenizer(bundle),
                                            size, size // 5)
            for name, phrases in sets.items():
                rows.append({"model": f"keyword side alone, toyclip chunks ({chunks})", "set": name,
                             **measure_recall(keyword_search_of(catalog), truth, phrases)})
            catalog.close()
        for model in [m for m in args.model.split(",") if m]:
            bundle = _bundle(model)
            with Index(work / f"index-{model}", model=bundle, device="cpu") as idx:
                t = time.perf_counter()
                report = idx.index([corpus.folder], ocr=False)
                say(f"{model}: indexed in {time.perf_counter() - t:.1f}s, {report.encoded_items} chunks, "
                    f"{idx.catalog.conn.execute('SELECT count(*) FROM passages').fetchone()[0]} passages, "
                    f"errors {report.errors}")
                for name, phrases in sets.items():
                    t = time.perf_counter()
                    row = measure_recall(lambda phrase: idx.search(phrase, k=3), truth, phrases)
                    rows.append({"model": model, "set": name, **row,
                                 "ms_per_query": round(1000 * (time.perf_counter() - t) / len(phrases), 1)})
        print(_table([{k: v for k, v in r.items() if k != "misses"} for r in rows]))
        for row in rows:
            for miss in row["misses"]:
                print(f"  missed ({row['model']}, {row['set']}): {miss}")
        return {"rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- speed ----------------------------------------------------------------------------------------


def _checkout(ref: str) -> Path:
    """The code at `ref`, exported with `git archive` under .work/ (once)."""
    folder = ROOT / ".work" / f"ref-{ref}"
    if not (folder / "mmsearch").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "mmsearch"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


_RUN_CLI = ("import os, runpy, sys; sys.path.insert(0, os.getcwd()); import mmsearch; "
            "assert mmsearch.__file__.startswith(os.getcwd()), mmsearch.__file__; "
            "sys.argv = ['mmsearch'] + sys.argv[1:]; runpy.run_module('mmsearch.cli', run_name='__main__')")


def _index_run(code: Path, corpus: Path, index: Path, model: Path) -> tuple[float, dict]:
    shutil.rmtree(index, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    t = time.perf_counter()
    # Run from `code`, so its mmsearch is the one imported (the first entry of sys.path).
    proc = subprocess.run([sys.executable, "-c", _RUN_CLI, "index", str(corpus), "--index", str(index),
                           "--model", str(model), "--device", "cpu", "--json"], capture_output=True, text=True,
                          env=env, cwd=code)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return took, json.loads(proc.stdout)


def _stored(index: Path) -> tuple[int, int]:
    conn = sqlite3.connect(index / "catalog.db")
    chunks, chars = conn.execute("SELECT count(*), coalesce(sum(length(text)), 0) FROM items").fetchone()
    conn.close()
    return chunks, chars


def clip_b32_bundle() -> Path:
    """The ViT-B/32-sized random bundle (benchmarks/common.py) with OpenAI CLIP's own BPE as its
    tokenizer (its embedding table has CLIP's 49,408 rows): chunks as many and as long as a real
    CLIP bundle's, encoded at a real ViT-B/32 text tower's cost. Made once under .work/bench/."""
    import hashlib

    from tokenizers.processors import TemplateProcessing

    from benchmarks.common import vitb32_bundle
    from benchmarks.real_corpus import clip_tokenizer

    out = ROOT / ".work" / "bench" / "clip-b32-clip-bpe"
    if (out / "manifest.json").exists():
        return out
    shutil.copytree(vitb32_bundle(), out)
    tokenizer = clip_tokenizer()
    tokenizer.post_processor = TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                  special_tokens=[("<|startoftext|>", 49406), ("<|endoftext|>", 49407)])
    tokenizer.save(str(out / "tokenizer.json"))
    data = (out / "tokenizer.json").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["name"] = "clip-b32-clip-bpe"
    manifest["text"]["pad_id"] = 49407
    manifest["files"]["tokenizer.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def cmd_speed(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mmsearch-speed-"))
    try:
        corpus = write_corpus(work / "corpus")
        pages = corpus_pages(corpus)
        files = len(list(corpus.folder.iterdir()))
        chars = sum(len(t) for t in pages.values()) + sum(len(t) for n, t in corpus.texts.items()
                                                          if not (n.startswith("python-reference") or n.endswith("README.md")))
        if str(args.model) == "clip-b32":
            args.model = clip_b32_bundle()
        codes = {"this": ROOT}
        if args.against:
            codes[f"at {args.against}"] = _checkout(args.against)
        runs: dict[str, list[float]] = {name: [] for name in codes}
        stored = {}
        for _ in range(args.repeat):
            for name, code in codes.items():  # interleaved, so drift hits both alike
                took, report = _index_run(code, corpus.folder, work / "index", args.model)
                runs[name].append(took)
                stored[name] = (*_stored(work / "index"), report["errors"])
        rows = []
        for name, times in runs.items():
            best = min(times)
            chunks, kept, errors = stored[name]
            rows.append({"code": name, "seconds": round(best, 2), "files/s": round(files / best, 1),
                         "chars/s": round(chars / best), "chunks": chunks, "chunks/s": round(chunks / best),
                         "chars kept": kept, "errors": len(errors)})
        print(f"{files} files, {chars} characters of text, best of {args.repeat}, model {args.model}")
        print(_table(rows))
        return {"files": files, "chars": chars, "rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- cjk ------------------------------------------------------------------------------------------

_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")


def _bigrams(text: str) -> str:
    def pairs(m: re.Match) -> str:
        run = m.group()
        return " " + (run if len(run) == 1 else " ".join(run[i : i + 2] for i in range(len(run) - 1))) + " "

    return _CJK_RUN.sub(pairs, text)


def _tokenizers():
    from mmsearch.keyword import fts_text

    # name -> (tokenize=, text transform or None for external content, query -> MATCH or None for LIKE)
    return {
        "unicode61 (before)": ("unicode61", None, lambda q: f'"{q}"'),
        "trigram": ("trigram", None, lambda q: f'"{q}"' if len(q) >= 3 else None),
        "unigram (chosen)": ("unicode61 remove_diacritics 2", fts_text, lambda q: '"' + " ".join(fts_text(q).split()) + '"'),
        "bigram": ("unicode61 remove_diacritics 2", _bigrams, lambda q: f'"{_bigrams(q).strip()}"' if len(q) >= 2 else None),
    }


def cmd_cjk(args) -> dict:
    docs = [t for lang in ("zh_CN", "zh_TW", "ja", "ko") for t in gettext_catalog_texts(lang)]
    if not docs:
        raise SystemExit("no CJK gettext catalogs under /usr/share/locale (Debian: the programs' translations)")
    size, overlap = 100, 20  # about a Chinese-CLIP chunk
    chunks = [d[i : i + size] for d in docs for i in range(0, len(d), size - overlap)]
    rng = random.Random(args.seed)
    lengths = (1, 2, 3, 4, 6)
    queries: dict[int, list[str]] = {n: [] for n in lengths}
    while any(len(v) < args.queries for v in queries.values()):
        text, n = rng.choice(chunks), rng.choice(lengths)
        if len(queries[n]) < args.queries and len(text) >= n:
            i = rng.randrange(len(text) - n + 1)
            if all(_CJK_CHAR.match(c) for c in text[i : i + n]):
                queries[n].append(text[i : i + n])
    truth = {q: {i for i, t in enumerate(chunks, 1) if q in t} for qs in queries.values() for q in qs}
    say(f"{len(docs)} catalogs, {sum(map(len, docs))} characters, {len(chunks)} chunks")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mmsearch-cjk-"))
    try:
        for name, (tokenize, transform, to_match) in _tokenizers().items():
            path = work / f"{len(rows)}.db"
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA page_size = 16384")
            conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, text TEXT)")
            conn.executemany("INSERT INTO items VALUES (?, ?)", enumerate(chunks, 1))
            conn.commit()
            conn.execute("VACUUM")
            base = path.stat().st_size
            t = time.perf_counter()
            if transform is None:
                conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5(text, content='items', content_rowid='id', tokenize='{tokenize}')")
                conn.execute("INSERT INTO fts(rowid, text) SELECT id, text FROM items")
            else:
                conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5(text, content='', tokenize='{tokenize}')")
                conn.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", ((i, transform(c)) for i, c in enumerate(chunks, 1)))
            conn.commit()
            build = time.perf_counter() - t
            conn.execute("VACUUM")
            row = {"tokenizer": name, "index MB": round((path.stat().st_size - base) / 1e6, 2), "build s": round(build, 2)}
            for n, qs in queries.items():
                recall, precision, ms = [], [], []
                for q in qs:
                    match = to_match(q)
                    t = time.perf_counter()
                    if match is None:  # too short for the index: a scan of the chunks
                        got = {r[0] for r in conn.execute("SELECT id FROM items WHERE text LIKE ?", (f"%{q}%",))}
                    else:
                        got = {r[0] for r in conn.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (match,))}
                        conn.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 20", (match,)).fetchall()
                    ms.append(1000 * (time.perf_counter() - t))
                    recall.append(len(got & truth[q]) / len(truth[q]))
                    precision.append(len(got & truth[q]) / len(got) if got else 1.0)
                row[f"{n}ch R/P/ms"] = f"{statistics.mean(recall):.3f}/{statistics.mean(precision):.3f}/{statistics.mean(ms):.1f}"
            rows.append(row)
            conn.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(_table(rows))
    return {"chunks": len(chunks), "queries_per_length": args.queries, "rows": rows}


# -- encodings ------------------------------------------------------------------------------------

LEGACY = {  # language -> its legacy encodings
    "fr": ["cp1252", "latin-1"], "de": ["cp1252", "latin-1"], "es": ["cp1252"], "pt_BR": ["cp1252"], "it": ["cp1252"],
    "nl": ["cp1252"], "sv": ["cp1252"], "pl": ["cp1250", "iso8859-2"], "cs": ["cp1250"], "hu": ["cp1250"],
    "tr": ["cp1254"], "ru": ["cp1251", "koi8-r"], "uk": ["cp1251"], "el": ["cp1253"], "zh_CN": ["gb18030", "gbk"],
    "zh_TW": ["big5"], "ja": ["shift_jis", "euc-jp"], "ko": ["euc-kr"],
}


def encoding_cases(sizes=(100, 500, 4000, 64000)) -> list[tuple[str, bytes, str]]:
    from benchmarks.real_corpus import cjk_pairs, latin1_source

    cases = [(f"py-cjk/{name}", legacy, text) for name, (legacy, text) in cjk_pairs().items()]
    data, text = latin1_source()
    cases.append(("py-latin1-module", data, text))
    for lang, encodings in LEGACY.items():
        texts = gettext_catalog_texts(lang)
        if not texts:
            continue
        text = texts[0][2000:]
        for size in sizes:
            for encoding in encodings:
                piece = text[: size // (1 if encoding in ("cp1252", "latin-1") else 2)]
                raw = piece.encode(encoding, errors="ignore")[:size]
                raw = raw[: len(raw.decode(encoding, errors="ignore").encode(encoding, errors="ignore"))]
                cases.append((f"{lang}/{encoding}/{size}", raw, raw.decode(encoding, errors="ignore")))
    return cases


def _compare(got: str | None, truth: str | None) -> str:
    """exact, ok (a few characters differ: cp949 reads a few rare EUC-KR forms otherwise), wrong,
    refused (as binary); for junk (truth None): refused is right, anything read is wrong."""
    from collections import Counter

    if got is None:
        return "refused"
    if truth is None:
        return "wrong"
    got, truth = _tidy_both(got), _tidy_both(truth)
    if got == truth:
        return "exact"
    differ = sum((Counter(got) - Counter(truth)).values()) + sum((Counter(truth) - Counter(got)).values())
    return "ok" if differ <= max(1, len(truth) // 1000) else "wrong"


def _tidy_both(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def cmd_encodings(args) -> dict:
    import chardet

    from mmsearch.textfiles import DocumentError, extract_pages

    try:
        from charset_normalizer import from_bytes
    except ImportError:
        from_bytes = None
    cases: list[tuple[str, bytes, str | None]] = list(encoding_cases())
    rng = random.Random(0)
    for size in (100, 1000, 5000, 65536):  # no text in any encoding: to be refused
        for i in range(3):
            cases.append((f"junk/high bytes/{size}/{i}", bytes(rng.randrange(0x80, 0x100) for _ in range(size)), None))
    tally: dict[str, dict[str, int]] = {}
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mmsearch-enc-"))
    try:
        for name, raw, truth in cases:
            row = {"case": name}
            guess = chardet.detect(raw)["encoding"]
            row["chardet"] = _compare(raw.decode(guess, errors="replace") if guess else None, truth)
            if from_bytes is not None:
                best = from_bytes(raw).best()
                row["charset-normalizer"] = _compare(str(best) if best else None, truth)
            path = work / "case.txt"
            path.write_bytes(raw)
            try:
                row["mmsearch"] = _compare(extract_pages(path)[0].text, truth)
            except DocumentError:
                row["mmsearch"] = "refused"
            group = "junk" if truth is None else "text"
            for k, v in row.items():
                if k != "case":
                    counts = tally.setdefault(f"{k} on {group}", {"right": 0, "exact": 0, "ok": 0, "wrong": 0, "refused": 0})
                    counts[v] += 1
                    counts["right"] += (v == "refused") if truth is None else (v in ("exact", "ok"))
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    right = ("exact", "ok")
    bad = [r for r in rows if any(v not in right and not (v == "refused" and r["case"].startswith("junk"))
                                  for k, v in r.items() if k != "case")]
    print(_table(bad) if bad else "every case right")
    print(f"{len(cases)} cases")
    print(_table([{"detector": k, **v} for k, v in tally.items()]))
    return {"cases": len(cases), "tally": tally, "wrong": bad}


# -- against Recoll -------------------------------------------------------------------------------

# Debian's recoll 1.34 and the helpers its filters run: pdftotext (poppler-utils) for PDF, lxml for the
# OOXML formats (.docx .pptx .xlsx), unrtf for RTF (EPUB, ODF, HTML, mail and CSV need none).
RECOLL_INSTALL = "apt-get install recollcmd poppler-utils python3-lxml unrtf"  # Recoll 1.34 and the helpers its filters run


def _recoll_env() -> dict[str, str]:
    """Recoll's filters start with `#!/usr/bin/env python3`: the system's Python first on PATH, the one
    Debian's python3-lxml and python3-recoll are installed for (a virtual environment's would lack them)."""
    return {**os.environ, "PATH": os.pathsep.join(["/usr/bin", "/bin", os.environ.get("PATH", "")])}


def _cpu_flags() -> str:
    try:
        flags = set(re.findall(r"\b(avx512_vnni|avx2)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return "unknown"
    return ", ".join(sorted(flags)) or "neither avx2 nor avx512_vnni"


def _disk_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (their sizes, as du --apparent-size counts them)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass  # a temporary file gone meanwhile
    return total


def _kept(index: Path, scratch: Path) -> dict:
    """Bytes of the index once SQLite folds its write-ahead log into the catalog (what the index keeps:
    the log is transient), its chunks and those still waiting for a vector, read from a copy so the run
    is not touched."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(index, scratch, ignore=shutil.ignore_patterns("*.lock"))
    conn = sqlite3.connect(scratch / "catalog.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    chunks = conn.execute("SELECT count(*) FROM items WHERE kind = 'document'").fetchone()[0]
    pending = conn.execute("SELECT count(*) FROM vectors_pending").fetchone()[0]
    conn.close()
    kept = {"kept_bytes": _disk_bytes(scratch), "chunks": chunks, "pending": pending}
    shutil.rmtree(scratch, ignore_errors=True)
    return kept


def _cpu_of(rusage) -> float:
    return rusage.ru_utime + rusage.ru_stime


def recoll_index(corpus: Path, confdir: Path) -> dict:
    """`recollindex` over `corpus` with a private configuration: CPU seconds of it and its filters
    (pdftotext, the Python handlers: its children), wall seconds, bytes of its index folder."""
    shutil.rmtree(confdir, ignore_errors=True)
    confdir.mkdir(parents=True)
    # noaspell: no spelling dictionary (mmsearch makes none); UTF-8 for text without a declared charset.
    (confdir / "recoll.conf").write_text(f"topdirs = {corpus}\nnoaspell = 1\ndefaultcharset = UTF-8\n")
    # Its log goes to a file: recollindex can write more than a pipe holds before it exits (a warning
    # per odd file), and a pipe read only after wait4 would then hold it forever.
    with tempfile.TemporaryFile() as log:
        t = time.perf_counter()
        proc = subprocess.Popen(["recollindex", "-c", str(confdir)], stdout=subprocess.DEVNULL, stderr=log,
                                env=_recoll_env())
        _, status, rusage = os.wait4(proc.pid, 0)  # the rusage of this process and the children it waited for
        wall = time.perf_counter() - t
        log.seek(0)
        err = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"recollindex failed: {err[-2000:]}")
    missing = confdir / "missing"  # the helper programs its filters found missing, as recollindex lists them
    return {"cpu_s": _cpu_of(rusage), "wall_s": wall, "bytes": _disk_bytes(confdir),
            "missing_helpers": missing.read_text().strip() if missing.exists() else ""}


def recoll_documents(confdir: Path) -> list[str]:
    """The file paths Recoll holds (every document: the query `mime:*`)."""
    out = subprocess.run(["recollq", "-c", str(confdir), "-b", "-n", "0", "mime:*"], capture_output=True, text=True,
                         check=True, env=_recoll_env()).stdout
    return [line[len("file://"):] for line in out.splitlines() if line.startswith("file://")]


def recoll_search(confdir: Path, phrase: str, k: int = 3, *, plain: bool = False) -> list:
    """Recoll's first k results for `phrase` as a phrase query (its query language's double quotes),
    as hits with a path (Recoll gives no page for a PDF's text). `plain`: every character but letters,
    digits and spaces made a space first (its query language reads * ? [ ] ( ) : - as syntax)."""
    from types import SimpleNamespace

    query = '"' + (re.sub(r"[^\w\s]", " ", phrase) if plain else phrase.replace('"', " ")) + '"'
    out = subprocess.run(["recollq", "-c", str(confdir), "-b", "-n", str(k), query], capture_output=True, text=True,
                         env=_recoll_env())
    return [SimpleNamespace(path=line[len("file://"):], page=None, snippet="")
            for line in out.stdout.splitlines() if line.startswith("file://")][:k]


def _as_files(search):
    """A search whose hits count by file: a page's hit becomes its file's (Recoll's granularity)."""
    from types import SimpleNamespace

    return lambda phrase: [SimpleNamespace(path=h.path, page=None, snippet=h.snippet or "") for h in search(phrase)]


def _mmsearch_index(corpus: Path, index: Path, model: Path, trace: Path) -> dict:
    """`python -m mmsearch index` as a fresh process, paused at the end of its words phase (the trace's
    first "save": every document's chunks committed, searchable by words, no vector computed yet) to read
    its CPU time and the index's size, then let run to the end (vectors)."""
    shutil.rmtree(index, ignore_errors=True)
    trace.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "index", str(corpus), "--index", str(index),
                             "--model", str(model), "--device", "cpu", "--no-ocr", "--json", "--trace-steps", str(trace)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        return _paused_at_words(proc, t, index, trace)
    finally:
        if proc.poll() is None:  # the benchmark stopped: no run left behind
            proc.kill()
            proc.wait()


def _paused_at_words(proc: subprocess.Popen, t: float, index: Path, trace: Path) -> dict:
    import psutil

    ps = psutil.Process(proc.pid)
    words: dict = {}
    paused = 0.0
    while proc.poll() is None:
        try:
            entered = trace.read_text().split()
        except OSError:
            entered = []
        if "save" in entered:
            try:
                c = ps.cpu_times()
                ps.suspend()
            except psutil.NoSuchProcess:
                break
            words = {"cpu_s": c.user + c.system + c.children_user + c.children_system,
                     "wall_s": time.perf_counter() - t}
            stop = time.perf_counter()
            words["bytes"] = _disk_bytes(index)  # the write-ahead log included
            words.update(_kept(index, index.with_name(index.name + "-copy")))
            ps.resume()
            paused = time.perf_counter() - stop
            break
        time.sleep(0.005)
    assert proc.stdout is not None
    report_text = proc.stdout.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t - paused
    if os.waitstatus_to_exitcode(status) != 0 or not words:
        raise RuntimeError(f"mmsearch index failed or never reached its words' end (exit {status}, trace {trace.read_text()!r})")
    report = json.loads(report_text)
    chunks, _ = _stored(index)
    return {"words": words, "full": {"cpu_s": _cpu_of(rusage), "wall_s": wall, "bytes": _disk_bytes(index),
                                     **_kept(index, index.with_name(index.name + "-copy"))},
            "chunks": chunks, "errors": report.get("errors", []), "vectors_left": report.get("vectors_left")}


def installed_mmsearch(venv: Path) -> Path:
    """The `mmsearch` console script of a fresh virtualenv holding this checkout's wheel and nothing else:
    what a user runs (no editable-install finder at start-up), and a keyword query must work there
    without numpy, onnxruntime or any other dependency, which it does not import."""
    wheels = venv.with_name("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    *map(str, wheels.glob("mmsearch-*.whl"))], check=True)
    return venv / "bin" / "mmsearch"


def _cold_query(argv: list[str], check: bool = True) -> float:
    t = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=check)  # recollq exits 1 when nothing is found
    return time.perf_counter() - t


def recall_sets(corpus, n: int, seed: int, formats=None, per_format: int = 0) -> tuple[dict, dict]:
    """The phrase sets (pdf: n/3 4-word phrases of the PDFs' pages; txt: n/2 of the text files; zh: n/6 runs
    of 2-12 Chinese characters; with `formats`, a FormatCorpus, `per_format` 4-word phrases of each of its
    files, each from within one paragraph, cell or slide) and the truth they are judged against (file ->
    text, page -> text; a format's file by its file alone, as written)."""
    pages = corpus_pages(corpus)
    chinese = corpus_pages(corpus, cjk=True)
    pdf_pages = {k: v for k, v in pages.items() if k[0] in corpus.pdfs}
    txt_pages = {k: v for k, v in pages.items() if k[0] not in corpus.pdfs}
    sets = {"pdf": sample_phrases(pdf_pages, n // 3, seed, words=4),
            "txt": sample_phrases(txt_pages, n // 2, seed + 1, words=4),
            "zh": sample_cjk_runs(chinese, n - n // 3 - n // 2, seed)}
    by_file: dict[tuple[str, int | None], str] = {}
    for (name, _), text in sorted({**pages, **chinese}.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        by_file[(name, None)] = by_file.get((name, None), "") + " " + text
    for i, (name, paras) in enumerate((formats.paragraphs if formats else {}).items()):
        units = {(name, j): p for j, p in enumerate(paras)}
        sets[Path(name).suffix] = [(phrase, (name, None)) for phrase, _ in
                                   sample_phrases(units, per_format, seed + 10 + i, words=4)]
        by_file[(name, None)] = "\n".join(paras)
    return sets, {"file": by_file, "page": {**pages, **chinese}}


def cmd_against_recoll(args) -> dict:
    recoll = shutil.which("recollindex") and shutil.which("recollq")
    if not recoll:
        say(f"Recoll is not installed: its side is skipped. Install it with `{RECOLL_INSTALL}`.")
    elif not shutil.which("pdftotext"):
        say(f"Recoll cannot read PDFs without pdftotext (poppler-utils): install it with `{RECOLL_INSTALL}`.")
    model = _bundle(str(args.model))
    work = Path(tempfile.mkdtemp(prefix="mmsearch-recoll-"))
    try:
        corpus = write_corpus(work / "corpus")
        formats = None
        if args.format_phrases:
            from benchmarks.format_corpus import write_format_corpus
            from benchmarks.real_corpus import library_paragraphs

            formats = write_format_corpus(corpus.folder, library_paragraphs(), per_file=args.format_paragraphs)
        files = sorted(p.name for p in corpus.folder.iterdir())
        say(f"{len(files)} files in the corpus; model {model}; {args.rounds} rounds, alternating")
        runs: dict[str, list[dict]] = {"recoll": [], "mmsearch": []}
        for r in range(args.rounds):
            if recoll:
                runs["recoll"].append(recoll_index(corpus.folder, work / "recoll"))
                say(f"round {r + 1}: Recoll {runs['recoll'][-1]}")
            runs["mmsearch"].append(_mmsearch_index(corpus.folder, work / "index", model, work / "trace"))
            say(f"round {r + 1}: mmsearch {runs['mmsearch'][-1]}")
        held = recoll_documents(work / "recoll") if recoll else []
        mm = runs["mmsearch"]
        med = statistics.median
        result: dict = {
            "files": len(files), "model": str(args.model), "rounds": args.rounds, "cpu": _cpu_flags(),
            "loadavg": os.getloadavg(), "chunks": mm[-1]["chunks"], "runs": runs,
            "recoll_documents": len(set(held)), "recoll_missing": sorted(set(files) - {os.path.basename(p) for p in held}),
        }
        words_cpu, full_cpu = med([m["words"]["cpu_s"] for m in mm]), med([m["full"]["cpu_s"] for m in mm])
        words_bytes, full_bytes = mm[-1]["words"]["kept_bytes"], mm[-1]["full"]["kept_bytes"]
        chunks = mm[-1]["chunks"]
        rows = [{"": "words phase CPU s (median)", "mmsearch": round(words_cpu, 2)},
                {"": "words phase wall s (median)", "mmsearch": round(med([m["words"]["wall_s"] for m in mm]), 2)},
                {"": "index bytes before vectors", "mmsearch": words_bytes},
                {"": "  the same with SQLite's write-ahead log as the run left it", "mmsearch": mm[-1]["words"]["bytes"]},
                {"": "whole index CPU s (median)", "mmsearch": round(full_cpu, 2)},
                {"": "whole index wall s (median)", "mmsearch": round(med([m["full"]["wall_s"] for m in mm]), 2)},
                {"": "whole index bytes", "mmsearch": full_bytes}]
        if recoll:
            rc = runs["recoll"]
            r_cpu, r_wall, r_bytes = med([x["cpu_s"] for x in rc]), med([x["wall_s"] for x in rc]), rc[-1]["bytes"]
            for row, value in zip(rows, [r_cpu, r_wall, r_bytes, r_bytes, r_cpu, r_wall, r_bytes]):
                row["Recoll"] = round(value, 2) if isinstance(value, float) else value
                row["mmsearch / Recoll"] = round(row["mmsearch"] / value, 2) if value else None
            result["recoll_index"] = {"cpu_s": r_cpu, "wall_s": r_wall, "bytes": r_bytes}
        result["mmsearch_index"] = {"words_cpu_s": words_cpu, "words_bytes": words_bytes, "full_cpu_s": full_cpu,
                                    "full_bytes": full_bytes}
        result["vectors_per_chunk"] = {"cpu_ms": 1000 * (full_cpu - words_cpu) / max(chunks, 1),
                                       "bytes": (full_bytes - words_bytes) / max(chunks, 1)}

        # Cold keyword queries: a fresh process each, the two alternating.
        sets, truth = recall_sets(corpus, args.phrases, args.seed, formats, args.format_phrases)
        rng = random.Random(args.seed)
        sample = rng.sample([p for p, _ in sets["pdf"] + sets["txt"]], args.queries)
        installed = installed_mmsearch(work / "venv")
        cold: dict[str, list[float]] = {"mmsearch": [], "recoll": [], "python": []}
        for phrase in sample:
            cold["mmsearch"].append(_cold_query([str(installed), "query", "--index", str(work / "index"), "--mode",
                                                 "keyword", "--json", "-k", "3", "--", phrase]))
            cold["python"].append(_cold_query([str(installed.with_name("python")), "-c", "pass"]))
            if recoll:
                cold["recoll"].append(_cold_query(["recollq", "-c", str(work / "recoll"), "-n", "3",
                                                   '"' + phrase.replace('"', " ") + '"'], check=False))
        q_row = {"": "cold keyword query ms (median)", "mmsearch": round(1000 * med(cold["mmsearch"]), 1)}
        if recoll:
            q_row["Recoll"] = round(1000 * med(cold["recoll"]), 1)
            q_row["mmsearch / Recoll"] = round(q_row["mmsearch"] / q_row["Recoll"], 2)
        rows.append(q_row)
        # The floor under it: the same interpreter starting and doing nothing.
        rows.append({"": "python -c pass, ms (median)", "mmsearch": round(1000 * med(cold["python"]), 1)})
        result["cold_query_s"] = {k: med(v) if v else None for k, v in cold.items()}

        # Phrase recall: the phrase's own file (any file holding it) among the first 3.
        from mmsearch import Index

        recall_rows = []
        with Index(work / "index", model=model, device="cpu", readonly=True) as idx:
            searches = {"mmsearch hybrid": lambda p: idx.search(p, k=3),
                        "mmsearch keyword": lambda p: idx.search(p, k=3, mode="keyword")}
            for name, search in searches.items():
                for s, phrases in sets.items():
                    file_level = measure_recall(_as_files(search), truth["file"], phrases)
                    page_level = None if s.startswith(".") else measure_recall(search, truth["page"], phrases)["found"]
                    recall_rows.append({"engine": name, "set": s, "found (file)": file_level["found"],
                                        "found (page)": page_level, "phrases": len(phrases),
                                        "misses": file_level["misses"]})
        if recoll:
            for s, phrases in sets.items():
                file_level = measure_recall(lambda p: recoll_search(work / "recoll", p), truth["file"], phrases)
                recall_rows.append({"engine": "Recoll", "set": s, "found (file)": file_level["found"],
                                    "found (page)": None, "phrases": len(phrases), "misses": file_level["misses"]})
            for s, phrases in sets.items():
                file_level = measure_recall(lambda p: recoll_search(work / "recoll", p, plain=True), truth["file"],
                                            phrases)
                recall_rows.append({"engine": "Recoll, punctuation as spaces", "set": s,
                                    "found (file)": file_level["found"], "found (page)": None,
                                    "phrases": len(phrases), "misses": file_level["misses"]})
        for engine in dict.fromkeys(r["engine"] for r in recall_rows):
            mine = [r for r in recall_rows if r["engine"] == engine and not r["set"].startswith(".")]
            rows.append({"": f"{engine}: phrases found in top 3 (file)",
                         "Recoll" if engine.startswith("Recoll") else "mmsearch":
                             f"{sum(r['found (file)'] for r in mine)}/{sum(r['phrases'] for r in mine)} ("
                             + ", ".join(f"{r['set']} {r['found (file)']}/{r['phrases']}" for r in mine) + ")"})
        result["recall"] = recall_rows
        result["table"] = rows
        by_format = []
        for s in (s for s in sets if s.startswith(".")):
            row = {"format": s, "phrases": len(sets[s])}
            for r in recall_rows:
                if r["set"] == s:
                    row[r["engine"]] = r["found (file)"]
            if recoll:
                name = next(n for n in formats.paragraphs if n.endswith(s)) if formats else ""
                row["Recoll holds the file"] = "yes" if name in {os.path.basename(p) for p in held} else "no"
            by_format.append(row)
        result["recall_by_format"] = by_format
        print(f"{len(files)} files ({', '.join(sorted({Path(f).suffix for f in files}))}), {chunks} chunks, model "
              f"{args.model}; CPU {_cpu_flags()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if recoll:
            print(f"Recoll holds {len(set(held))} documents; not held: {result['recoll_missing'] or 'none'}")
        print(_table(rows))
        print(_table([{k: v for k, v in r.items() if k != "misses"} for r in recall_rows if not r["set"].startswith(".")]))
        if by_format:
            print(f"\nthe formats (one file each, {args.format_paragraphs} paragraphs of the standard library's "
                  f"docstrings; phrases found in the top 3 files):")
            print(_table(by_format))
        if recoll and runs["recoll"][-1].get("missing_helpers"):
            print(f"Recoll's missing helpers: {runs['recoll'][-1]['missing_helpers']}")
        paused = mm[-1]["words"]
        print(f"at the words phase's end (the run paused there): {paused['chunks']} chunks written, "
              f"{paused['pending']} of them waiting for a vector")
        print(f"vectors phase: {result['vectors_per_chunk']['cpu_ms']:.2f} ms CPU and "
              f"{result['vectors_per_chunk']['bytes']:.0f} bytes a chunk ({chunks} chunks)")
        for r in recall_rows:
            for miss in r["misses"][:5]:
                print(f"  missed ({r['engine']}, {r['set']}): {miss}")
        if not recoll:
            print(f"Recoll's side skipped: not installed. Install it with `{RECOLL_INSTALL}`.")
        if args.check:
            check_recall(result, recoll=bool(recoll))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_recall(result: dict, *, recoll: bool) -> None:
    """--check: every phrase set (pdf, txt, zh, each format) found by mmsearch, hybrid and keyword, at least
    as often as Recoll finds it, Recoll holding every file; else exit 1 saying where. Times are printed,
    never checked: a shared machine moves them."""
    if not recoll:
        raise SystemExit(f"--check needs Recoll: `{RECOLL_INSTALL}`")
    failures = []
    if result.get("recoll_missing"):
        failures.append(f"Recoll does not hold {result['recoll_missing']} (its helpers: {RECOLL_INSTALL})")
    found = {(r["engine"], r["set"]): r["found (file)"] for r in result["recall"]}
    for (engine, s), n in found.items():
        theirs = found.get(("Recoll", s))
        if engine.startswith("mmsearch") and theirs is not None and n < theirs:
            failures.append(f"{engine} finds {n} of the {s} phrases, Recoll {theirs}")
    if failures:
        raise SystemExit("phrase recall below Recoll's: " + "; ".join(failures))
    print("check: mmsearch finds every phrase set at least as often as Recoll")


def cmd_vectors(args) -> dict:
    from benchmarks import vectors_cost

    return vectors_cost.run(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("recall")
    p.add_argument("--phrases", type=int, default=300, help="random phrases of each length")
    p.add_argument("--lengths", default="4,8,16,32", help="phrase lengths in words")
    p.add_argument("--cjk", type=int, default=300, help="runs of 2-12 Chinese characters (0: none)")
    p.add_argument("--clip", action="store_true", help="also chunk with OpenAI CLIP's own BPE (no model)")
    p.add_argument("--toyclip-chunks", action="store_true",
                   help="also the keyword side alone over chunks cut as the toy CLIP cuts them (no model; with "
                        "--model '' and another checkout's mmsearch first on sys.path, that code's keyword index)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="toyclip,vitb32", help="toyclip, vitb32, clip-b32 or bundle folders, by commas")
    p = sub.add_parser("speed")
    p.add_argument("--against", default=None, help="a git ref to compare with (e.g. the branch point)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", type=Path, default=TOYCLIP, help="a bundle folder, or clip-b32: ViT-B/32 with CLIP's BPE")
    p = sub.add_parser("cjk")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("encodings")
    p = sub.add_parser("vectors", help="the vectors phase's cost per chunk against overlap, a cap, precision")
    p.add_argument("--n", type=int, default=500, help="pictures of the toy world")
    p.add_argument("--seed", type=int, default=2024, help="the toy world's seed (one the toy CLIP never trained on)")
    p.add_argument("--max-size", type=int, default=512, help="the toy world's pictures at most this many pixels wide")
    p.add_argument("--overlaps", default="default,0,0.5",
                   help="overlaps to try: default (the shipped one), a share of a chunk (0.5) or tokens (8)")
    p.add_argument("--caps", default="none,128,32,8", help="vectors a document gets at most (none: all)")
    p.add_argument("--cost-models", default="clip-b32,toyclip", help="bundles timed on the real corpus ('': none)")
    p.add_argument("--sample", type=int, default=512, help="chunks the text tower is timed on")
    p.add_argument("--check-index", action=argparse.BooleanOptionalAction, default=True,
                   help="check the shipped configuration's recall against a real index")
    p = sub.add_parser("against-recoll", help="side by side with Recoll on the same corpus")
    p.add_argument("--model", default="toyclip", help="toyclip, vitb32, clip-b32 or a bundle folder")
    p.add_argument("--rounds", type=int, default=2, help="index runs of each, alternating")
    p.add_argument("--phrases", type=int, default=300, help="phrases for recall (pdf 1/3, txt 1/2, zh 1/6)")
    p.add_argument("--queries", type=int, default=20, help="cold keyword queries of each, alternating")
    p.add_argument("--format-phrases", type=int, default=30,
                   help="phrases for each document format (one file each; 0: no such files)")
    p.add_argument("--format-paragraphs", type=int, default=60, help="paragraphs of real text in each format's file")
    p.add_argument("--check", action="store_true",
                   help="exit 1 where mmsearch finds a phrase set less often than Recoll (CI runs it so)")
    p.add_argument("--seed", type=int, default=0)
    for p in sub.choices.values():
        p.add_argument("--json", type=Path, default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--against-recoll" in argv:  # the flag form: the subcommand
        argv = ["against-recoll"] + [a for a in argv if a != "--against-recoll"]
    args = parser.parse_args(argv)
    result = {"recall": cmd_recall, "speed": cmd_speed, "cjk": cmd_cjk, "encodings": cmd_encodings,
              "against-recoll": cmd_against_recoll, "vectors": cmd_vectors}[args.cmd](args)
    if args.json:
        write_json(args.json, {"benchmark": f"documents {args.cmd}", **result})


if __name__ == "__main__":
    main()
