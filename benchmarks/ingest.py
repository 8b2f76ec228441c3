"""Ingestion end to end: a PyTorch-style baseline vs the real `mmsearch index`, in images/s.

    python -m benchmarks.ingest [--n 64] [--sizes 4000x3000,1600x1200] [--device cpu|cuda]
                                [--configs default,1:2,2:2] [--against GIT_REF] [--json FILE]

The collection: realistic photos (smooth shading, soft objects, texture, sensor noise; JPEG q90,
4:2:0), generated once and cached under .work/bench/photos/. The model: the ViT-B/32-sized random
CLIP (benchmarks/common.py), the same weights on both sides.

- baseline: what PyTorch-based tools do, in one process: full PIL decode (`Image.open(p).convert("RGB")`),
  transformers' CLIPImageProcessor, `CLIPModel.get_image_features` in eager mode (fp32 on the CPU,
  fp16 on CUDA), batch 32, then L2 normalisation. Timed over the loop only: torch's import and the
  model load are left out (in its favour).
- mmsearch: the real `mmsearch index FOLDER --json` as a subprocess into a fresh index, timed from
  process start to exit (imports, model load, scan, hashing, decode, encode, SQLite, ANN save: all of it).
  `--configs` adds runs with other decode-worker / encoder-thread splits: `W:T` runs `--workers W`
  with MMSEARCH_THREADS=T (`W:T:0` also turns onnxruntime's thread spinning off, `W:T:1` on);
  `default` is the engine's own choice.
- `--against GIT_REF`: the same `mmsearch index` as of that commit, in turn with this checkout's, each
  into a fresh index of its own.

Bar (CPU): mmsearch >= 2.5x the baseline on 4000x3000 JPEGs. GPU bars (`--device cuda`): >= 1,000
images/s on 4000x3000 and >= 5,000 on 640x480 (needs a large --n to be meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import (BENCH_DIR, machine, peak_rss_of, photo_collection, say, table, vitb32_bundle,
                               vitb32_checkpoint, write_json)


def baseline_worker(folder: str, ckpt: str, device: str, batch: int) -> None:
    """Runs in its own process; prints one JSON line."""
    t0 = time.perf_counter()
    import torch
    from PIL import Image
    from transformers import CLIPModel

    try:
        from transformers import CLIPImageProcessor
        processor = CLIPImageProcessor.from_pretrained(ckpt)
    except Exception:  # transformers builds without torchvision: the PIL processor is the same steps
        from transformers import CLIPImageProcessorPil
        processor = CLIPImageProcessorPil.from_pretrained(ckpt)
    torch.set_grad_enabled(False)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = CLIPModel.from_pretrained(ckpt, dtype=dtype).eval().to(device)
    paths = sorted(str(p) for p in Path(folder).glob("*.jpg"))
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    out = []
    for i in range(0, len(paths), batch):
        images = [Image.open(p).convert("RGB") for p in paths[i : i + batch]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device, dtype)
        feats = model.get_image_features(pixel_values=pixels)
        feats = getattr(feats, "pooler_output", feats)
        out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
    if device == "cuda":
        torch.cuda.synchronize()
    loop_s = time.perf_counter() - t
    print(json.dumps({"images": len(paths), "loop_s": loop_s, "load_s": load_s, "threads": torch.get_num_threads()}))


def run_baseline(folder: Path, device: str, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--baseline-worker", str(folder), "--device", device,
           "--batch", str(batch)]
    done, wall, rss = peak_rss_of(cmd, capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed:\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"what": f"baseline: PIL full decode + CLIPImageProcessor + PyTorch eager {'fp16' if device == 'cuda' else 'fp32'}, batch {batch}",
            "images": r["images"], "seconds": r["loop_s"], "images_per_s": r["images"] / r["loop_s"],
            "wall_s": wall, "peak_rss_mb": rss / 2**20 if rss else None, "note": f"loop only; +{r['load_s']:.1f}s import/load not counted"}


def run_mmsearch(folder: Path, bundle: Path, device: str, config: str, variant: str | None,
                 source: Path | None = None) -> dict:
    """`mmsearch index` into a fresh index; `source`: the checkout of another commit to run instead."""
    index = BENCH_DIR / "ingest-index"
    shutil.rmtree(index, ignore_errors=True)
    env = dict(os.environ)
    launcher = [sys.executable, "-m", "mmsearch"]
    if source is not None:
        launcher = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(source)!r}); sys.argv[0] = 'mmsearch'; "
                    "from mmsearch.cli import main; main()"]
    cmd = [*launcher, "index", str(folder), "--index", str(index), "--model", str(bundle), "--device", device, "--json"]
    if variant:
        cmd += ["--variant", variant]
    label = "default"
    if config != "default":
        workers, threads, *spin = config.split(":")
        cmd += ["--workers", workers]
        env["MMSEARCH_THREADS"] = threads
        label = f"{workers} decode workers, {threads} encoder threads"
        if spin:
            env["MMSEARCH_ORT_SPIN"] = spin[0]
            label += ", spinning " + ("on" if spin[0] == "1" else "off")
    done, wall, rss = peak_rss_of(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"mmsearch index failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    n = report["encoded_items"]
    shutil.rmtree(index, ignore_errors=True)
    label += f", as of {source.name}" if source is not None else ""
    return {"what": f"mmsearch index ({label}{', ' + variant if variant else ''})", "images": n, "seconds": wall,
            "images_per_s": n / wall, "wall_s": wall, "peak_rss_mb": rss / 2**20 if rss else None,
            "note": f"whole process; run itself {report['seconds']:.1f}s on {report.get('device')}",
            "errors": len(report["errors"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="photos per size")
    parser.add_argument("--sizes", default="4000x3000,1600x1200")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=32, help="baseline batch size")
    parser.add_argument("--configs", default="default", help="comma-separated: default and/or W:T splits")
    parser.add_argument("--variant", help="mmsearch bundle variant [default: the engine's choice]")
    parser.add_argument("--repeat", type=int, default=1, help="alternate baseline/mmsearch this many times")
    parser.add_argument("--skip-baseline", action="store_true", help="mmsearch runs only (thread-split sweeps)")
    parser.add_argument("--against", metavar="GIT_REF", help="also run `mmsearch index` as of this commit, in turn")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker, str(vitb32_checkpoint()), args.device, args.batch)
        return

    bundle = vitb32_bundle()
    vitb32_checkpoint()
    ref_tree = None
    if args.against:
        from benchmarks.common import checkout

        ref_tree = checkout(args.against)
    info = machine()
    rows, summary = [], {}
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        paths = photo_collection(BENCH_DIR / "photos" / size, args.n, w, h)
        folder = BENCH_DIR / "ingest-photos" / f"{size}-{args.n}"  # exactly n photos, linked
        if not folder.exists() or len(list(folder.glob("*.jpg"))) != args.n:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for p in paths:
                os.link(p, folder / p.name)
        mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        best_base = best_mm = 0.0
        for _ in range(args.repeat):  # alternate, so load from other work hits both alike
            if not args.skip_baseline:
                say(f"{size}: baseline")
                b = run_baseline(folder, args.device, args.batch)
                rows.append({"size": size, "file_mb": round(mb, 2), **b})
                best_base = max(best_base, b["images_per_s"])
            for config in args.configs.split(","):
                say(f"{size}: mmsearch index ({config})")
                m = run_mmsearch(folder, bundle, args.device, config, args.variant)
                rows.append({"size": size, "file_mb": round(mb, 2), **m})
                if config == "default":
                    best_mm = max(best_mm, m["images_per_s"])
            if ref_tree is not None:
                say(f"{size}: mmsearch index as of {args.against}")
                rows.append({"size": size, "file_mb": round(mb, 2),
                             **run_mmsearch(folder, bundle, args.device, "default", args.variant, ref_tree)})
        if best_mm and best_base:
            summary[size] = {"baseline_images_per_s": best_base, "mmsearch_images_per_s": best_mm,
                             "ratio": best_mm / best_base}
    for r in rows:
        base = summary.get(r["size"], {}).get("baseline_images_per_s")
        r["vs_baseline"] = r["images_per_s"] / base if base else None
    print(table(rows, ["size", "file_mb", "what", "images", "seconds", "images_per_s", "vs_baseline", "peak_rss_mb",
                       "note"], title=f"\nIngestion end to end, {args.device} ({info['cpu']}, {info['cores']} cores)"))
    for size, s in summary.items():
        bar = ""
        if args.device == "cpu" and size == "4000x3000":
            bar = f"; bar >= 2.5x: {'met' if s['ratio'] >= 2.5 else 'NOT met'}"
        print(f"{size}: mmsearch {s['mmsearch_images_per_s']:.1f} images/s vs baseline {s['baseline_images_per_s']:.1f}"
              f" = {s['ratio']:.2f}x{bar}")
    write_json(args.json, {"benchmark": "ingest", "machine": info, "rows": rows, "summary": summary, "args": vars(args)})


if __name__ == "__main__":
    main()
