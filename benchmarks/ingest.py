"""Ingestion end to end: a PyTorch-style baseline vs the real `mmsearch index`, in images/s.

    python -m benchmarks.ingest [--n 64] [--sizes 4000x3000,1600x1200] [--device cpu|cuda]
                                [--configs default,1:2,2:2] [--against GIT_REF] [--json FILE]
    python -m benchmarks.ingest --against-rclip [--n-large 200] [--n-small 600] [--repeat 3]

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
- `--against-rclip [--n-large 200] [--n-small 600] [--repeat 3]`: side by side with rclip 3.3.0 (installed
  from the package index into a virtualenv of its own under .work/bench, or `--rclip-python`), on one
  folder of photos without words (--n-large of 4000x3000, --n-small of 1600x1200): rclip indexing it
  (its own code: scan, hash, full decode, fp32 ONNX through onnxruntime, SQLite; pointed at this
  ViT-B/32's fp32 towers, at 224 px), the default `mmsearch index` (OCR on where installed) and
  `mmsearch index --no-ocr`, each into a fresh index, in alternating rounds; wall and CPU time of each
  process, and the ratios to rclip's run of the same round. With `--against GIT_REF`, the default run
  as of that commit joins each round.

Bar (CPU): mmsearch >= 2.5x the baseline on 4000x3000 JPEGs. GPU bars (`--device cuda`): >= 1,000
images/s on 4000x3000 and >= 5,000 on 640x480 (needs a large --n to be meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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


# -- side by side with rclip ---------------------------------------------------------------------

RCLIP_VERSION = "3.3.0"
RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # where rclip looks for its ONNX files


def rclip_python(given: str | None) -> Path:
    """rclip in a virtualenv of its own (its pins are not the project's): given, or made once under
    .work/bench/rclip-venv from the package index."""
    if given:
        return Path(given)
    venv = BENCH_DIR / "rclip-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"installing rclip {RCLIP_VERSION} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"rclip=={RCLIP_VERSION}"], check=True)
    return python


def rclip_models(bundle: Path) -> Path:
    """rclip's data folder with the bundle's fp32 towers where rclip looks for its own (same weights as
    mmsearch's run), their inputs and outputs renamed to rclip's `input` and `output`."""
    import onnx
    from onnx import helper

    datadir = BENCH_DIR / "rclip-data"
    folder = datadir / RCLIP_MODEL_SUBDIR
    manifest = json.loads((bundle / "manifest.json").read_text())
    stamp = folder / "source.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("manifest_created") == manifest.get("created"):
        return datadir
    folder.mkdir(parents=True, exist_ok=True)
    for tower, name in (("image", "visual.onnx"), ("text", "textual.onnx")):
        model = onnx.load(str(bundle / manifest["variants"]["fp32"][tower]["file"]))
        graph = model.graph
        inner_in, inner_out = graph.input[0].name, graph.output[0].name
        new_in = helper.make_tensor_value_info("input", graph.input[0].type.tensor_type.elem_type, None)
        new_in.type.CopyFrom(graph.input[0].type)
        new_out = helper.make_tensor_value_info("output", graph.output[0].type.tensor_type.elem_type, None)
        new_out.type.CopyFrom(graph.output[0].type)
        graph.node.insert(0, helper.make_node("Identity", ["input"], [inner_in]))
        graph.node.append(helper.make_node("Identity", [inner_out], ["output"]))
        del graph.input[:]
        graph.input.append(new_in)
        del graph.output[:]
        graph.output.append(new_out)
        onnx.save(model, str(folder / name))
    vocab = datadir / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"  # read by queries only, never by indexing
    vocab.parent.mkdir(parents=True, exist_ok=True)
    import gzip

    with gzip.open(vocab, "wt") as f:
        f.write("#version: 0.2\n")
    stamp.write_text(json.dumps({"manifest_created": manifest.get("created")}))
    return datadir


RCLIP_RUNNER = """
import sys, time
t0 = time.perf_counter()
import rclip.utils.preprocess as pre
pre.IMAGE_SIZE = 224  # rclip's default model is the 256 px ViT-B/32; these weights are the 224 px one
from rclip.main import init_rclip
rclip, model, db = init_rclip(sys.argv[1], 8)  # rclip's default batch: scan, hash, decode, encode, commit
db.close()
print(time.perf_counter() - t0)
"""


def _timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[subprocess.CompletedProcess, float, float]:
    """(completed, wall s, CPU s of the process and its children)."""
    before = os.times()
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t
    after = os.times()
    return done, wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def against_rclip(args: argparse.Namespace) -> None:
    """rclip and `mmsearch index` (with and without the OCR phase) on one folder of photos, in alternating
    rounds, each into a fresh index; the ratios are of one round's runs."""
    bundle = vitb32_bundle()
    python = rclip_python(args.rclip_python)
    datadir = rclip_models(bundle)
    info = machine()
    from mmsearch.int8_check import isa_summary

    info["isa"] = isa_summary()
    folder = BENCH_DIR / "rclip-photos" / f"{args.n_large}x4000x3000+{args.n_small}x1600x1200"
    if not folder.exists():
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for n, (w, h) in ((args.n_large, (4000, 3000)), (args.n_small, (1600, 1200))):
            for p in photo_collection(BENCH_DIR / "photos" / f"{w}x{h}", n, w, h):
                os.link(p, tmp / p.name)
        tmp.rename(folder)
    n = len(list(folder.glob("*.jpg")))
    index = BENCH_DIR / "rclip-mmsearch-index"
    from benchmarks.quality import mmsearch_command

    runs: dict[str, list[str] | None] = {
        "rclip": None,
        "mmsearch index (default: OCR on)": [],
        "mmsearch index --no-ocr": ["--no-ocr"],
    }
    launchers = {what: mmsearch_command() for what in runs}
    if args.against:  # the same default run as of another commit, in the same rounds
        from benchmarks.common import checkout

        tree = checkout(args.against)
        what = f"mmsearch index as of {args.against} (default: OCR on)"
        runs[what] = []
        launchers[what] = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); "
                           "sys.argv[0] = 'mmsearch'; from mmsearch.cli import main; main()"]
    rows: list[dict] = []
    for r in range(args.repeat):
        for what, extra in runs.items():
            say(f"round {r + 1}: {what}")
            if extra is None:
                (datadir / "db.sqlite3").unlink(missing_ok=True)
                for suffix in ("-wal", "-shm"):
                    (datadir / f"db.sqlite3{suffix}").unlink(missing_ok=True)
                env = {**os.environ, "RCLIP_DATADIR": str(datadir)}
                done, wall, cpu = _timed([str(python), "-c", RCLIP_RUNNER, str(folder)], env)
                indexed = None
                if done.returncode == 0:
                    import sqlite3

                    conn = sqlite3.connect(datadir / "db.sqlite3")
                    indexed = conn.execute("SELECT count(*) FROM images").fetchone()[0]
                    conn.close()
            else:
                shutil.rmtree(index, ignore_errors=True)
                cmd = [*launchers[what], "index", str(folder), "--index", str(index), "--model", str(bundle),
                       "--json", *extra]
                done, wall, cpu = _timed(cmd, dict(os.environ))
                indexed = json.loads(done.stdout)["encoded_items"] if done.returncode == 0 else None
            if done.returncode != 0:
                raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
            rows.append({"round": r + 1, "what": what, "photos": indexed, "wall_s": wall, "cpu_s": cpu})
    shutil.rmtree(index, ignore_errors=True)
    by_round: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["what"]] = row
    for row in rows:
        base = by_round[row["round"]]["rclip"]
        row["wall_vs_rclip"] = row["wall_s"] / base["wall_s"]
        row["cpu_vs_rclip"] = row["cpu_s"] / base["cpu_s"]
    print(table(rows, ["round", "what", "photos", "wall_s", "cpu_s", "wall_vs_rclip", "cpu_vs_rclip"],
                title=f"\n{n} photos ({args.n_large} of 4000x3000, {args.n_small} of 1600x1200) side by side with rclip "
                      f"{RCLIP_VERSION} ({info['cpu']}, {info['cores']} cores, {info['isa']})"))
    summary = {}
    for what in runs:
        if what == "rclip":
            continue
        ratios = sorted(by_round[r][what]["wall_s"] / by_round[r]["rclip"]["wall_s"] for r in by_round)
        cpu = sorted(by_round[r][what]["cpu_s"] / by_round[r]["rclip"]["cpu_s"] for r in by_round)
        summary[what] = {"wall_ratio_median": ratios[len(ratios) // 2], "wall_ratios": ratios,
                         "cpu_ratio_median": cpu[len(cpu) // 2]}
        print(f"{what}: {summary[what]['wall_ratio_median']:.2f}x rclip's wall time (median of {len(ratios)} rounds; "
              f"{', '.join(f'{x:.2f}' for x in ratios)}), {summary[what]['cpu_ratio_median']:.2f}x its CPU")
    write_json(args.json, {"benchmark": "ingest --against-rclip", "machine": info, "rows": rows, "summary": summary,
                           "args": vars(args)})


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
    parser.add_argument("--against-rclip", action="store_true",
                        help="rclip 3.3.0 and `mmsearch index` (OCR on, and --no-ocr) side by side, alternating rounds")
    parser.add_argument("--n-large", type=int, default=200, help="--against-rclip: photos of 4000x3000")
    parser.add_argument("--n-small", type=int, default=600, help="--against-rclip: photos of 1600x1200")
    parser.add_argument("--rclip-python", help="--against-rclip: a Python with rclip installed [default: a venv made "
                                               "under .work/bench]")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against_rclip:
        against_rclip(args)
        return
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
