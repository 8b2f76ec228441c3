"""Encoder speed: PyTorch eager against the exported bundle, side by side in one process.

    python -m benchmarks.encoders [--device cpu|cuda] [--json FILE] [--rounds 7] [--explore] [--threads N]

The model is a ViT-B/32-sized CLIP with random weights (mmsearch_export.tiny preset "vit-b-32":
the exact architecture, so the cost is the real one), written and exported once into
.work/bench/clip-vit-b-32/{checkpoint,bundle} (gitignored) and reused.

--device cpu (default): images/s at batch 32 for PyTorch eager fp32 (transformers' default sdpa
attention), the bundle's fp32 and its int8, and text latency at batch 1: PyTorch on ids padded to
77 (what the processor gives by default), the bundle on the real token count and on 77. torch and
onnxruntime both use every core this process may run on. Bar: int8 >= 2.0x PyTorch eager fp32
images/s. --explore adds int8 builds with other quantize_dynamic settings and session options.

--device cuda (a machine with an NVIDIA GPU, torch with CUDA): images/s at batch 512 for PyTorch
eager fp16 (model.half(), sdpa) against the bundle's fp16 on the CUDA provider with IO binding
(input and output live in GPU memory as OrtValues). Bar: >= 1.15x PyTorch eager fp16.

Timing: candidates take turns, round after round (so a neighbour's load hits them alike); each
figure is the median over rounds, with the best round beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".work" / "bench"
MODEL_DIR = BENCH_DIR / "clip-vit-b-32"
CHECKPOINT = MODEL_DIR / "checkpoint"
BUNDLE = MODEL_DIR / "bundle"
EXPLORE_DIR = BENCH_DIR / "encoders-int8"

CPU_INT8_BAR = 2.0
GPU_FP16_BAR = 1.15
QUERY = "a photo of a red circle on a blue background"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the model -------------------------------------------------------------------------------------


def ensure_checkpoint() -> Path:
    if not (CHECKPOINT / "config.json").exists():
        from mmsearch_export.tiny import make_clip_checkpoint

        say(f"writing a random-weight ViT-B/32 CLIP checkpoint to {CHECKPOINT}")
        make_clip_checkpoint(CHECKPOINT, preset="vit-b-32")
    return CHECKPOINT


def _stale(manifest_path: Path) -> str | None:
    """Why the cached bundle is not what the export step makes today (None if it is)."""
    from mmsearch_export import to_onnx

    try:
        m = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    if set(m.get("variants", {})) != {"fp32", "fp16", "int8"}:
        return "not all three variants"
    fused = m["variants"]["fp32"].get("fused", {})
    if not all(fused.get(t, {}).get("Attention", 0) > 0 for t in ("image", "text")):
        return "unfused fp32 towers"
    q = m["variants"]["int8"].get("quantization", {})
    wanted = {k: v for k, v in to_onnx.INT8_OPTIONS.items() if k != "from_fused"}
    if any(q.get(k) != v for k, v in wanted.items()) or (q.get("quantized_from") == "plain export") == bool(
        to_onnx.INT8_OPTIONS.get("from_fused")
    ):
        return "int8 quantized with other settings"
    return None


def ensure_bundle() -> Path:
    why = _stale(BUNDLE / "manifest.json")
    if why:
        from mmsearch_export import export_bundle

        say(f"exporting {CHECKPOINT} to {BUNDLE} ({why}; cached for next time)")
        export_bundle(ensure_checkpoint(), BUNDLE, name="clip-vit-b-32-random", progress=say, overwrite=True)
    return BUNDLE


# -- timing ----------------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    run: Callable[[], Any]
    items: int  # per call: images in the batch, or 1 for a latency figure
    calls: int  # calls per round
    times: list[float] = field(default_factory=list)  # seconds per call, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def race(candidates: list[Candidate], rounds: int, warmup: int = 2) -> None:
    """Each candidate runs `calls` times per round; rounds interleave the candidates."""
    for c in candidates:
        for _ in range(warmup):
            c.run()
    for r in range(rounds):
        for c in candidates:
            t0 = time.perf_counter()
            for _ in range(c.calls):
                c.run()
            c.times.append((time.perf_counter() - t0) / c.calls)
        say(f"round {r + 1}/{rounds}: " + ", ".join(f"{c.name} {c.times[-1] * 1e3:.1f} ms" for c in candidates))


def _row(c: Candidate, base: Candidate | None, throughput: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"name": c.name, "median_ms": round(c.median * 1e3, 2), "best_ms": round(c.best * 1e3, 2)}
    if throughput:
        row["per_s"] = round(c.items / c.median, 1)
        row["best_per_s"] = round(c.items / c.best, 1)
    if base is not None:
        row["speedup"] = round(base.median / c.median, 2)
    return row


def _print_table(title: str, rows: list[dict[str, Any]], throughput: bool, unit: str) -> None:
    print(f"\n{title}")
    if throughput:
        print(f"  {'':44} {unit + '/s (median)':>18} {'best':>8} {'ms/batch':>9} {'vs PyTorch':>11}")
        for r in rows:
            print(f"  {r['name']:44} {r['per_s']:>18.1f} {r['best_per_s']:>8.1f} {r['median_ms']:>9.1f} "
                  f"{(str(r.get('speedup', '')) + 'x') if 'speedup' in r else '':>11}")
    else:
        print(f"  {'':44} {'ms (median)':>12} {'best':>8} {'vs PyTorch':>11}")
        for r in rows:
            print(f"  {r['name']:44} {r['median_ms']:>12.2f} {r['best_ms']:>8.2f} "
                  f"{(str(r.get('speedup', '')) + 'x') if 'speedup' in r else '':>11}")


# -- CPU -------------------------------------------------------------------------------------------


def _inputs(model_dir: Path, batch: int):
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    from mmsearch_export.validate import captioned_images

    processor = AutoImageProcessor.from_pretrained(model_dir)
    images = [img for img, _ in captioned_images(batch, 224, seed=5)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return pixels, tokenizer


def _ort_session(path: Path, threads: int, level: str = "all"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # No spin-waiting once a run is done: candidates take turns in this process, and idle workers
    # spinning on both cores would be timed against whoever runs next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _explore_builds(bundle: Path, checkpoint: Path) -> dict[str, Path]:
    """Image towers built with other settings than the bundle's, cached under .work/bench/encoders-int8/
    (delete the folder after changing the export code)."""
    from mmsearch_export import to_onnx

    EXPLORE_DIR.mkdir(parents=True, exist_ok=True)
    plain = EXPLORE_DIR / "image.plain.fp32.onnx"
    if not plain.exists():
        import torch

        from mmsearch_export.towers import build_towers, load_checkpoint

        say("exporting the image tower without the transformer optimizer")
        image, _ = build_towers(load_checkpoint(checkpoint))
        to_onnx.export_tower(image, [torch.randn(2, 3, 224, 224)], plain, ["pixel_values"], "image_embeds",
                             {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    fused = bundle / "image.fp32.onnx"
    builds = {
        "int8 from the fused graph (QAttention)": (fused, {}),
        "int8 incl. Conv (ConvInteger)": (plain, {"op_types": None}),
        "int8 per-channel": (plain, {"per_channel": True}),
        "int8 reduce-range": (plain, {"reduce_range": True}),
        "int8 MatMulConstBOnly": (plain, {"extra_options": {"MatMulConstBOnly": True}}),
    }
    out: dict[str, Path] = {"fp32 plain export (no transformer optimizer)": plain}
    for name, (src, options) in builds.items():
        path = EXPLORE_DIR / ("image." + "".join(ch if ch.isalnum() else "-" for ch in name) + ".onnx")
        if not path.exists():
            say(f"building {name}")
            to_onnx.to_int8(src, path, options)
        out[name] = path
    return out


def bench_cpu(rounds: int, explore: bool, threads: int | None = None) -> dict[str, Any]:
    import torch
    from transformers import CLIPModel

    threads = threads or _threads()
    load_before = os.getloadavg()
    torch.set_num_threads(threads)
    bundle, checkpoint = ensure_bundle(), ensure_checkpoint()
    manifest = json.loads((bundle / "manifest.json").read_text())
    say(f"loading PyTorch model and onnxruntime sessions ({threads} threads each)")
    model = CLIPModel.from_pretrained(checkpoint).eval()  # transformers' default attention (sdpa)
    batch = 32
    pixels, tokenizer = _inputs(checkpoint, batch)
    pixels_np = pixels.numpy()

    sessions = {v: {t: _ort_session(bundle / f"{t}.{v}.onnx", threads) for t in ("image", "text")}
                for v in ("fp32", "int8")}

    def torch_images() -> Any:
        with torch.inference_mode():
            return torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)

    image_candidates = [
        Candidate("PyTorch eager fp32", torch_images, batch, 2),
        Candidate("bundle fp32 (onnxruntime, fused attention)", lambda: sessions["fp32"]["image"].run(None, {"pixel_values": pixels_np}), batch, 2),
        Candidate("bundle int8 (onnxruntime)", lambda: sessions["int8"]["image"].run(None, {"pixel_values": pixels_np}), batch, 2),
    ]
    if explore:
        for name, path in _explore_builds(bundle, checkpoint).items():
            s = _ort_session(path, threads)
            image_candidates.append(Candidate(name, lambda s=s: s.run(None, {"pixel_values": pixels_np}), batch, 2))
        s = _ort_session(bundle / "image.int8.onnx", threads, level="extended")
        image_candidates.append(Candidate("int8, session level EXTENDED", lambda: s.run(None, {"pixel_values": pixels_np}), batch, 2))
        s1 = _ort_session(bundle / "image.int8.onnx", 1)
        image_candidates.append(Candidate("int8, 1 intra-op thread", lambda: s1.run(None, {"pixel_values": pixels_np}), batch, 2))

    say(f"images: batch {batch}, {rounds} rounds")
    race(image_candidates, rounds)

    # text, batch 1
    real = tokenizer([QUERY], return_tensors="pt")
    padded = tokenizer([QUERY], padding="max_length", max_length=77, return_tensors="pt")
    real_np, padded_np = real["input_ids"].numpy(), padded["input_ids"].numpy()

    def torch_text(enc) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return run

    n_real = int(real_np.shape[1])
    text_candidates = [
        Candidate("PyTorch eager fp32, padded to 77", torch_text(padded), 1, 20),
        Candidate(f"PyTorch eager fp32, {n_real} tokens", torch_text(real), 1, 20),
        Candidate(f"bundle fp32, {n_real} tokens", lambda: sessions["fp32"]["text"].run(None, {"input_ids": real_np}), 1, 20),
        Candidate(f"bundle int8, {n_real} tokens", lambda: sessions["int8"]["text"].run(None, {"input_ids": real_np}), 1, 20),
        Candidate("bundle fp32, padded to 77", lambda: sessions["fp32"]["text"].run(None, {"input_ids": padded_np}), 1, 20),
        Candidate("bundle int8, padded to 77", lambda: sessions["int8"]["text"].run(None, {"input_ids": padded_np}), 1, 20),
    ]
    say(f"text: batch 1, {rounds} rounds")
    race(text_candidates, rounds)

    image_rows = [_row(c, image_candidates[0], True) for c in image_candidates]
    text_rows = [_row(c, text_candidates[0], False) for c in text_candidates]
    int8_ratio = image_rows[2]["speedup"]
    load_after = os.getloadavg()
    print(f"\n(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {_threads()} cores: "
          "other work on the machine slows PyTorch's thread barriers more than onnxruntime)")
    _print_table(f"CPU images, batch {batch}, {threads} threads (torch {torch.__version__}, onnxruntime "
                 f"{_ort_version()})", image_rows, True, "images")
    print(f"\n  bar: bundle int8 >= {CPU_INT8_BAR}x PyTorch eager fp32 images/s -> {int8_ratio}x "
          f"{'PASS' if int8_ratio >= CPU_INT8_BAR else 'MISS'}")
    _print_table("CPU text, batch 1 (latency)", text_rows, False, "")
    return {
        "device": "cpu",
        "threads": threads,
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "batch": batch,
        "images": image_rows,
        "text": text_rows,
        "bar": {"int8_vs_pytorch_fp32": CPU_INT8_BAR, "measured": int8_ratio, "pass": int8_ratio >= CPU_INT8_BAR},
        "fused": {v: manifest["variants"][v]["fused"] for v in manifest["variants"]},
    }


# -- GPU -------------------------------------------------------------------------------------------


def bench_cuda(rounds: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    from transformers import CLIPModel

    from mmsearch.runtime import create_session

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch has no CUDA device here (a CUDA build of torch and an NVIDIA GPU)")
    bundle, checkpoint = ensure_bundle(), ensure_checkpoint()
    if "fp16" not in json.loads((bundle / "manifest.json").read_text())["variants"]:
        raise SystemExit(f"{bundle}: no fp16 variant")
    batch = 512
    say("loading PyTorch fp16 model and the fp16 bundle on the CUDA provider")
    model = CLIPModel.from_pretrained(checkpoint, dtype=torch.float16).eval().cuda()
    pixels, tokenizer = _inputs(checkpoint, 64)
    pixels = pixels.repeat(batch // 64, 1, 1, 1)  # 512 processed images (8 copies of 64 distinct ones)
    pixels_gpu16 = pixels.to("cuda", torch.float16)
    torch.backends.cudnn.benchmark = True

    def sync_torch(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            out = fn()
            torch.cuda.synchronize()
            return out
        return run

    def torch_images() -> Any:
        with torch.inference_mode():
            return torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels_gpu16).pooler_output, dim=-1)

    image_session, device = create_session(bundle / "image.fp16.onnx", "cuda")
    assert device == "cuda"
    # IO binding: the input is copied to the GPU once, outside the timed loop; the output stays there.
    x = ort.OrtValue.ortvalue_from_numpy(pixels.numpy().astype(np.float32), "cuda", 0)
    y = ort.OrtValue.ortvalue_from_shape_and_type([batch, model.config.projection_dim], np.float32, "cuda", 0)
    binding = image_session.io_binding()
    binding.bind_ortvalue_input("pixel_values", x)
    binding.bind_ortvalue_output("image_embeds", y)

    def ort_images() -> Any:
        image_session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    image_candidates = [
        Candidate("PyTorch eager fp16 (sdpa)", sync_torch(torch_images), batch, 5),
        Candidate("bundle fp16, CUDA provider + IO binding", ort_images, batch, 5),
    ]
    say(f"images: batch {batch}, {rounds} rounds")
    race(image_candidates, rounds, warmup=3)

    # text, batch 1, on the GPU
    real = tokenizer([QUERY], return_tensors="pt")
    padded = tokenizer([QUERY], padding="max_length", max_length=77, return_tensors="pt")
    real_gpu = {k: v.cuda() for k, v in real.items()}
    padded_gpu = {k: v.cuda() for k, v in padded.items()}
    text_session, _ = create_session(bundle / "text.fp16.onnx", "cuda")
    ids = ort.OrtValue.ortvalue_from_numpy(real["input_ids"].numpy(), "cuda", 0)
    tbind = text_session.io_binding()
    tbind.bind_ortvalue_input("input_ids", ids)
    tbind.bind_output("text_embeds", "cuda")

    def ort_text() -> Any:
        text_session.run_with_iobinding(tbind)
        tbind.synchronize_outputs()

    def torch_text(enc) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return model.get_text_features(**enc)
        return sync_torch(run)

    n_real = int(real["input_ids"].shape[1])
    text_candidates = [
        Candidate("PyTorch eager fp16, padded to 77", torch_text(padded_gpu), 1, 50),
        Candidate(f"bundle fp16, {n_real} tokens, IO binding", ort_text, 1, 50),
    ]
    race(text_candidates, rounds, warmup=5)

    image_rows = [_row(c, image_candidates[0], True) for c in image_candidates]
    text_rows = [_row(c, text_candidates[0], False) for c in text_candidates]
    ratio = image_rows[1]["speedup"]
    _print_table(f"GPU images, batch {batch} ({torch.cuda.get_device_name()}, torch {torch.__version__}, "
                 f"onnxruntime {_ort_version()})", image_rows, True, "images")
    print(f"\n  bar: bundle fp16 >= {GPU_FP16_BAR}x PyTorch eager fp16 images/s -> {ratio}x "
          f"{'PASS' if ratio >= GPU_FP16_BAR else 'MISS'}")
    _print_table("GPU text, batch 1 (latency)", text_rows, False, "")
    return {
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(),
        "batch": batch,
        "images": image_rows,
        "text": text_rows,
        "bar": {"fp16_vs_pytorch_fp16": GPU_FP16_BAR, "measured": ratio, "pass": ratio >= GPU_FP16_BAR},
    }


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoders", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per candidate (default 7)")
    ap.add_argument("--explore", action="store_true", help="CPU: also time int8 builds with other settings")
    ap.add_argument("--threads", type=int, help="CPU: threads for torch and onnxruntime (default: every core)")
    args = ap.parse_args(argv)
    result = bench_cpu(args.rounds, args.explore, args.threads) if args.device == "cpu" else bench_cuda(args.rounds)
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": os.cpu_count(), "affinity": _threads()}
    result["bundle"] = str(BUNDLE)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
