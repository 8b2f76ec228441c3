"""The vectors phase's cost per chunk against the choices that bound it, and what each choice costs an
image query (`python -m benchmarks.documents vectors`).

The choices: the overlap of consecutive chunks (in tokens), a cap on the vectors a document gets (that
many of its chunks, chosen evenly over it; the others keep their words but get no vector), and the
vectors' stored precision (float32; float16 measured by rounding each vector to float16 and back, which
is what a float16 copy would answer).

1. Recall: a held-out toy world (benchmarks/toyworld.py, one caption document per picture and three
   longer documents quoting a dozen captions each) with the committed toy CLIP. Every picture asks for
   documents, scored as benchmarks/quality.py scores image->text: R@k, the share of pictures with a
   right document among the first k. A document's score is its best chunk's cosine (what
   search.rank does for an image query: vector mode, one result per file); the configuration of the
   shipped code is checked against a real `Index` over the same world (`--check-index`). The world's
   documents are short (its longest, a few dozen chunks), so four books are added (add_books: a
   paragraph for each of 100 pictures, hundreds of chunks each). "long docs R@10" and "books R@10":
   the pictures those documents describe, found through them alone (where a cap or less overlap cuts
   first); R@k counts every document, caption files included.
2. Cost on the real corpus (benchmarks/real_corpus.py) with the ViT-B/32-sized random-weight bundle and
   OpenAI CLIP's BPE (documents.clip_b32_bundle: a real CLIP's chunks at a real text tower's cost) and
   with the toy CLIP: vectors for each choice and the texts the tower encodes for them (a text that
   repeats is encoded once: documents.vector_batches), the text tower's CPU seconds per chunk (a sample
   of the corpus's chunks, batches of 64 as the vectors step encodes them), and bytes on disk per chunk
   from a real index of the corpus: its vectors (the catalog's `vectors` rows, the .npy records, the
   hnswlib graph) and its catalog rows (chunks, their keyword index and passages). The index's vectors
   there are random unit vectors (the sizes are those of real ones; the tower's time is measured apart).
"""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import toyworld as tw
from benchmarks.common import say
from benchmarks.real_corpus import write_corpus

ENCODE_BATCH = 64  # ingest.records.DOCUMENT_BATCH: what the vectors step encodes at a time
KS = (1, 5, 10)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def overlap_tokens(spec: str, max_tokens: int, shipped: int) -> int:
    """An --overlaps entry: "default" (the shipped overlap), a share of a chunk ("0.5") or tokens ("8")."""
    if spec == "default":
        return shipped
    return round(float(spec) * max_tokens) if "." in spec else int(spec)


