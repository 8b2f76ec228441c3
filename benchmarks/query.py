"""Query latency: a cold `mmsearch query "red car"` as a fresh process on a 100,000-item index, warm
library queries, and a PyTorch + transformers cold query beside them.

    python -m benchmarks.query [--n 100000] [--runs 7] [--warm 200] [--json FILE] [--device cpu|cuda]
                               [--against GIT_REF]
    python -m benchmarks.query --unsaved [--n 128000] [--runs 7] [--json FILE]

The index is built once (cached under .work/bench/) through the catalog and VectorStore APIs: one file
row and one item per vector, clustered unit vectors shaped like CLIP embeddings (512 dims), the ANN
file saved and stamped as an index run leaves it. The model is the ViT-B/32-sized random CLIP bundle
(benchmarks/common.py).

Rows:
- `mmsearch query` cold: the real console script in a fresh process (page cache warm, as after any
  earlier run), median of `--runs` after one discarded run. Bar: <= 0.25 s on 100k items.
- the interpreter floor (`python -c pass`) and the imports it pays for, to show what bounds the figure.
- baseline cold: a fresh process doing what a PyTorch tool does: import torch and transformers, load
  the CLIP model, encode the text, read the stored vectors from SQLite and rank them with numpy.
- --unsaved: the cold query on an index whose n vectors are all committed and none saved (a run
  killed before its save: the last save is empty, the vectors wait in the tail the run appended,
  vectors-N.tail), beside the same n vectors saved, and beside the unsaved index with its tail
  deleted (what a query read before the tail existed: every vector from the catalog, row by row);
  alternating run by run. Bar: unsaved <= 1.5x saved.
- warm: one `Index` kept open, `search()` called repeatedly with varied texts: p50/p95. The first
  query in a process ranks by an exact scan of the memory-mapped ANN file; later ones on a large
  index use the HNSW graph (loaded once); both are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from benchmarks.common import BENCH_DIR, machine, say, table, vitb32_bundle, vitb32_checkpoint, write_json

QUERY = "red car"
WARM_TEXTS = [
    "red car", "a dog on the beach", "sunset over the mountains", "birthday cake with candles",
    "an old wooden boat", "two cats sleeping on a sofa", "snow in the city at night", "a bowl of fruit",
]


def clustered(n: int, dim: int, clusters: int = 200, spread: float = 1.0, seed: int = 0) -> np.ndarray:
    from benchmarks.ann import clustered as _clustered

    return _clustered(n, dim, clusters, spread, seed)


def build_index_with(src: Path, folder: Path, n: int, bundle: Path) -> Path:
    """build_index run by the mmsearch of another checkout (its catalog and vector files are its own)."""
    code = (f"import sys; sys.path.insert(0, {str(src)!r}); import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('query_bench', {__file__!r})\n"
            "mod = importlib.util.module_from_spec(spec); sys.modules['query_bench'] = mod; spec.loader.exec_module(mod)\n"
            f"mod.build_index(mod.Path({str(folder)!r}), {n}, mod.Path({str(bundle)!r}))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # for `benchmarks`
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return folder


def build_index(folder: Path, n: int, bundle: Path) -> Path:
    """An index of n image items (file rows + vectors), written through the engine's own APIs (those of
    the mmsearch imported: this checkout's, or another's through build_index_with)."""
    import mmsearch.vectors
    from mmsearch.api import Index
    from mmsearch.catalog import Catalog

    import hashlib

    layout = "store" if hasattr(mmsearch.vectors, "VectorStore") else "single-file"
    done = folder / "built.txt"
    key = f"{n} {layout} {bundle.resolve()} {hashlib.sha256((bundle / 'manifest.json').read_bytes()).hexdigest()}"
    if done.exists() and done.read_text().strip() == key:
        return folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    say(f"building a {n}-item index in {folder}")
    Index(folder, model=bundle).close()  # records the model in the catalog, as a first index run does
    catalog = Catalog(folder)
    dim = 512
    vecs = clustered(n, dim)
    root = "/bench/photos"
    root_id = catalog.add_root(root)
    ids = np.empty(n, np.int64)
    t = time.perf_counter()
    base_ns = 1_700_000_000 * 10**9
    for lo in range(0, n, 10_000):
        with catalog.write() as conn:
            for i in range(lo, min(n, lo + 10_000)):
                fid, _ = catalog.put_file(
                    conn, path=f"{root}/{i // 1000:03d}/IMG_{i:06d}.jpg", root_id=root_id, size=3_500_000 + i,
                    mtime_ns=base_ns + i * 60 * 10**9, content_hash=f"{i:064x}", kind="image",
                    media_type="image/jpeg", width=4000, height=3000,
                )
                ids[i] = catalog.add_items(conn, fid, "image", vecs[i : i + 1])[0]
    say(f"catalog: {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    if layout == "store":
        store = mmsearch.vectors.VectorStore(folder, dim, catalog)
        store.begin_writing()  # the catalog's vectors go into the graph here, as a run's open does
        store.save()
        store.end_writing()
    else:  # the layout before the vector store: one hnswlib file and its stamp
        index = mmsearch.vectors.VectorIndex(folder / "vectors.hnsw", dim)
        for lo in range(0, n, 20_000):
            index.add(ids[lo : lo + 20_000], vecs[lo : lo + 20_000])
        index.save()
        mmsearch.vectors.write_ann_stamp(folder / "vectors.hnsw", catalog.generation(), len(index))
    catalog.close()
    say(f"ANN graph: {time.perf_counter() - t:.1f}s")
    done.write_text(key)
    return folder


def build_unsaved(folder: Path, n: int, bundle: Path) -> Path:
    """An index as a run killed before its save leaves it: n image items committed batch by batch, each
    batch applied to the store (which appends it to the tail), the last save empty."""
    import hashlib
    import shutil

    import mmsearch.vectors
    from mmsearch.api import Index
    from mmsearch.catalog import Catalog

    done = folder / "built.txt"
    key = f"unsaved {n} {hashlib.sha256((bundle / 'manifest.json').read_bytes()).hexdigest()}"
    if done.exists() and done.read_text().strip() == key:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    say(f"building an index of {n} unsaved vectors in {folder}")
    Index(folder, model=bundle).close()
    catalog = Catalog(folder)
    dim = 512
    store = mmsearch.vectors.VectorStore(folder, dim, catalog)
    store.begin_writing()
    store.save()  # empty: the save before the run
    vecs = clustered(n, dim)
    root_id = catalog.add_root("/bench/photos")
    base_ns = 1_700_000_000 * 10**9
    t = time.perf_counter()
    for lo in range(0, n, 1024):
        with catalog.write() as conn:
            ids = []
            for i in range(lo, min(n, lo + 1024)):
                fid, _ = catalog.put_file(
                    conn, path=f"/bench/photos/{i // 1000:03d}/IMG_{i:06d}.jpg", root_id=root_id, size=3_500_000 + i,
                    mtime_ns=base_ns + i * 60 * 10**9, content_hash=f"{i:064x}", kind="image",
                    media_type="image/jpeg", width=4000, height=3000)
                ids += catalog.add_items(conn, fid, "image", vecs[i : i + 1])
        store.add(np.asarray(ids, np.int64), vecs[lo : lo + len(ids)])
    store.end_writing()  # no save: the run was killed
    catalog.close()
    say(f"committed {n} vectors in {time.perf_counter() - t:.1f}s")
    done.write_text(key)
    return folder


def unsaved_rows(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Cold queries on the saved and the unsaved index of the same n vectors, alternating."""
    import compileall
    import shutil

    import mmsearch

    bundle = vitb32_bundle()
    saved = build_index(BENCH_DIR / f"query-index-{args.n}", args.n, bundle)
    unsaved = build_unsaved(BENCH_DIR / f"query-unsaved-{args.n}", args.n, bundle)
    no_tail = BENCH_DIR / f"query-unsaved-{args.n}-no-tail"
    shutil.rmtree(no_tail, ignore_errors=True)
    shutil.copytree(unsaved, no_tail)
    for tail in no_tail.glob("vectors-*.tail"):
        tail.unlink()
    compileall.compile_dir(Path(mmsearch.__file__).parent, quiet=1)
    script = Path(sys.executable).parent / "mmsearch"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "mmsearch"]
    sides = {"saved": saved, "committed, not saved (the tail)": unsaved,
             "committed, not saved, tail deleted (read from the catalog)": no_tail}
    times: dict[str, list[float]] = {name: [] for name in sides}
    say("cold: saved vs unsaved, alternating")
    for i in range(args.runs + 1):
        for name, folder in sides.items():
            t = time.perf_counter()
            done = subprocess.run([*launcher, "query", QUERY, "--index", str(folder), "--device", args.device,
                                   "--json"], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            if i:  # the first round warms the page cache
                times[name].append(time.perf_counter() - t)
    rows = [{"what": f'mmsearch query "{QUERY}", {args.n:,} vectors {name}', "median_s": statistics.median(t),
             "min_s": min(t), "max_s": max(t), "runs": len(t)} for name, t in times.items()]
    ratio = statistics.median(times["committed, not saved (the tail)"]) / statistics.median(times["saved"])
    return rows, {"unsaved_over_saved": ratio, "bar": 1.5, "bar_met": ratio <= 1.5}


def _time_process(cmd: list[str], runs: int, env: dict[str, str] | None = None, check: bool = True) -> list[float]:
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        if i:  # the first run only warms the page cache
            times.append(elapsed)
    return times


BASELINE = textwrap.dedent(
    """
    import sqlite3, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import torch
    from transformers import CLIPModel, CLIPTokenizer
    t1 = time.perf_counter()
    ckpt, db, device = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.set_grad_enabled(False)
    model = CLIPModel.from_pretrained(ckpt).eval().to(device)
    tok = CLIPTokenizer.from_pretrained(ckpt)
    t2 = time.perf_counter()
    q = model.get_text_features(**tok(["red car"], return_tensors="pt").to(device))
    q = getattr(q, "pooler_output", q)
    q = torch.nn.functional.normalize(q, dim=-1)[0].float().cpu().numpy()
    t3 = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT item_id, vector FROM vectors").fetchall()
    ids = np.array([r[0] for r in rows]); mat = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)
    top = np.argsort(-(mat @ q))[:10]
    paths = conn.execute(f"SELECT files.path FROM items JOIN files ON files.id = items.file_id WHERE items.id IN ({','.join(str(int(ids[i])) for i in top)})").fetchall()
    t4 = time.perf_counter()
    print(f"{t1 - t0:.4f} {t2 - t1:.4f} {t3 - t2:.4f} {t4 - t3:.4f}")
    """
)


def cold_rows(index: Path, args: argparse.Namespace) -> tuple[list[dict], dict]:
    py = sys.executable
    script = Path(py).parent / "mmsearch"  # the console script, as a user runs it
    # mmsearch importable but not installed (the GPU machine's setup): python -m mmsearch.
    launcher = [str(script)] if script.exists() else [py, "-m", "mmsearch"]
    env = dict(os.environ)
    rows: list[dict] = []

    def add(name: str, cmd: list[str], runs: int, extra_env: dict[str, str] | None = None, **extra) -> list[float]:
        say(f"cold: {name}")
        times = _time_process(cmd, runs, {**env, **(extra_env or {})})
        rows.append({"what": name, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                     "runs": len(times), **extra})
        return times

    # As after `pip install` (which byte-compiles what it installs): an editable checkout, or a shell
    # with PYTHONDONTWRITEBYTECODE set, would otherwise recompile mmsearch on every run (~17 ms here).
    import compileall

    import mmsearch

    compileall.compile_dir(Path(mmsearch.__file__).parent, quiet=1)
    query_cmd = [*launcher, "query", QUERY, "--index", str(index), "--device", args.device]
    add("python -c pass (interpreter floor)", [py, "-c", "pass"], args.runs)
    add("python -c 'import numpy'", [py, "-c", "import numpy"], args.runs)
    add("python -c 'import numpy, onnxruntime'", [py, "-c", "import numpy, onnxruntime"], args.runs)
    add("python -c 'import typer' (the CLI framework)", [py, "-c", "import typer"], args.runs)
    add("python -c 'import mmsearch.api, mmsearch.encoder, mmsearch.search' (what a query imports)",
        [py, "-c", "import mmsearch.api, mmsearch.encoder, mmsearch.search"], args.runs)
    mm = add(f'mmsearch query "{QUERY}" (hybrid, default)', query_cmd, args.runs, bar_s=0.25)
    add(f'mmsearch query "{QUERY}" --type image', query_cmd + ["--type", "image"], args.runs)
    from benchmarks.common import photo_collection

    photo = photo_collection(BENCH_DIR / "query-photo", 1, 4000, 3000)[0]
    add("mmsearch query --image (a 4000x3000 JPEG)", [*launcher, "query", "--image", str(photo), "--index", str(index),
                                                      "--device", args.device], args.runs)
    add(f'mmsearch query "{QUERY}", no optimised-graph cache', query_cmd, args.runs,
        extra_env={"MMSEARCH_NO_ORT_CACHE": "1"})
    if args.against:
        rows.extend(against_ref(args.against, index, args))
    add("python -c 'import torch' (baseline's first step)", [py, "-c", "import torch"], args.baseline_runs)

    # The baseline: a PyTorch tool's cold query, phases timed inside the process.
    ckpt = str(vitb32_checkpoint())
    script = BENCH_DIR / "baseline_query.py"
    script.write_text(BASELINE)
    say("cold: baseline (torch + transformers CLIPModel + SQLite vectors + numpy)")
    walls, phases = [], []
    for i in range(args.baseline_runs + 1):
        t = time.perf_counter()
        done = subprocess.run([py, str(script), ckpt, str(index / "catalog.db"), args.device], capture_output=True,
                              text=True, env=env)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        if i:
            walls.append(wall)
            phases.append([float(x) for x in done.stdout.split()])
    ph = np.median(np.array(phases), axis=0)
    base = statistics.median(walls)
    rows.append({"what": "baseline: PyTorch + transformers cold query", "median_s": base, "min_s": min(walls),
                 "max_s": max(walls), "runs": len(walls),
                 "detail": f"imports {ph[0]:.2f}s, load model {ph[1]:.2f}s, encode {ph[2]:.3f}s, SQLite vectors + rank {ph[3]:.2f}s"})
    summary = {"cold_median_s": statistics.median(mm), "baseline_median_s": base,
               "speedup": base / statistics.median(mm), "bar_s": 0.25, "bar_met": statistics.median(mm) <= 0.25}
    return rows, summary


def against_ref(ref: str, index: Path, args: argparse.Namespace) -> list[dict]:
    """The same cold query with mmsearch as of git REF and as checked out, alternating run by run (so
    both see the same machine load); each side is launched through its own console-script entry."""
    import compileall
    import tomllib

    from benchmarks.common import checkout

    root = Path(__file__).resolve().parent.parent
    tree = checkout(ref)
    compileall.compile_dir(tree / "mmsearch", quiet=1)

    def launcher(src: Path) -> str:
        target = tomllib.loads((src / "pyproject.toml").read_text())["project"]["scripts"]["mmsearch"]
        module, func = target.split(":")
        return (f"import sys; sys.path.insert(0, {str(src)!r}); sys.argv = ['mmsearch', *sys.argv[1:]]\n"
                f"from {module} import {func}; {func}()")

    # Each side queries an index its own code wrote (catalog schemas and vector files differ by version).
    ref_index = build_index_with(tree, BENCH_DIR / f"query-index-{args.n}-{tree.name}", args.n, vitb32_bundle())

    def argv(folder: Path) -> list[str]:
        return ["query", QUERY, "--index", str(folder), "--device", args.device]

    sides = {ref: [sys.executable, "-c", launcher(tree), *argv(ref_index)],
             "now": [sys.executable, "-c", launcher(root), *argv(index)]}
    say(f"cold: {ref} vs now, alternating")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.runs + 1):
        for name, cmd in sides.items():
            t = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
            if i:
                times[name].append(time.perf_counter() - t)
    return [{"what": f'mmsearch query "{QUERY}" as of {name} (alternating)', "median_s": statistics.median(t),
             "min_s": min(t), "max_s": max(t), "runs": len(t)} for name, t in times.items()]


