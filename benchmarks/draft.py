"""JPEG decoding at reduced size: Pillow full vs Pillow draft vs simplejpeg, on realistic photos.

    python -m benchmarks.draft [--n 16] [--sizes 4000x3000,1600x1200] [--workers 2] [--json FILE]

For each photo size and decode method: milliseconds per image on one thread (read bytes -> the
tower's float32 input: decode, resize, center crop, normalise), and how close the result is to the
full decode: the mean absolute difference of the normalised input, and the cosine between the image
embeddings (the ViT-B/32-sized bundle's fp32 image tower, random weights) of the two.

Methods (the target is the manifest's 224 px short side):
- pil-full: Image.open + load at full size (what transformers-based tools do), then resize.
- pil-draft-xF: Pillow's `draft()` (libjpeg DCT scaling by 1/2, 1/4, 1/8) to a short side >= F x 224.
- sjpeg-xF[-fast]: simplejpeg.decode_jpeg(min_height/min_width = F x 224) (libjpeg-turbo scaling), with
  fastdct and fastupsample when -fast.
- engine: mmsearch.preprocess.decode_image as shipped (whatever it picks).

Then the decode pool: images/s for `--workers` threads vs processes vs one thread, with the
engine's decode (bytes in, float32 tensor out; processes return it pickled, as a pool would).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import BENCH_DIR, machine, photo_collection, say, table, vitb32_bundle, write_json


def _spec():
    from mmsearch.bundle import load_bundle

    return load_bundle(vitb32_bundle()).image_spec


def pil(data: bytes, spec, factor: int | None) -> np.ndarray:
    from mmsearch.preprocess import _short_side_target, preprocess_image

    img = Image.open(io.BytesIO(data))
    if factor:
        target = factor * _short_side_target(spec)
        w, h = img.size
        scale = target / min(w, h)
        img.draft("RGB", (int(w * scale), int(h * scale)))
    img.load()
    return preprocess_image(img, spec)


def sjpeg(data: bytes, spec, factor: int, fast: bool) -> np.ndarray:
    import simplejpeg

    from mmsearch.preprocess import _short_side_target, preprocess_image

    target = factor * _short_side_target(spec)
    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    scale = target / min(w, h)
    arr = simplejpeg.decode_jpeg(data, "RGB", fastdct=fast, fastupsample=fast, min_height=int(h * scale),
                                 min_width=int(w * scale))
    return preprocess_image(Image.fromarray(arr, "RGB"), spec)


def engine(data: bytes, spec) -> np.ndarray:
    from mmsearch.preprocess import decode_image

    return decode_image(io.BytesIO(data), spec).pixels


METHODS = {
    "pil-full": lambda d, s: pil(d, s, None),
    "pil-draft-x2": lambda d, s: pil(d, s, 2),
    "pil-draft-x1": lambda d, s: pil(d, s, 1),
    "sjpeg-x2": lambda d, s: sjpeg(d, s, 2, False),
    "sjpeg-x2-fast": lambda d, s: sjpeg(d, s, 2, True),
    "sjpeg-x1-fast": lambda d, s: sjpeg(d, s, 1, True),
    "engine": engine,
}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- the pool ------------------------------------------------------------------------------------

_POOL_SPEC = None


def _init(spec) -> None:
    global _POOL_SPEC
    _POOL_SPEC = spec


def _pool_decode(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    return engine(data, _POOL_SPEC)


def pool_rate(kind: str, paths: list[Path], spec, workers: int) -> float:
    files = [str(p) for p in paths]
    if kind == "processes":
        ctx = dict(mp_context=__import__("multiprocessing").get_context("forkserver"))
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(spec,), **ctx) as pool:
            list(pool.map(_pool_decode, files[:workers]))  # start the workers before timing
            t = time.perf_counter()
            for _ in pool.map(_pool_decode, files, chunksize=1):
                pass
            return len(files) / (time.perf_counter() - t)
    _init(spec)
    with ThreadPoolExecutor(workers if kind == "threads" else 1) as pool:
        t = time.perf_counter()
        for _ in pool.map(_pool_decode, files):
            pass
        return len(files) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="photos per size")
    parser.add_argument("--sizes", default="4000x3000,1600x1200")
    parser.add_argument("--repeat", type=int, default=2, help="timing passes over the photos (best kept)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-embed", action="store_true", help="skip the embedding cosines")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    spec = _spec()
    encoder = None
    if not args.no_embed:
        from mmsearch.bundle import load_bundle
        from mmsearch.encoder import ImageEncoder

        encoder = ImageEncoder(load_bundle(vitb32_bundle()), variant="fp32", device="cpu")
    rows, pool_rows = [], []
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        paths = photo_collection(BENCH_DIR / "photos" / size, args.n, w, h)
        blobs = [p.read_bytes() for p in paths]
        mb = sum(map(len, blobs)) / len(blobs) / 1e6
        outputs: dict[str, np.ndarray] = {}
        best = {name: float("inf") for name in METHODS}
        for name, fn in METHODS.items():  # a warm-up pass (first-call costs, page cache)
            fn(blobs[0], spec)
        for _ in range(args.repeat):  # passes interleave the methods, so load from others hits all alike
            for name, fn in METHODS.items():
                t = time.perf_counter()
                out = [fn(b, spec) for b in blobs]
                best[name] = min(best[name], (time.perf_counter() - t) / len(blobs))
                outputs[name] = np.stack(out)
        for name in METHODS:
            say(f"{size} {name}: {best[name] * 1000:.1f} ms/image")
            rows.append({"size": size, "file_mb": round(mb, 2), "method": name, "ms_per_image": best[name] * 1000})
        ref = outputs["pil-full"]
        ref_emb = None
        if encoder is not None:
            ref_emb = np.concatenate([encoder.encode(ref[i : i + 8]) for i in range(0, len(ref), 8)])
        for row in rows:
            if row["size"] != size:
                continue
            x = outputs[row["method"]]
            row["speedup_vs_full"] = rows[[r["method"] for r in rows if r["size"] == size].index("pil-full")
                                         + [r["size"] for r in rows].index(size)]["ms_per_image"] / row["ms_per_image"]
            row["input_mean_abs_diff"] = float(np.abs(x - ref).mean())
            if ref_emb is not None:
                emb = np.concatenate([encoder.encode(x[i : i + 8]) for i in range(0, len(x), 8)])
                c = _cos(emb, ref_emb)
                row["cos_mean"], row["cos_min"] = float(c.mean()), float(c.min())
        for kind in ("one thread", "threads", "processes"):
            rate = pool_rate(kind, paths * 2, spec, args.workers)
            say(f"{size} pool {kind}: {rate:.1f} images/s")
            pool_rows.append({"size": size, "pool": kind, "workers": 1 if kind == "one thread" else args.workers,
                              "images_per_s": rate})
    info = machine()
    print(table(rows, ["size", "file_mb", "method", "ms_per_image", "speedup_vs_full", "input_mean_abs_diff",
                       "cos_mean", "cos_min"], formats={"cos_mean": ".6f", "cos_min": ".6f", "input_mean_abs_diff": ".4f"},
                title=f"\nDecode + preprocess to the tower's input, one thread ({info['cpu']}, {info['cores']} cores)"))
    print(table(pool_rows, ["size", "pool", "workers", "images_per_s"], title="\nDecode pool (engine decode)"))
    write_json(args.json, {"benchmark": "draft", "machine": info, "rows": rows, "pool": pool_rows, "args": vars(args)})


if __name__ == "__main__":
    main()
