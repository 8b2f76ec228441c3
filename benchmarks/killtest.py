"""Kill `mmsearch index` with SIGKILL over and over, then check the index equals a clean run's.

    python -m benchmarks.killtest --model BUNDLE [--images 2000] [--docs 40] [--kills 100] [--seed 0] [--json FILE]

Without --model a tiny random-weight CLIP bundle is exported first (needs the export extra).

A collection of pictures (a few with words in them), text files and a scanned PDF is indexed once
cleanly (the reference). Then a second index is built by runs that are each SIGKILLed at a chosen
phase: scanning, encoding, reading the words in pictures (OCR, where installed), inside a catalog
transaction, or in the save of the vector files at the end of a run (the index command's
hidden options: --trace-steps logs the step each run enters, --hold-steps holds each step open a
little so the kill lands inside it). Each
run is restarted; a last run without hooks finishes the job. Then:

- the two catalogs hold the same files, with the same status and error, and the same vectors;
- the same words read in the same pictures, each picture read (files.ocr_hash) exactly as cleanly;
- every item has exactly one vector (but a picture's words, which have none) and every vector an
  item; no indexed file without items;
- item ids run 1..N without gaps: no item committed before a kill was ever replaced, i.e. nothing
  committed was encoded again (ids are AUTOINCREMENT; an uncommitted transaction takes none);
- the saved vector files, loaded as they are, hold exactly the catalog's item ids, and their stamp
  is the catalog's generation; no temporary or older files are left in the index folder.

tests/test_crash.py runs a small version (20 kills) in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

PHASES = ("scan", "encode", "ocr", "commit", "save")
WORDS = ("harbour", "lemon", "bridge", "winter", "garden", "river", "mountain", "station")
EXPECTED_FILES = {"catalog.db", "catalog.db-wal", "catalog.db-shm", "vectors.json", "index.lock"}  # + the saved pair


def make_collection(root: Path, n_images: int, n_docs: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n_images):
        folder = root / f"album{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((64, 48), Image.Resampling.NEAREST)
        fmt = ("jpg", "png")[i % 2]
        img.save(folder / f"pic{i:05d}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
    words = "harbour boat garden lemon cake river mountain city train bridge winter frost roses basil".split()
    for i in range(n_docs):
        text = " ".join(rng.choice(words, 60 + 40 * (i % 4))) + ".\n"
        (root / "notes").mkdir(parents=True, exist_ok=True)
        (root / "notes" / f"note{i:03d}.txt").write_text(text * (1 + i % 3))
    (root / "notes" / "broken.jpg").write_bytes(b"not a picture at all")  # one file in error, too
    # Pictures with words, and a scanned PDF (its pages are pictures), for the OCR phase.
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    pages = []
    for i, word in enumerate(WORDS):
        img = Image.new("RGB", (480, 160), (250, 250, 245))
        ImageDraw.Draw(img).text((30, 50), f"{word} {i}", fill=(20, 20, 20), font=font)
        if i < 6:
            img.save(root / f"album{i % 7}" / f"sign{i}.png")
        else:
            pages.append(img)
    pages[0].save(root / "notes" / "scan.pdf", save_all=True, append_images=pages[1:], resolution=72)


def _cmd(photos: Path, index: Path, bundle: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch.cli", "index", str(photos), "--index", str(index), "--model", str(bundle),
            "--device", "cpu", "--variant", "fp32", "--json", *extra]


def _clean_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _read_trace(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def run_killtest(work: Path, bundle: Path, *, n_images: int = 200, n_docs: int = 6, kills: int = 20, seed: int = 0,
                 slow_s: float = 0.04, log=lambda msg: None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    photos, clean, killed, trace = work / "photos", work / "clean", work / "killed", work / "trace.log"
    if not photos.exists():
        make_collection(photos, n_images, n_docs, seed)
    started = time.monotonic()
    ref = subprocess.run(_cmd(photos, clean, bundle), env=_clean_env(), capture_output=True, text=True, timeout=600)
    if ref.returncode != 0:
        raise RuntimeError(f"clean run failed: {ref.stderr}")
    clean_s = time.monotonic() - started

    rng = np.random.default_rng(seed)
    hooks = ("--trace-steps", str(trace), "--hold-steps", str(slow_s))
    landed: Counter[str] = Counter()
    done_early = 0
    attempts = 0
    work_left = True  # encode, OCR and commit kills need files still to index
    images_left = True  # until a run reaches the OCR phase: then every image and document is committed
    while sum(landed.values()) < kills and attempts < kills * 4:
        attempts += 1
        target = _next_target(landed, kills, work_left, images_left)
        # A run's first save is the one aimed at; OCR kills land anywhere in the phase, after some of its
        # batches committed or before.
        nth = 1 if target == "save" else int(rng.integers(1, 9)) if target == "ocr" else int(rng.integers(1, 4))
        trace.unlink(missing_ok=True)
        proc = subprocess.Popen(_cmd(photos, killed, bundle, *hooks), env=_clean_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        where = None
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            lines = _read_trace(trace)
            # A run aimed at encoding that finds the encoding done is killed as it reads words instead:
            # let through, it would finish the work every later kill needs.
            late = target == "encode" and "ocr" in lines
            if lines and ((lines[-1] == target and lines.count(target) >= nth) or late):
                time.sleep(float(rng.uniform(0, slow_s * 0.8)))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if proc.returncode == -signal.SIGKILL:
                    lines = _read_trace(trace)
                    where = lines[-1] if lines else "startup"
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"a run hung: {proc.stderr.read() if proc.stderr else ''}")
        if "ocr" in _read_trace(trace):
            images_left = False
        err = proc.stderr.read() if proc.stderr else ""
        if where is None:
            if proc.returncode != 0:
                raise RuntimeError(f"an interrupted-and-restarted run failed (exit {proc.returncode}): {err}")
            done_early += 1
            work_left = False  # the index is complete: only scans and saves are left to kill
            continue
        landed[where] += 1
        log(f"kill {sum(landed.values()):3d}: in {where} (target {target} #{nth})")
    final = subprocess.run(_cmd(photos, killed, bundle), env=_clean_env(), capture_output=True, text=True, timeout=600)
    if final.returncode != 0:
        raise RuntimeError(f"the last run failed (exit {final.returncode}): {final.stderr}")
    result = compare(clean, killed, dim=_dim(bundle))
    result.update(kills=sum(landed.values()), landed=dict(landed), runs_completed_between_kills=done_early,
                  final_run=json.loads(final.stdout), clean_run_s=round(clean_s, 2),
                  total_s=round(time.monotonic() - started, 1), images=n_images, docs=n_docs)
    return result


def _next_target(landed: Counter[str], kills: int, work_left: bool, images_left: bool) -> str:
    """Scan, encode and commit kills first, in turn, while images are left to encode; then OCR kills
    (the OCR phase comes after every image is committed), then saves. A run saves after the images and
    documents (again after OCR only where scanned pages added vectors); the run after a save kill finds
    the vector files behind the catalog and saves again, so saves stay killable. Past every phase's
    share, scans and saves alternate."""
    share = max(1, kills // len(PHASES))
    early = [p for p in ("scan", "encode", "commit") if landed[p] < share and (images_left or p != "encode")]
    if early and work_left:
        return min(early, key=lambda p: (landed[p], PHASES.index(p)))
    if work_left and landed["ocr"] < share:
        return "ocr"
    if landed["save"] < share:
        return "save"
    return "scan" if landed["scan"] <= landed["save"] else "save"


def _dim(bundle: Path) -> int:
    return int(json.loads((bundle / "manifest.json").read_text())["embedding_dim"])


def _snapshot(index: Path) -> dict:
    conn = sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True)
    try:
        files = {r[0]: r[1:] for r in conn.execute("SELECT path, status, error, kind, content_hash, ocr_hash FROM files")}
        words = {r[0]: r[1] for r in conn.execute(
            "SELECT files.path, group_concat(items.text, '|') FROM items JOIN files ON files.id = items.file_id"
            " WHERE items.kind = 'ocr' GROUP BY files.path")}
        vecs: dict[str, list[bytes]] = {}
        for path, page, start, vec in conn.execute(
            "SELECT files.path, items.page, items.start, vectors.vector FROM items JOIN files ON files.id = items.file_id"
            " JOIN vectors ON vectors.item_id = items.id ORDER BY files.path, items.page, items.start"
        ):
            vecs.setdefault(path, []).append(vec)
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "files": files,
            "words": words,
            "vectors": vecs,
            "items": q("SELECT count(*) FROM items"),
            "vector_rows": q("SELECT count(*) FROM vectors"),
            "max_item_id": q("SELECT coalesce(max(id), 0) FROM items"),
            "items_without_vector": q("SELECT count(*) FROM items WHERE kind != 'ocr' AND id NOT IN"
                                      " (SELECT item_id FROM vectors)"),
            "words_with_vector": q("SELECT count(*) FROM items WHERE kind = 'ocr' AND id IN (SELECT item_id FROM vectors)"),
            "vectorless": q("SELECT count(*) FROM items WHERE kind = 'ocr'"),
            "vectors_without_item": q("SELECT count(*) FROM vectors WHERE item_id NOT IN (SELECT id FROM items)"),
            "indexed_without_items": q("SELECT count(*) FROM files WHERE status = 'indexed' AND id NOT IN "
                                       "(SELECT file_id FROM items)"),
            "errors_with_items": q("SELECT count(*) FROM files WHERE status = 'error' AND id IN (SELECT file_id FROM items)"),
            "item_ids": {r[0] for r in conn.execute("SELECT id FROM items")},
            "vector_ids": {r[0] for r in conn.execute("SELECT item_id FROM vectors")},
            "generation": int(q("SELECT value FROM meta WHERE key = 'generation'")),
            "runs": dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()),
            "integrity": q("PRAGMA integrity_check"),
        }
    finally:
        conn.close()


def compare(clean: Path, killed: Path, *, dim: int) -> dict:
    """Everything that must hold; returns figures and a list of problems (empty when all holds)."""
    from mmsearch.ann import AnnGraph
    from mmsearch.flatfile import FlatVectors

    a, b = _snapshot(clean), _snapshot(killed)
    problems = []
    if a["files"] != b["files"]:
        only_a = set(a["files"]) ^ set(b["files"])
        diff = [p for p in set(a["files"]) & set(b["files"]) if a["files"][p] != b["files"][p]]
        problems.append(f"files differ: {sorted(only_a)[:5]} in one only; {diff[:5]} differ")
    if a["words"] != b["words"]:
        diff = sorted(p for p in set(a["words"]) | set(b["words"]) if a["words"].get(p) != b["words"].get(p))
        problems.append(f"words read differ: {diff[:5]}")
    max_dev = 0.0
    for path, va in a["vectors"].items():
        vb = b["vectors"].get(path)
        if vb is None or len(vb) != len(va):
            problems.append(f"{path}: {len(va)} vectors in the clean run, {len(vb or [])} after the kills")
            continue
        x = np.stack([np.frombuffer(v, np.float32) for v in va])
        y = np.stack([np.frombuffer(v, np.float32) for v in vb])
        max_dev = max(max_dev, float(np.abs(x - y).max()))
    if max_dev > 1e-4:
        problems.append(f"vectors differ from the clean run's by up to {max_dev}")
    for key in ("items_without_vector", "words_with_vector", "vectors_without_item", "indexed_without_items",
                "errors_with_items"):
        if b[key]:
            problems.append(f"{key}: {b[key]}")
    if b["items"] != a["items"] or b["vector_rows"] != b["items"] - b["vectorless"]:
        problems.append(f"items {b['items']} (clean {a['items']}), vector rows {b['vector_rows']}")
    if b["max_item_id"] != b["items"]:
        problems.append(f"item ids go up to {b['max_item_id']} for {b['items']} items: committed work was redone")
    if b["integrity"] != "ok":
        problems.append(f"integrity_check: {b['integrity']}")
    stamp = json.loads((killed / "vectors.json").read_text())  # the files as they are on disk, no reconcile
    flat = FlatVectors(killed / stamp["flat"]["name"], dim)
    saved = set(flat.ids.tolist())
    graph = AnnGraph.load(killed / stamp["graph"]["name"], dim, saved)
    if saved != b["vector_ids"] or graph.ids() != saved:
        problems.append(f"vector files hold {len(saved)} ids, catalog {len(b['vector_ids'])}; "
                        f"{len(saved - b['vector_ids'])} orphaned, {len(b['vector_ids'] - saved)} missing")
    if stamp["generation"] != b["generation"]:
        problems.append(f"vector stamp {stamp['generation']} != catalog generation {b['generation']}")
    expected = EXPECTED_FILES | {stamp["flat"]["name"], stamp["graph"]["name"]}
    stray = sorted(p.name for p in killed.iterdir() if p.name not in expected)
    if stray:
        problems.append(f"stray files in the index folder: {stray}")
    return {"problems": problems, "items": b["items"], "files": len(b["files"]), "max_vector_deviation": max_dev,
            "runs": b["runs"], "pictures_with_words": len(b["words"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="bundle folder [default: export a tiny random CLIP]")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", type=float, default=0.04, help="seconds each step is held open (--hold-steps)")
    ap.add_argument("--work", type=Path, help="work folder [default: a temporary one]")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        bundle = args.model
        if bundle is None:
            from mmsearch_export import export_bundle
            from mmsearch_export.tiny import make_clip_checkpoint

            bundle = export_bundle(make_clip_checkpoint(work / "ck"), work / "bundle", variants=("fp32",))
        result = run_killtest(work, Path(bundle), n_images=args.images, n_docs=args.docs, kills=args.kills,
                             seed=args.seed, slow_s=args.slow, log=print)
    print(json.dumps({k: v for k, v in result.items() if k != "final_run"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
