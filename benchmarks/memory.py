"""Peak memory of an index run as the collection grows: `mmsearch index` over 2,000 and 20,000 photos.

    python -m benchmarks.memory [--counts 2000,20000] [--model tiny|vit-b-32] [--size 640x480] [--json FILE]

Photos: 640x480 JPEGs, each one distinct (a few base pictures from benchmarks/common.py, each file
with its own random patch drawn on it, so every content hash differs), written once under
.work/bench/memory-photos/. Each count is a fresh index, indexed twice (a first run, then one where
nothing changed, the everyday case), each as `python -m mmsearch index`; peak RSS is GNU time's %M
for that process.

The pass condition: the peak may grow with the collection only by what the collection really needs
in memory, i.e. the vectors and graph of the ANN index (4 * dim + ~2 * M * 4 bytes per item) plus the
scan's per-file records (a path and a stat each); not by decoded images or pending batches, which the
bounded decode queue keeps constant.

`--model tiny` (the default for the 20,000 run on a 2-core machine) uses the 32-px tiny CLIP: the
pipeline, queue and catalog are the same, the encoder is cheap, so 20,000 files take minutes, not
the ~15 minutes ViT-B/32 needs there. `--model vit-b-32` uses the ViT-B/32-sized bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import BENCH_DIR, machine, peak_rss_of, say, table, vitb32_bundle, write_json


def tiny_bundle() -> Path:
    out = BENCH_DIR / "tiny-clip" / "bundle"
    if (out / "manifest.json").exists():
        return out
    from mmsearch_export import export_bundle
    from mmsearch_export.tiny import make_clip_checkpoint

    ckpt = make_clip_checkpoint(BENCH_DIR / "tiny-clip" / "checkpoint", preset="tiny")
    export_bundle(ckpt, out, name="tiny-clip", overwrite=True, progress=say)
    return out


def _write_chunk(args: tuple[str, int, int, int, int]) -> None:
    folder, lo, hi, width, height = args
    from PIL import Image, ImageDraw

    from benchmarks.common import realistic_photo

    bases = [realistic_photo(seed, width, height) for seed in range(8)]
    rng = np.random.default_rng(lo)
    for i in range(lo, hi):
        img = Image.fromarray(bases[i % len(bases)])
        draw = ImageDraw.Draw(img)
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        draw.rectangle((x, y, x + 40, y + 40), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        sub = Path(folder) / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        img.save(sub / f"p{i:06d}.jpg", quality=88)


def photos(count: int, width: int, height: int) -> Path:
    folder = BENCH_DIR / "memory-photos" / f"{width}x{height}-{count}"
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    say(f"writing {count} photos of {width}x{height} to {folder}")
    step = 500
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_chunk, [(str(folder), lo, min(count, lo + step), width, height)
                                     for lo in range(0, count, step)]))
    stamp.write_text(str(count))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="2000,20000")
    parser.add_argument("--model", default="tiny", choices=["tiny", "vit-b-32"])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    bundle = tiny_bundle() if args.model == "tiny" else vitb32_bundle()
    manifest = json.loads((bundle / "manifest.json").read_text())
    dim = int(manifest["embedding_dim"])
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        folder = photos(count, width, height)
        index = BENCH_DIR / f"memory-index-{count}"
        shutil.rmtree(index, ignore_errors=True)
        cmd = [sys.executable, "-m", "mmsearch", "index", str(folder), "--index", str(index),
               "--model", str(bundle), "--device", args.device, "--json"]
        for run in ("first", "again"):  # a first run, then one with nothing changed (the everyday case)
            say(f"indexing {count} photos ({args.model}), {run} run")
            done, wall, rss = peak_rss_of(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            report = json.loads(done.stdout)
            ann_mb = sum(p.stat().st_size for p in index.glob("vectors-*.hnsw")) / 2**20
            rows.append({"photos": count, "run": run, "model": args.model, "dim": dim, "encoded": report["encoded_items"],
                         "unchanged": report["unchanged"], "errors": len(report["errors"]), "seconds": wall,
                         "images_per_s": report["encoded_items"] / wall, "peak_rss_mb": rss / 2**20 if rss else None,
                         "ann_file_mb": ann_mb})
        shutil.rmtree(index, ignore_errors=True)
    for r in rows:
        first = next(f for f in rows if f["run"] == r["run"])
        if r is not first and r["peak_rss_mb"] and first["peak_rss_mb"]:
            grew = r["peak_rss_mb"] - first["peak_rss_mb"]
            extra = r["photos"] - first["photos"]
            r["growth_mb"] = grew
            r["growth_per_file_bytes"] = grew * 2**20 / extra
            r["ann_growth_mb"] = r["ann_file_mb"] - first["ann_file_mb"]
    info = machine()
    print(table(rows, ["photos", "run", "model", "dim", "encoded", "unchanged", "errors", "seconds", "peak_rss_mb",
                       "ann_file_mb", "growth_mb", "ann_growth_mb", "growth_per_file_bytes"],
                title=f"\nPeak RSS of `mmsearch index`, {args.size} JPEGs ({info['cpu']}, {info['cores']} cores)"))
    write_json(args.json, {"benchmark": "memory", "machine": info, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