def evenly(n: int, cap: int | None) -> np.ndarray:
    """Which of a document's n chunks get a vector under `cap` (None: all): spread evenly, first and last
    included."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def fp16(vectors: np.ndarray) -> np.ndarray:
    """What a float16 copy of the vectors would answer with."""
    return vectors.astype(np.float16).astype(np.float32)


def document_files(world: Path) -> list[Path]:
    return sorted((world / "captions").glob("*.txt")) + sorted((world / "docs").iterdir())


def chunk_documents(files: list[Path], tokenizer, max_tokens: int, overlap: int) -> list[list[str]]:
    from mmsearch.chunking import iter_chunks
    from mmsearch.textfiles import iter_pages

    return [[c.text for c in iter_chunks(iter_pages(f), tokenizer, max_tokens=max_tokens, overlap_tokens=overlap)]
            for f in files]


def encode_all(encoder, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """(vectors, CPU seconds, wall seconds) of encoding `texts` ENCODE_BATCH at a time."""
    c, t = _cpu(), time.perf_counter()
    out = [encoder.encode(texts[i : i + ENCODE_BATCH]) for i in range(0, len(texts), ENCODE_BATCH)]
    return (np.concatenate(out) if out else np.zeros((0, 1), np.float32)), _cpu() - c, time.perf_counter() - t


def image_queries(world: Path, rows: list[dict], bundle) -> np.ndarray:
    from mmsearch.encoder import ImageEncoder
    from mmsearch.preprocess import QUERY_MAX_PIXELS, decode_image

    encoder = ImageEncoder(bundle, device="cpu")
    return np.concatenate([encoder.encode(decode_image(world / r["path"], bundle.image_spec,
                                                       decode_limit=QUERY_MAX_PIXELS).pixels) for r in rows])


def recall_of(queries: np.ndarray, doc_vectors: list[np.ndarray], relevant: np.ndarray, k: int = 10) -> dict:
    """R@k over the queries: a document scores its best vector's cosine; `relevant[q, d]` says whether
    document d is a right answer to query q. A document without vectors is never found."""
    best = np.full((len(queries), len(doc_vectors)), -np.inf, dtype=np.float32)
    for d, v in enumerate(doc_vectors):
        if len(v):
            best[:, d] = (queries @ v.T).max(axis=1)
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(relevant, order, axis=1) & np.isfinite(np.take_along_axis(best, order, axis=1))
    return {f"R@{n}": round(float(hit[:, :n].any(axis=1).mean()), 4) for n in KS if n <= k}


def add_books(world: Path, rows: list[dict], books: int, per_book: int, seed: int) -> None:
    """`books` long documents, docs/book-N.txt, each a paragraph for `per_book` random pictures (its
    caption, as the world's own documents quote them), listed in docs.jsonl: hundreds of chunks each,
    where a cap on a document's vectors bites (the world's own documents have a few dozen)."""
    import json
    import random

    rng = random.Random(f"books/{seed}")
    with open(world / "docs.jsonl", "a", encoding="utf-8") as f:
        for b in range(books):
            picks = rng.sample(range(len(rows)), min(per_book, len(rows)))
            paras = [f"Picture {Path(rows[i]['path']).name} shows {rows[i]['caption']}. {rng.choice(tw._FILLER)}"
                     for i in picks]
            name = f"docs/book-{b + 1}.txt"
            (world / name).write_text(f"Book {b + 1}\n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
            f.write(json.dumps({"path": name, "describes": [rows[i]["path"] for i in picks]}, sort_keys=True) + "\n")


def relevance(world: Path, files: list[Path], rows: list[dict]) -> dict[str, np.ndarray]:
    """relevant[q, d] for every document ("all"), and the same for the world's three longer documents
    alone ("long docs") and for the books alone ("books")."""
    from benchmarks.quality import Judge

    judge = Judge(world)
    rel = np.array([[judge.document_relevant(r, str(f)) for f in files] for r in rows])
    book = np.array([f.name.startswith("book-") for f in files])
    long_docs = np.array([f.parent.name == "docs" for f in files]) & ~book
    return {"all": rel, "long docs": rel & long_docs[None, :], "books": rel & book[None, :]}


def recall_grid(world_n: int, seed: int, overlaps: list[str], caps: list[int | None], work: Path,
                max_size: int, check_index: bool, books: int = 4, per_book: int = 100) -> dict:
    """The toy world's image->text recall for every (overlap, cap, precision), and the check against a
    real index at the shipped configuration."""
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import TextEncoder
    from mmsearch.ingest.documents import chunk_overlap
    from mmsearch.tokens import chunk_tokenizer, content_tokens

    from benchmarks.documents import TOYCLIP

    world = work / "world"
    rows = tw.generate(world, world_n, seed, caption_docs=True, max_size=max_size)
    add_books(world, rows, books, per_book, seed)
    bundle = load_bundle(TOYCLIP)
    max_tokens = content_tokens(bundle)
    tokenizer = chunk_tokenizer(bundle)
    files = document_files(world)
    rel = relevance(world, files, rows)
    asked = {name: r.any(axis=1) for name, r in rel.items() if name != "all"}
    queries = image_queries(world, rows, bundle)
    text = TextEncoder(bundle, device="cpu")
    shipped = chunk_overlap(max_tokens)
    say(f"toy world: {len(rows)} pictures (seed {seed}), {len(files)} documents; toyclip {max_tokens} tokens a "
        f"chunk, overlap shipped {shipped}")
    out = []
    for ov in dict.fromkeys(overlap_tokens(o, max_tokens, shipped) for o in overlaps):
        docs = chunk_documents(files, tokenizer, max_tokens, ov)
        flat = [t for d in docs for t in d]
        vectors, cpu_s, wall_s = encode_all(text, flat)
        bounds = np.cumsum([0] + [len(d) for d in docs])
        per_doc = [vectors[bounds[i] : bounds[i + 1]] for i in range(len(docs))]
        for cap in caps:
            chosen = [v[evenly(len(v), cap)] for v in per_doc]
            for precision, as_stored in (("float32", lambda v: v), ("float16", fp16)):
                stored = [as_stored(v) for v in chosen]
                row = {"overlap": ov, "cap": cap or "none", "precision": precision,
                       "vectors": int(sum(len(v) for v in stored)), **recall_of(queries, stored, rel["all"])}
                for name, q in asked.items():
                    row[f"{name} R@10"] = recall_of(queries[q], stored, rel[name][q])["R@10"]
                out.append(row)
        say(f"overlap {ov}: {len(flat)} chunks, toyclip {1000 * cpu_s / max(len(flat), 1):.2f} ms CPU a chunk")
    result = {"pictures": len(rows), "documents": len(files), "queries": {k: int(q.sum()) for k, q in asked.items()},
              "longest": max(len(d) for d in per_doc),
              "max_tokens": max_tokens, "shipped_overlap": shipped, "rows": out}
    if check_index:
        result["index_check"] = _index_check(world, rows, rel["all"], work / "index")
    return result


def _index_check(world: Path, rows: list[dict], rel: np.ndarray, index: Path) -> dict:
    """R@k of a real index of the world's documents at the shipped configuration, every picture asked
    through Index.search(image=..., type="document")."""
    from mmsearch import Index

    from benchmarks.documents import TOYCLIP

    files = [str(f) for f in document_files(world)]
    position = {os.path.realpath(f): i for i, f in enumerate(files)}
    hits = []
    with Index(index, model=TOYCLIP, device="cpu") as idx:
        idx.index([world / "captions", world / "docs"], ocr=False)
        for q, r in enumerate(rows):
            found = idx.search(image=world / r["path"], k=10, type="document")
            hits.append([bool(rel[q, position[os.path.realpath(h.path)]]) for h in found])
    return {f"R@{n}": round(sum(any(h[:n]) for h in hits) / max(len(hits), 1), 4) for n in KS}


# -- cost on the real corpus ----------------------------------------------------------------------


def corpus_chunks(folder: Path, bundle, overlap: int) -> list[list[str]]:
    from mmsearch.tokens import chunk_tokenizer, content_tokens
    from mmsearch.textfiles import DocumentError

    out = []
    for path in sorted(folder.iterdir()):
        try:
            out += chunk_documents([path], chunk_tokenizer(bundle), content_tokens(bundle), overlap)
        except DocumentError:
            continue  # (an index run lists it in error)
    return out


def tower_cost(bundle, texts: list[str], rounds: int = 2) -> dict:
    """The text tower's CPU and wall seconds per chunk over `texts` (the best of `rounds`, after a warm-up
    batch)."""
    from mmsearch.encoder import TextEncoder

    encoder = TextEncoder(bundle, device="cpu")
    encoder.encode(texts[:ENCODE_BATCH])
    best = min((encode_all(encoder, texts)[1:] for _ in range(rounds)), key=lambda cw: cw[0])
    return {"cpu_ms": round(1000 * best[0] / len(texts), 3), "wall_ms": round(1000 * best[1] / len(texts), 3),
            "sample": len(texts)}


def _random_vectors(dim: int) -> Callable:
    rng = np.random.default_rng(0)

    def encode(self, texts):
        v = rng.standard_normal((len(texts), dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return encode


def stored_bytes(folder: Path, bundle_path: Path, index: Path) -> dict:
    """Bytes on disk per chunk of a real index of `folder` (random unit vectors in place of the tower's):
    the catalog's rows of the chunks (items, their keyword index, passages: the catalog less its vectors
    table), the catalog's vectors table, the .npy records and the hnswlib graph."""
    from mmsearch import Index
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import TextEncoder

    dim = load_bundle(bundle_path).embedding_dim
    original = TextEncoder.encode
    TextEncoder.encode = _random_vectors(dim)  # sizes of real vectors without the tower's time
    try:
        with Index(index, model=bundle_path, device="cpu") as idx:
            idx.index([folder], ocr=False)
    finally:
        TextEncoder.encode = original
    copy = index.with_name(index.name + "-copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index, copy, ignore=shutil.ignore_patterns("*.lock"))
    try:
        conn = sqlite3.connect(copy / "catalog.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        chunks = conn.execute("SELECT count(*) FROM items WHERE kind = 'document'").fetchone()[0]
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        catalog = (copy / "catalog.db").stat().st_size
        conn.execute("DELETE FROM vectors")
        conn.commit()
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        rows_only = (copy / "catalog.db").stat().st_size
        graph = sum(p.stat().st_size for p in copy.glob("vectors-*.hnsw"))
        records = sum(p.stat().st_size for p in copy.glob("vectors-*.npy")) + sum(
            p.stat().st_size for p in copy.glob("vectors-*.tail"))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    per = max(chunks, 1)
    return {"chunks": chunks, "dim": dim, "catalog_rows": round(rows_only / per), "catalog_vectors":
            round((catalog - rows_only) / per), "npy": round(records / per), "hnsw": round(graph / per),
            "total": round((catalog + graph + records) / per)}


def cost_grid(models: dict[str, Path], overlaps: list[str], caps: list[int | None], work: Path,
              sample: int) -> dict:
    """Per model: chunks of the real corpus for each (overlap, cap), the tower's time per chunk, and the
    bytes per chunk of a real index at the shipped overlap."""
    from mmsearch.bundle import load_bundle
    from mmsearch.ingest.documents import chunk_overlap
    from mmsearch.tokens import content_tokens

    corpus = write_corpus(work / "corpus")
    out = {}
    for name, path in models.items():
        bundle = load_bundle(path)
        max_tokens = content_tokens(bundle)
        shipped = chunk_overlap(max_tokens)
        counts = {}
        texts: list[str] = []
        for ov in dict.fromkeys(overlap_tokens(o, max_tokens, shipped) for o in overlaps):
            docs = corpus_chunks(corpus.folder, bundle, ov)
            if ov == shipped:
                flat = [t for d in docs for t in d]
                texts = [flat[i] for i in np.linspace(0, len(flat) - 1, min(sample, len(flat))).round().astype(int)]
            for cap in caps:
                chosen = [d[i] for d in docs for i in evenly(len(d), cap)]
                counts[(ov, cap)] = (len(chosen), len(set(chosen)))  # (vectors, texts the tower encodes)
        say(f"{name}: {max_tokens} tokens a chunk; (chunks, distinct texts) {counts.get((shipped, None))} at the shipped overlap "
            f"{shipped}; timing the tower on {len(texts)} of them")
        cost = tower_cost(bundle, texts)
        size = stored_bytes(corpus.folder, path, work / f"index-{name}")
        say(f"{name}: {cost}; {size}")
        out[name] = {"max_tokens": max_tokens, "shipped_overlap": shipped, "tower": cost, "bytes": size,
                     "chunks": [{"overlap": ov, "cap": cap or "none", "vectors": n, "encoded": e}
                                for (ov, cap), (n, e) in counts.items()]}
    return out


def run(args) -> dict:
    from benchmarks.documents import _cpu_flags, _table, _bundle

    overlaps = args.overlaps.split(",")
    caps = [None if x == "none" else int(x) for x in args.caps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mmsearch-vectors-"))
    try:
        result: dict = {"cpu": _cpu_flags(), "threads": os.cpu_count()}
        result["recall"] = recall_grid(args.n, args.seed, overlaps, caps, work, args.max_size, args.check_index)
        models = {m: _bundle(m) for m in args.cost_models.split(",") if m}
        result["cost"] = cost_grid(models, overlaps, caps, work, args.sample) if models else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec = result["recall"]
    base = next(r for r in rec["rows"] if r["overlap"] == rec["shipped_overlap"] and r["cap"] == "none"
                and r["precision"] == "float32")
    for r in rec["rows"]:
        r["ΔR@10"] = round(r["R@10"] - base["R@10"], 4)
    print(f"CPU: {result['cpu']}; {os.cpu_count()} cores")
    print(f"\nimage->text on the toy world ({rec['pictures']} pictures, {rec['documents']} documents, toyclip, "
          f"{rec['max_tokens']} tokens a chunk, at most {rec['longest']} chunks a document; pictures asked through "
          f"the long docs and the books alone: {rec['queries']})")
    print(_table(rec["rows"]))
    if "index_check" in rec:
        print(f"a real index at the shipped configuration: {rec['index_check']} (in-process: "
              f"{ {k: base[k] for k in ('R@1', 'R@5', 'R@10')} })")
    for name, c in result["cost"].items():
        b, t = c["bytes"], c["tower"]
        print(f"\n{name} on the real corpus: text tower {t['cpu_ms']} ms CPU ({t['wall_ms']} ms wall) a chunk "
              f"(sample of {t['sample']}, {result['cpu']}); bytes a chunk: {b['total']} = catalog rows "
              f"{b['catalog_rows']} + catalog vectors {b['catalog_vectors']} + .npy {b['npy']} + .hnsw {b['hnsw']} "
              f"(dim {b['dim']}; float16 would halve the vector payload of the catalog and .npy: "
              f"{2 * b['dim']} bytes each, not hnswlib's float32 graph)")
        rows = []
        every = {r["overlap"]: r["vectors"] for r in c["chunks"] if r["cap"] == "none"}
        vector = b["catalog_vectors"] + b["npy"] + b["hnsw"]
        for r in c["chunks"]:
            n, words = r["vectors"], every[r["overlap"]] * b["catalog_rows"]  # every chunk keeps its words
            rows.append({**r, "chunks": every[r["overlap"]], "tower CPU s": round(r["encoded"] * t["cpu_ms"] / 1000, 1),
                         "MB (fp32)": round((words + n * vector) / 1e6, 1),
                         "MB (fp16 where possible)": round((words + n * (vector - 4 * b["dim"])) / 1e6, 1)})
        print(_table(rows))
    return result
