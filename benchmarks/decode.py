"""Per-photo cost of the index run's decode step, one thread: read, hash, decode (draft), EXIF, resize,
crop, normalise - exactly what each decode worker does per file (`mmsearch.ingest.images.decode_one`).

    python -m benchmarks.decode [--sizes 640x480,1600x1200,4000x3000] [--against GIT_REF] [--rounds 2] [--json FILE]

With --against, the same step of mmsearch as of GIT_REF runs in its own process, alternating round
by round with this checkout, and the table shows both and the ratio. One thread's figure times the
decode workers gives the decode ceiling of an index run (threads scale: the step holds the GIL for
about 1% of its time; 2 threads give 2.0x on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(sizes: list[tuple[int, int]], bundle: Path, photos: dict[str, list[str]]) -> dict[str, float]:
    """ms per photo for each size, with the mmsearch importable from sys.path (this checkout or REF's)."""
    from mmsearch.bundle import load_bundle
    try:
        from mmsearch.ingest.images import decode_one as _decode_one
    except ImportError:  # a commit from before the ingest package
        from mmsearch.ingest import _decode_one  # type: ignore[attr-defined,no-redef]
    from mmsearch.scanner import FoundFile

    spec = load_bundle(bundle).image_spec
    out = {}
    for w, h in sizes:
        key = f"{w}x{h}"
        tasks = [(1, FoundFile(p, os.path.getsize(p), 0, "image"), None) for p in photos[key]]
        for t in tasks[:4]:
            _decode_one(t, spec)  # page cache, lazy imports
        reps = max(1, round(2.0 / (w * h / 1e6 * 0.01)) // len(tasks))  # ~2 s of work per size
        t0 = time.perf_counter()
        for _ in range(reps):
            for t in tasks:
                _decode_one(t, spec)
        out[key] = (time.perf_counter() - t0) / (reps * len(tasks)) * 1000
    return out


def _child(src: str, payload: str) -> dict[str, float]:
    # mmsearch from `src`; this file's measure() loaded by path (REF's tree may not have it).
    code = (f"import sys, json, importlib.util; sys.path.insert(0, {src!r})\n"
            f"spec = importlib.util.spec_from_file_location('decode_bench', {__file__!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); measure = mod.measure\n"
            "a = json.loads(sys.argv[1]); print(json.dumps(measure([tuple(s) for s in a['sizes']], a['bundle'], a['photos'])))")
    done = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x480,1600x1200,4000x3000")
    parser.add_argument("--n", type=int, default=24, help="photos per size")
    parser.add_argument("--against", metavar="GIT_REF", help="also time mmsearch as of this commit, alternating")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from benchmarks.common import BENCH_DIR, checkout, machine, photo_collection, say, table, vitb32_bundle, write_json

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    photos = {f"{w}x{h}": [str(p) for p in photo_collection(BENCH_DIR / "decode-photos", args.n, w, h)] for w, h in sizes}
    payload = json.dumps({"sizes": sizes, "bundle": str(vitb32_bundle()), "photos": photos})
    sides = {"now": str(ROOT)}
    if args.against:
        sides = {args.against: str(checkout(args.against)), "now": str(ROOT)}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in sides}
    for r in range(args.rounds):
        for name, src in sides.items():
            say(f"round {r + 1}: {name}")
            for key, ms in _child(src, payload).items():
                results[name].setdefault(key, []).append(ms)
    rows = []
    for w, h in sizes:
        key = f"{w}x{h}"
        row = {"photo": key, **{f"{name} ms": round(statistics.median(results[name][key]), 2) for name in sides}}
        if args.against:
            row["ratio"] = round(statistics.median(results[args.against][key]) / statistics.median(results["now"][key]), 2)
        row["now images/s per thread"] = round(1000 / statistics.median(results["now"][key]), 1)
        rows.append(row)
    info = machine()
    print(table(rows, list(rows[0]), title=f"\nDecode step per photo, one thread ({info['cpu']}), median of {args.rounds} rounds"))
    write_json(args.json, {"benchmark": "decode", "machine": info, "rows": rows, "raw": results, "args": vars(args)})


if __name__ == "__main__":
    main()
