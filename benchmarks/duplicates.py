"""Duplicates found by `mmsearch duplicates` on generated variants: precision and recall of the groups.

    python -m benchmarks.duplicates [--n 300] [--variants 100] [--model tests/fixtures/toyclip]
                                    [--thresholds 0.9,0.93,0.95,0.97,0.98] [--json FILE]

1. Draws a toy world of --n pictures (benchmarks.toyworld, a seed of its own), all different scenes.
2. For the first --variants of them writes four variants beside the others: resized to 50%, JPEG
   quality 60, cropped 5% on each side, and re-encoded as PNG; and one exact copy of every tenth.
3. Indexes the folder with the model, then for each threshold groups the pictures
   (mmsearch.duplicates.find_duplicates over the index) and scores the pairs: precision = the share
   of pairs put in one group that come from one picture, recall = the share of pairs from one
   picture that share a group. Exact copies must come out as one group at every threshold.

Bars at the default threshold: precision >= 0.95, recall >= 0.90.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks import toyworld as tw

ROOT = Path(__file__).resolve().parents[1]
BARS = {"precision": 0.95, "recall": 0.90}


def variants(src: Path, out: Path) -> list[Path]:
    img = Image.open(src).convert("RGB")
    w, h = img.size
    stem = out / src.stem
    made = [stem.with_name(f"{src.stem}-half.jpg"), stem.with_name(f"{src.stem}-q60.jpg"),
            stem.with_name(f"{src.stem}-crop.jpg"), stem.with_name(f"{src.stem}-png.png")]
    img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS).save(made[0], quality=90)
    img.save(made[1], quality=60)
    dx, dy = int(w * 0.05), int(h * 0.05)
    img.crop((dx, dy, w - dx, h - dy)).save(made[2], quality=90)
    img.save(made[3])
    return made


def build(work: Path, n: int, n_variants: int, seed: int) -> dict[str, str]:
    """The folder of pictures, and for each picture the original it comes from."""
    world = work / "world"
    tw.main(["--out", str(world), "--n", str(n), "--seed", str(seed), "--no-docs", "--max-size", "1024"])
    pictures = sorted((world / "images").iterdir())
    origin = {str(p): str(p) for p in pictures}
    extra = work / "world" / "variants"
    extra.mkdir()
    for i, p in enumerate(pictures[:n_variants]):
        for v in variants(p, extra):
            origin[str(v)] = str(p)
        if i % 10 == 0:
            copy = extra / f"{p.stem}-copy{p.suffix}"
            shutil.copy(p, copy)
            origin[str(copy)] = str(p)
    return origin


def score(groups, origin: dict[str, str]) -> dict[str, float]:
    truth = {frozenset(pair) for pair in itertools.combinations(origin, 2) if origin[pair[0]] == origin[pair[1]]}
    found = {frozenset(pair) for g in groups for pair in itertools.combinations([f.path for f in g.files], 2)}
    right = len(found & truth)
    return {"pairs_true": len(truth), "pairs_found": len(found),
            "precision": right / len(found) if found else 1.0, "recall": right / len(truth) if truth else 1.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.duplicates", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--variants", type=int, default=100)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--model", type=Path, default=ROOT / "tests" / "fixtures" / "toyclip")
    ap.add_argument("--thresholds", default="0.9,0.93,0.95,0.97,0.98")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from mmsearch import Index
    from mmsearch.duplicates import DEFAULT_THRESHOLD, find_duplicates

    work = Path(tempfile.mkdtemp(prefix="mmsearch-dups-"))
    try:
        origin = build(work, args.n, args.variants, args.seed)
        with Index(work / "index", model=args.model) as idx:
            idx.index([work / "world" / "images", work / "world" / "variants"], ocr=False)
            rows = []
            for threshold in sorted({float(t) for t in args.thresholds.split(",")} | {DEFAULT_THRESHOLD}):
                start = time.perf_counter()
                groups = find_duplicates(idx.catalog, threshold=threshold)
                seconds = time.perf_counter() - start
                rows.append({"threshold": threshold, **score(groups, origin), "groups": len(groups),
                             "seconds": round(seconds, 3)})
        print(f"{len(origin)} pictures ({args.n} scenes, {args.variants} with 4 variants, every tenth copied), "
              f"model {args.model.name}")
        print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'groups':>7} {'pairs':>7} {'seconds':>8}")
        for r in rows:
            mark = "  (default)" if r["threshold"] == DEFAULT_THRESHOLD else ""
            print(f"{r['threshold']:>9.3f} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['groups']:>7} "
                  f"{r['pairs_found']:>7} {r['seconds']:>8.3f}{mark}")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "n": args.n, "variants": args.variants,
                                                   "model": str(args.model)}, indent=2))
        default = next(r for r in rows if r["threshold"] == DEFAULT_THRESHOLD)
        return 0 if all(default[k] >= bar for k, bar in BARS.items()) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
