"""Documents on real text: phrase recall, CJK keyword tokenizers, encoding detection, indexing speed.

    python -m benchmarks.documents recall    [--phrases 300] [--lengths 4,8,16,32] [--cjk 300]
                                             [--model toyclip,vitb32] [--json FILE]
    python -m benchmarks.documents speed     [--against REF] [--model DIR] [--repeat 3] [--json FILE]
    python -m benchmarks.documents cjk       [--queries 200] [--json FILE]
    python -m benchmarks.documents encodings [--json FILE]

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
    from mmsearch.catalog import fts_text

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
    for p in sub.choices.values():
        p.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"recall": cmd_recall, "speed": cmd_speed, "cjk": cmd_cjk, "encodings": cmd_encodings}[args.cmd](args)
    if args.json:
        write_json(args.json, {"benchmark": f"documents {args.cmd}", **result})


if __name__ == "__main__":
    main()