def warm_rows(index: Path, args: argparse.Namespace) -> list[dict]:
    from mmsearch import Index

    rows = []
    t = time.perf_counter()
    idx = Index(index, readonly=True, device=args.device)
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    idx.text_encoder()
    enc_s = time.perf_counter() - t
    t = time.perf_counter()
    first = idx.search(QUERY, k=10)
    first_s = time.perf_counter() - t
    rows.append({"what": "library: Index() open", "p50_ms": open_s * 1000})
    rows.append({"what": "library: text tower session (read-only index: no weight prepacking)", "p50_ms": enc_s * 1000})
    from mmsearch.encoder import TextEncoder

    t = time.perf_counter()
    TextEncoder(idx.bundle, device=args.device)
    rows.append({"what": "library: text tower session, prepacked (an index that also writes)",
                 "p50_ms": (time.perf_counter() - t) * 1000})
    rows.append({"what": "library: first search (exact scan of the mmap'd ANN file)", "p50_ms": first_s * 1000,
                 "results": len(first)})

    def series(name: str, **kw) -> None:
        times = []
        for i in range(args.warm):
            text = WARM_TEXTS[i % len(WARM_TEXTS)] + ("" if i < len(WARM_TEXTS) else f" {i}")
            t = time.perf_counter()
            idx.search(text, k=10, **kw)
            times.append(time.perf_counter() - t)
        ms = np.array(times[1:]) * 1000
        rows.append({"what": name, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                     "queries": len(ms)})

    series("library warm: text query, hybrid (encode + ANN + FTS + rows)")
    series("library warm: text query, --type image", type="image")
    series("library warm: text query, vector mode", mode="vector")
    enc = idx.text_encoder()
    times = []
    for i in range(args.warm):
        t = time.perf_counter()
        enc.encode([WARM_TEXTS[i % len(WARM_TEXTS)]])
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    rows.append({"what": f"library warm: text tower alone ({enc.variant}, real token count)",
                 "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "queries": len(ms)})
    idx.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="items in the index")
    parser.add_argument("--runs", type=int, default=7, help="cold runs of each command (after one discarded)")
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=200, help="warm library queries per series")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--against", metavar="GIT_REF",
                        help="also time the cold query of mmsearch as of this commit, alternating with this checkout")
    parser.add_argument("--unsaved", action="store_true",
                        help="only the cold query with --n committed but unsaved vectors against the saved case")
    args = parser.parse_args()
    if args.unsaved:
        info = machine()
        rows, summary = unsaved_rows(args)
        print(table(rows, ["what", "median_s", "min_s", "max_s", "runs"],
                    title=f"\nCold queries, committed vs saved vectors ({info['cpu']}, {info['cores']} cores)"))
        print(f"\nunsaved / saved: {summary['unsaved_over_saved']:.2f}x; bar <= 1.5x: "
              f"{'met' if summary['bar_met'] else 'NOT met'}")
        write_json(args.json, {"benchmark": "query --unsaved", "machine": info, "n": args.n, "cold": rows,
                               "summary": summary, "args": vars(args)})
        return

    bundle = vitb32_bundle()
    index = build_index(BENCH_DIR / f"query-index-{args.n}", args.n, bundle)
    info = machine()
    cold, summary = cold_rows(index, args)
    print(table(cold, ["what", "median_s", "min_s", "max_s", "runs", "detail"],
                title=f"\nCold queries, fresh process, {args.n:,} items ({info['cpu']}, {info['cores']} cores)"))
    print(f"\nmmsearch cold query: {summary['cold_median_s']:.3f} s median; baseline {summary['baseline_median_s']:.2f} s;"
          f" {summary['speedup']:.1f}x faster; bar <= 0.25 s: {'met' if summary['bar_met'] else 'NOT met'}")
    warm = warm_rows(index, args)
    print(table(warm, ["what", "p50_ms", "p95_ms", "queries", "results"], title="\nWarm library queries"))
    write_json(args.json, {"benchmark": "query", "machine": info, "n": args.n, "cold": cold, "warm": warm,
                           "summary": summary, "args": vars(args)})


if __name__ == "__main__":
    main()
