"""Adding photos to a big index: does a run's speed depend on how much the index already holds?

    python -m benchmarks.growth [--existing 0,1000000] [--add 100000] [--dim 512] [--every 10] [--json FILE]

For each size N in --existing, an index of N items is built once (cached under .work/bench/) through
the catalog and the vector store. Then --add items are added to a copy the way an index run commits
them: catalog transactions of 32 items (file rows, items, vectors), the graph following each one,
vectors precomputed (the encoder costs the same whatever the index holds), and the vector files saved
as the run saves them: once, at the end. The same additions are then timed under the earlier policy,
a save every --every seconds during the run (each save here writes the graph and the flat file; the
earlier layout wrote the graph alone, about half those bytes).

Reported per N and policy: items/s while adding, seconds spent saving, the run's total, and the size
of the saved files.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.ann import clustered
from benchmarks.common import BENCH_DIR, machine, say, table, write_json

BATCH = 32


def build(n: int, dim: int) -> Path:
    """A catalog with n image items and its saved vector files (cached)."""
    from mmsearch.catalog import Catalog
    from mmsearch.vectors import VectorStore

    folder = BENCH_DIR / f"growth-{n}-{dim}"
    done = folder / "built.txt"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    say(f"building an index of {n:,} items in {folder}")
    catalog = Catalog(folder)
    root = catalog.add_root("/bench/photos")
    t = time.perf_counter()
    for lo in range(0, n, 50_000):
        vecs = clustered(min(50_000, n - lo), dim, 200, 1.0, seed=lo)
        add_items(catalog, root, lo, vecs)
    say(f"catalog: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    store = VectorStore(folder, dim, catalog)
    store.begin_writing()  # fills the graph from the catalog, as a first open does
    store.save()
    store.end_writing()
    catalog.close()
    say(f"graph and files: {time.perf_counter() - t:.0f} s")
    done.write_text(str(n))
    return folder


def add_items(catalog, root: int, first: int, vecs: np.ndarray, store=None) -> None:
    for lo in range(0, len(vecs), BATCH):
        ids = []
        with catalog.write() as conn:
            for i in range(lo, min(len(vecs), lo + BATCH)):
                number = first + i
                fid, _ = catalog.put_file(conn, path=f"/bench/photos/{number // 1000:04d}/IMG_{number:07d}.jpg",
                                          root_id=root, size=3_000_000 + number, mtime_ns=number,
                                          content_hash=f"{number:064x}", kind="image", media_type="image/jpeg")
                ids += catalog.add_items(conn, fid, "image", vecs[i : i + 1])
        if store is not None:
            store.add(np.asarray(ids, np.int64), vecs[lo : lo + BATCH])


def run(base: Path, n: int, add: int, dim: int, every: float | None) -> dict:
    from mmsearch.catalog import Catalog
    from mmsearch.vectors import VectorStore

    work = BENCH_DIR / "growth-run"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    catalog = Catalog(work)
    store = VectorStore(work, dim, catalog)
    t = time.perf_counter()
    store.begin_writing()
    open_s = time.perf_counter() - t
    store.reserve(add)
    vecs = clustered(add, dim, 200, 1.0, seed=10**7)
    root = catalog.roots()[0][0]
    saving = 0.0
    last = time.perf_counter()
    start = time.perf_counter()
    for lo in range(0, add, 1024):
        add_items(catalog, root, n + lo, vecs[lo : lo + 1024], store)
        if every is not None and time.perf_counter() - last > every:
            s = time.perf_counter()
            store.save()
            saving += time.perf_counter() - s
            last = time.perf_counter()
    adding_s = time.perf_counter() - start - saving
    s = time.perf_counter()
    store.save()  # the end of the run
    end_save_s = time.perf_counter() - s
    store.end_writing()
    files_mb = sum(p.stat().st_size for p in work.glob("vectors-*")) / 2**20
    catalog.close()
    shutil.rmtree(work, ignore_errors=True)
    total = adding_s + saving + end_save_s
    return {"existing": n, "added": add, "policy": "save at the end" if every is None else f"save every {every:g} s",
            "open_s": round(open_s, 1), "adding_s": round(adding_s, 1), "items_per_s": round(add / adding_s),
            "saves_during_s": round(saving, 1), "end_save_s": round(end_save_s, 1), "total_s": round(total, 1),
            "run_items_per_s": round(add / total), "files_mb": round(files_mb)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--existing", default="0,1000000")
    ap.add_argument("--add", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--every", type=float, default=10.0, help="the earlier policy's save interval")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.existing.split(",")):
        base = build(n, args.dim)
        for every in (None, args.every):
            say(f"adding {args.add:,} to {n:,} ({'save at the end' if every is None else f'save every {every:g} s'})")
            rows.append(run(base, n, args.add, args.dim, every))
            print(rows[-1], flush=True)
    info = machine()
    print(table(rows, list(rows[0]), title=f"\nAdding {args.add:,} items ({info['cpu']}, {info['cores']} cores)"))
    write_json(args.json, {"benchmark": "growth", "machine": info, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
