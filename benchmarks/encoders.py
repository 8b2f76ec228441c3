"""Encoder speed: PyTorch eager against the exported bundle, side by side in one process.

    python -m benchmarks.encoders [--device cpu|cuda] [--json FILE] [--rounds 7] [--explore] [--int8-choices]
                                  [--threads N]
    python -m benchmarks.encoders --int8-accuracy [--models tiny-clip,...] [--seeds 0,1] [--emulate CPU,...]
    python -m benchmarks.encoders --batch-consistency [--models toyclip,vit-b-32,...] [--emulate CPU,...]

The model is a ViT-B/32-sized CLIP with random weights (mmsearch_export.tiny preset "vit-b-32":
the exact architecture, so the cost is the real one), written and exported once into
.work/bench/clip-vit-b-32/{checkpoint,bundle} (gitignored) and reused.

--device cpu (default): images/s at batch 32 for PyTorch eager fp32 (transformers' default sdpa
attention), the bundle's fp32 and its int8, and text latency at batch 1: PyTorch on ids padded to
77 (what the processor gives by default), the bundle on the real token count and on 77. torch and
onnxruntime both use every core this process may run on. Bar: int8 >= 2.0x PyTorch eager fp32
images/s. --explore adds int8 builds with other quantize_dynamic settings and session options;
--int8-choices adds the builds of INT8_CHOICES, image and text. Every CPU figure is printed with the
instruction set onnxruntime's int8 kernels run on here (AVX2 alone sums pairs of u8 x s8 products in 16
bits, VNNI in 32: the same int8 tower is several times faster with VNNI, and can be less accurate
without it).

--int8-accuracy: the int8 builds of INT8_CHOICES (per-tensor/per-channel, reduce_range, s8/u8
weights, ...) of every tower the project ships (tiny CLIP, SigLIP and Chinese-CLIP, the toyclip
fixture, this ViT-B/32-sized CLIP) against the fp32 graph: min and mean cosine over 64 images and 64
texts (16 of each for ViT-B/32) through the runtime's preprocessing and tokenizer, run on this CPU
and, with --emulate Haswell-noTSX-IBRS, in a process under `qemu-x86_64 -cpu Haswell-noTSX-IBRS`
(apt-get install qemu-user): qemu emulates an AVX2 CPU without AVX-512 or VNNI, and onnxruntime,
which reads CPUID, takes its AVX2 kernels there (ViT-B/32: about 25 minutes). Builds are cached under
.work/bench/int8-accuracy/; the toyclip fixture keeps no checkpoint, so its builds start from its
fused fp32 graph, beside the int8 it ships.

--batch-consistency: same file, same vector. For each shipped tower (the toyclip fixture, this
ViT-B/32-sized CLIP, the tiny CLIP, SigLIP and Chinese-CLIP the export step makes, each exported in
full) and each variant this machine runs (fp32 and int8 on a CPU, fp16 where CUDA works): the min
cosine of every input's vector encoded alone against the same input in a batch of 32 (images
through the runtime's preprocessing; texts of 1 to 60 words, padded to the batch's longest), as one
session call (what the runtime did before) and through the runtime's encoders (int8 one input at a
time); then, natively, the speed of both ways (images/s and texts/s, alternating rounds). With
--emulate the accuracy half runs again under qemu (an AVX2 CPU without VNNI).

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

from benchmarks.common import BENCH_DIR, ROOT, say, vitb32_bundle, vitb32_checkpoint

EXPLORE_DIR = BENCH_DIR / "encoders-int8"

CPU_INT8_BAR = 2.0
GPU_FP16_BAR = 1.15
QUERY = "a photo of a red circle on a blue background"


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the model -------------------------------------------------------------------------------------


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


SPEED_CHOICES = ("s8", "s8 reduce-range", "s8 per-channel", "s8 per-channel reduce-range", "u8", "u8 per-channel")


def bench_cpu(rounds: int, explore: bool, threads: int | None = None, choices: bool = False) -> dict[str, Any]:
    import torch
    from transformers import CLIPModel

    threads = threads or _threads()
    load_before = os.getloadavg()
    torch.set_num_threads(threads)
    bundle, checkpoint = vitb32_bundle(), vitb32_checkpoint()
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
    choice_sessions = {}
    if choices:  # the int8 settings of INT8_CHOICES, the builds --int8-accuracy measures
        folder = _accuracy_model("vit-b-32", 0)
        for c in SPEED_CHOICES:
            choice_sessions[c] = {t: _ort_session(folder / f"int8.{_slug(c)}.{t}.onnx", threads) for t in ("image", "text")}
            image_candidates.append(Candidate(f"int8 {c}", lambda s=choice_sessions[c]["image"]: s.run(None, {"pixel_values": pixels_np}), batch, 2))

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
    for c, pair in choice_sessions.items():
        text_candidates.append(Candidate(f"int8 {c}, {n_real} tokens", lambda s=pair["text"]: s.run(None, {"input_ids": real_np}), 1, 20))
    say(f"text: batch 1, {rounds} rounds")
    race(text_candidates, rounds)

    image_rows = [_row(c, image_candidates[0], True) for c in image_candidates]
    text_rows = [_row(c, text_candidates[0], False) for c in text_candidates]
    int8_ratio = image_rows[2]["speedup"]
    load_after = os.getloadavg()
    print(f"\n(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {_threads()} cores: "
          "other work on the machine slows PyTorch's thread barriers more than onnxruntime)")
    _print_table(f"CPU images, batch {batch}, {threads} threads, {isa_name()} (torch {torch.__version__}, onnxruntime "
                 f"{_ort_version()})", image_rows, True, "images")
    print(f"\n  bar: bundle int8 >= {CPU_INT8_BAR}x PyTorch eager fp32 images/s -> {int8_ratio}x "
          f"{'PASS' if int8_ratio >= CPU_INT8_BAR else 'MISS'}")
    _print_table(f"CPU text, batch 1 (latency), {isa_name()}", text_rows, False, "")
    return {
        "device": "cpu",
        "isa": isa_name(),
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
    bundle, checkpoint = vitb32_bundle(), vitb32_checkpoint()
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


# -- int8 accuracy on each CPU path ----------------------------------------------------------------

ACCURACY_DIR = BENCH_DIR / "int8-accuracy"
# The int8 settings before this comparison existed; every choice below changes some of them.
INT8_BASE: dict[str, Any] = {"per_channel": False, "reduce_range": False, "op_types": ["MatMul", "Attention", "Gather"],
                             "weight_type": "QInt8"}
INT8_CHOICES: dict[str, dict[str, Any]] = {
    "s8": {},
    "s8 reduce-range": {"reduce_range": True},
    "s8 per-channel": {"per_channel": True},
    "s8 per-channel reduce-range": {"per_channel": True, "reduce_range": True},
    "u8": {"weight_type": "QUInt8"},
    "u8 per-channel": {"weight_type": "QUInt8", "per_channel": True},
    # dynamic quantization keeps activations u8 (DynamicQuantizeLinear): this only moves the Gather tables
    "s8 ActivationSymmetric (Gather tables)": {"extra_options": {"ActivationSymmetric": True}},
    "s8 reduce-range, MatMul only": {"reduce_range": True, "op_types": ["MatMul"]},
}
# name -> (builder, images, texts): fewer inputs for ViT-B/32, which an emulated CPU runs ~50x slower.
ACCURACY_MODELS: dict[str, tuple[str, int, int]] = {
    "tiny-clip": ("clip", 64, 64), "tiny-siglip": ("siglip", 64, 64), "tiny-cn-clip": ("chinese_clip", 64, 64),
    "toyclip": ("fixture", 64, 64), "vit-b-32": ("vit-b-32", 16, 16),
}
FIXTURE = ROOT / "tests" / "fixtures" / "toyclip"


def isa_name() -> str:
    """The instruction sets onnxruntime's int8 kernels choose between, as CPUID reports them to this process."""
    from mmsearch.int8_check import isa_summary

    return isa_summary()


def _accuracy_model(name: str, seed: int) -> Path:
    """ACCURACY_DIR/<name>-s<seed>/: bundle/ (fp32), plain.<tower>.onnx (the export int8 starts from),
    inputs.npz (images through the runtime's preprocessing, texts through its tokenizer)."""
    from mmsearch_export import export_bundle

    kind, n_images, n_texts = ACCURACY_MODELS[name]
    folder = ACCURACY_DIR / (name if kind == "fixture" else f"{name}-s{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "fixture":
        bundle = FIXTURE  # its checkpoint is not kept: int8 from its fused fp32 graph, and its shipped int8
    else:
        bundle = folder / "bundle"
        if not (bundle / "manifest.json").exists():
            from mmsearch_export import tiny

            if kind == "vit-b-32":
                ckpt = vitb32_checkpoint() if seed == 0 else tiny.make_clip_checkpoint(folder / "checkpoint", preset="vit-b-32", seed=seed)
            else:
                make = {"clip": tiny.make_clip_checkpoint, "siglip": tiny.make_siglip_checkpoint,
                        "chinese_clip": tiny.make_chinese_clip_checkpoint}[kind]
                ckpt = make(folder / "checkpoint", seed=seed)
            say(f"{name} seed {seed}: exporting fp32")
            export_bundle(ckpt, bundle, name=name, variants=("fp32",), overwrite=True)
        if not all((folder / f"plain.{t}.onnx").exists() for t in ("image", "text")):
            from mmsearch_export import manifest as mf
            from mmsearch_export import to_onnx, tower_specs
            from mmsearch_export.towers import load_checkpoint

            ckpt_dir = Path(json.loads((bundle / "manifest.json").read_text())["source"])
            ck = load_checkpoint(ckpt_dir)
            for tower, t in tower_specs(ck, mf.image_spec(ck), mf.text_spec(ck)).items():
                to_onnx.export_tower(t["module"], t["example"], folder / f"plain.{tower}.onnx", t["inputs"], t["output"], t["axes"])
    if not (folder / "inputs.npz").exists():
        from mmsearch.bundle import load_bundle
        from mmsearch.encoder import load_tokenizer
        from mmsearch.preprocess import preprocess_image
        from mmsearch_export.validate import captioned_images, validation_texts

        b = load_bundle(bundle)
        spec = b.image_spec
        pairs = captioned_images(n_images, spec.size[0], seed=seed + 11)
        pixels = np.stack([preprocess_image(img, spec) for img, _ in pairs]).astype(np.float32)
        texts = [c for _, c in pairs][: max(0, n_texts - 16)] + validation_texts(16, seed=seed)
        tok = load_tokenizer(b)
        arrays: dict[str, np.ndarray] = {"pixel_values": pixels}
        for i in range(0, len(texts), 16):  # batches as the runtime sends them, padded to their longest
            enc = tok.encode_batch(texts[i : i + 16])
            arrays[f"input_ids.{i // 16}"] = np.asarray([e.ids for e in enc], dtype=np.int64)
            if "attention_mask" in b.text_spec.inputs:
                arrays[f"attention_mask.{i // 16}"] = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        np.savez(folder / "inputs.npz", **arrays)
    for choice, opts in INT8_CHOICES.items():
        for tower in ("image", "text"):
            out = folder / f"int8.{_slug(choice)}.{tower}.onnx"
            if not out.exists():
                from mmsearch_export import to_onnx

                src = bundle / f"{tower}.fp32.onnx" if kind == "fixture" else folder / f"plain.{tower}.onnx"
                to_onnx.to_int8(src, out, dict(INT8_BASE, **opts))
    return folder


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def int8_measure(folders: list[Path], threads: int) -> dict[str, Any]:
    """Min/mean cosine of every int8 build against the fp32 graph, both run here (onnxruntime + numpy only)."""
    rows = []
    for folder in folders:
        data = np.load(folder / "inputs.npz")
        bundle = FIXTURE if folder.name == "toyclip" else folder / "bundle"
        feeds = {"image": [{"pixel_values": data["pixel_values"]}], "text": []}
        for i in range(len([k for k in data.files if k.startswith("input_ids.")])):
            f = {"input_ids": data[f"input_ids.{i}"]}
            if f"attention_mask.{i}" in data.files:
                f["attention_mask"] = data[f"attention_mask.{i}"]
            feeds["text"].append(f)
        for tower in ("image", "text"):
            def outputs(path: Path) -> np.ndarray:
                s = _ort_session(path, threads)
                return np.concatenate([s.run(None, f)[0] for f in feeds[tower]]).astype(np.float32)

            t0 = time.perf_counter()
            ref = outputs(bundle / f"{tower}.fp32.onnx")
            builds = {c: folder / f"int8.{_slug(c)}.{tower}.onnx" for c in INT8_CHOICES}
            if folder.name == "toyclip":
                builds = {"shipped (s8, plain export)": bundle / f"{tower}.int8.onnx",
                          **{f"{c} (from fused)": p for c, p in builds.items()}}
            for choice, path in builds.items():
                got = outputs(path)
                cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
                rows.append({"model": folder.name, "tower": tower, "choice": choice, "n": int(len(cos)),
                             "min_cosine": round(float(cos.min()), 5), "mean_cosine": round(float(cos.mean()), 5)})
            say(f"{folder.name} {tower}: {len(builds)} builds in {time.perf_counter() - t0:.0f} s")
    return {"isa": isa_name(), "onnxruntime": _ort_version(), "rows": rows}


def int8_accuracy(models: list[str], seeds: list[int], emulate: list[str], threads: int, json_path: str | None) -> int:
    import subprocess

    folders = []
    for name in models:
        for seed in ([0] if ACCURACY_MODELS[name][0] == "fixture" else seeds):
            folders.append(_accuracy_model(name, seed))
    results = [int8_measure(folders, threads)]
    for cpu in emulate:  # the same measurement in a process whose CPUID is an emulated CPU's
        out = ACCURACY_DIR / f"measure.{cpu}.json"
        cmd = ["qemu-x86_64", "-cpu", cpu, sys.executable, "-m", "benchmarks.encoders", "--int8-measure",
               str(out), "--threads", str(threads), "--", *map(str, folders)]
        say(f"emulated {cpu}: {' '.join(cmd[:6])} ... (slow)")
        env = dict(os.environ, MMSEARCH_NO_ORT_CACHE="1")
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stderr=subprocess.DEVNULL if not os.environ.get("VERBOSE") else None)
        r = json.loads(out.read_text())
        r["emulated"] = cpu
        results.append(r)
    heads = [r["isa"] + (f" (qemu {r['emulated']})" if r.get("emulated") else "") for r in results]
    print(f"\nint8 min cosine vs fp32 (mean in brackets), onnxruntime {results[0]['onnxruntime']}, {threads} threads")
    for i, h in enumerate(heads):
        print(f"  [{i}] {h}")
    print(f"  {'model':16} {'tower':5} {'int8 build':46} " + " ".join(f"{'[' + str(i) + ']':>18}" for i in range(len(heads))))
    for j, row in enumerate(results[0]["rows"]):
        cells = []
        for r in results:
            x = r["rows"][j]
            cells.append(f"{x['min_cosine']:.4f} ({x['mean_cosine']:.4f})")
        print(f"  {row['model']:16} {row['tower']:5} {row['choice']:46} " + " ".join(f"{c:>18}" for c in cells))
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
        say(f"wrote {json_path}")
    return 0


CONSISTENCY_MODELS = ("toyclip", "vit-b-32", "tiny-clip", "tiny-siglip", "tiny-cn-clip")
CONSISTENCY_DIR = BENCH_DIR / "batch-consistency"


def _consistency_bundle(name: str) -> Path:
    """A bundle with every variant: the fixture, the cached ViT-B/32, or a tiny model exported once."""
    if name == "toyclip":
        return FIXTURE
    if name == "vit-b-32":
        return vitb32_bundle()
    out = CONSISTENCY_DIR / name
    if not (out / "manifest.json").exists():
        from mmsearch_export import export_bundle, tiny

        make = {"tiny-clip": tiny.make_clip_checkpoint, "tiny-siglip": tiny.make_siglip_checkpoint,
                "tiny-cn-clip": tiny.make_chinese_clip_checkpoint}[name]
        say(f"{name}: exporting every variant")
        export_bundle(make(CONSISTENCY_DIR / f"{name}-checkpoint", seed=0), out, name=name, overwrite=True)
    return out


def _consistency_inputs(bundle_path: Path, n: int = 32) -> tuple[np.ndarray, list[str]]:
    from mmsearch.bundle import load_bundle
    from mmsearch.models.gates import captioned_images
    from mmsearch.preprocess import preprocess_image

    from benchmarks.common import realistic_photo

    spec = load_bundle(bundle_path).image_spec
    h, w = spec.size
    from PIL import Image

    pictures = [img for img, _ in captioned_images(n // 2, max(h, w), seed=5)]
    pictures += [Image.fromarray(realistic_photo(seed, 3 * w // 2, h)) for seed in range(n - len(pictures))]
    pixels = np.stack([preprocess_image(img, spec) for img in pictures]).astype(np.float32)
    words = ("a photo of a red car parked near the old harbour at dawn while gulls circle over fishing boats and "
             "children walk to school past the bakery on the corner of the quiet street in the rain").split()
    texts = [" ".join(words[(3 * i) % len(words) :][: 1 + (i * 7) % 60]) or "cat" for i in range(n)]
    return pixels, texts


def consistency_measure(names: list[str], only: set[str] | None = None) -> dict[str, Any]:
    """Min cosine alone vs in a batch of 32, per model, variant and tower (onnxruntime + numpy only)."""
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import ImageEncoder, TextEncoder, load_tokenizer
    from mmsearch.runtime import create_session, cuda_works

    rows = []
    for name in names:
        path = _consistency_bundle(name) if name in CONSISTENCY_MODELS else Path(name)
        bundle = load_bundle(path)
        pixels, texts = _consistency_inputs(path)
        variants = [v for v in bundle.variants if (v != "fp16" or cuda_works()[0]) and (not only or v in only)]
        for variant in variants:
            device = "cuda" if variant == "fp16" else "cpu"
            for tower in ("image", "text"):
                session, _ = create_session(bundle.tower_path(variant, tower), device, prepack=False)
                out = session.get_outputs()[0].name
                if tower == "image":
                    together = session.run([out], {bundle.image_spec.input: pixels})[0]
                    alone = np.concatenate([session.run([out], {bundle.image_spec.input: pixels[i : i + 1]})[0]
                                            for i in range(len(pixels))])
                    enc = ImageEncoder(bundle, variant=variant, device=device)
                    run_together, run_alone = enc.encode(pixels), np.concatenate([enc.encode(p[None]) for p in pixels])
                else:
                    tok = load_tokenizer(bundle)
                    def feeds(batch: list[str]) -> dict[str, np.ndarray]:
                        e = tok.encode_batch(batch)
                        f = {"input_ids": np.asarray([x.ids for x in e], np.int64)}
                        if "attention_mask" in bundle.text_spec.inputs:
                            f["attention_mask"] = np.asarray([x.attention_mask for x in e], np.int64)
                        return f
                    together = session.run([out], feeds(texts))[0]
                    alone = np.concatenate([session.run([out], feeds([t]))[0] for t in texts])
                    enc = TextEncoder(bundle, variant=variant, device=device)
                    run_together, run_alone = enc.encode(texts), np.concatenate([enc.encode([t]) for t in texts])

                def worst(a: np.ndarray, b: np.ndarray) -> float:
                    a = a / np.linalg.norm(a, axis=1, keepdims=True)
                    b = b / np.linalg.norm(b, axis=1, keepdims=True)
                    return round(float((a * b).sum(1).min()), 7)

                rows.append({"model": name, "variant": variant, "tower": tower,
                             "one session call": worst(together, alone), "runtime": worst(run_together, run_alone)})
            say(f"{name} {variant}: done")
    return {"isa": isa_name(), "onnxruntime": _ort_version(), "rows": rows}


def consistency_speed(names: list[str], rounds: int) -> list[dict[str, Any]]:
    """Images/s and texts/s of int8 towers: a batch of 32 in one call against 32 calls of one,
    alternating rounds; the median round."""
    from mmsearch.bundle import load_bundle
    from mmsearch.encoder import ImageEncoder, TextEncoder

    rows = []
    for name in names:
        path = _consistency_bundle(name) if name in CONSISTENCY_MODELS else Path(name)
        bundle = load_bundle(path)
        if "int8" not in bundle.variants:
            continue
        pixels, texts = _consistency_inputs(path)
        for tower in ("image", "text"):
            enc = (ImageEncoder if tower == "image" else TextEncoder)(bundle, variant="int8", device="cpu")
            items = pixels if tower == "image" else texts
            times: dict[str, list[float]] = {"batch of 32, one call": [], "one at a time": []}
            for r in range(rounds + 1):
                for way in times:
                    enc._tower.max_batch = None if way.startswith("batch") else 1  # noqa: SLF001
                    t = time.perf_counter()
                    enc.encode(items)
                    if r:
                        times[way].append(time.perf_counter() - t)
            medians = {way: statistics.median(t) for way, t in times.items()}
            rows.append({"model": name, "tower": tower, "isa": isa_name(),
                         **{f"{way} /s": round(len(items) / m, 1) for way, m in medians.items()},
                         "one at a time / batch": round(medians["batch of 32, one call"] / medians["one at a time"], 3)})
            say(f"{name} {tower}: {rows[-1]}")
    return rows


def batch_consistency(names: list[str], emulate: list[str], rounds: int, json_path: str | None,
                      emulated_variants: str = "") -> int:
    import subprocess

    for name in names:
        if name in CONSISTENCY_MODELS:
            _consistency_bundle(name)
    results = [consistency_measure(names)]
    for cpu in emulate:
        out = CONSISTENCY_DIR / f"measure.{cpu}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["qemu-x86_64", "-cpu", cpu, sys.executable, "-m", "benchmarks.encoders", "--consistency-measure",
               str(out), "--models", ",".join(names), "--emulated-variants", emulated_variants]
        say(f"emulated {cpu}: {' '.join(cmd[:6])} ... (slow)")
        env = dict(os.environ, MMSEARCH_NO_ORT_CACHE="1", MMSEARCH_HOME=str(CONSISTENCY_DIR / f"home-{cpu}"))
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        r = json.loads(out.read_text())
        r["emulated"] = cpu
        results.append(r)
    print(f"\nmin cosine, alone vs in a batch of 32: one session call (before) / the runtime (now); "
          f"onnxruntime {results[0]['onnxruntime']}")
    heads = [r["isa"] + (f" (qemu {r['emulated']})" if r.get("emulated") else "") for r in results]
    for i, h in enumerate(heads):
        print(f"  [{i}] {h}")
    print(f"  {'model':14} {'variant':7} {'tower':5} " + " ".join(f"{'[' + str(i) + ']':>22}" for i in range(len(heads))))
    for row in results[0]["rows"]:
        cells = []
        for r in results:
            same = [x for x in r["rows"] if (x["model"], x["variant"], x["tower"]) == (row["model"], row["variant"], row["tower"])]
            cells.append(f"{same[0]['one session call']:.6f} / {same[0]['runtime']:.6f}" if same else "-")
        print(f"  {row['model']:14} {row['variant']:7} {row['tower']:5} " + " ".join(f"{c:>22}" for c in cells))
    speed = consistency_speed([n for n in names], rounds)
    print("\nint8 speed, native: " + heads[0])
    for row in speed:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "isa"))
    if json_path:
        Path(json_path).write_text(json.dumps({"accuracy": results, "speed": speed}, indent=2) + "\n")
        say(f"wrote {json_path}")
    return 0


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoders", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per candidate (default 7)")
    ap.add_argument("--explore", action="store_true", help="CPU: also time int8 builds with other settings")
    ap.add_argument("--int8-choices", action="store_true",
                    help="CPU: also time the int8 builds of INT8_CHOICES (those --int8-accuracy measures)")
    ap.add_argument("--threads", type=int, help="CPU: threads for torch and onnxruntime (default: every core)")
    ap.add_argument("--int8-accuracy", action="store_true",
                    help="min cosine of int8 builds (INT8_CHOICES) vs fp32 on each model, on this CPU and --emulate ones")
    ap.add_argument("--models", default=",".join(ACCURACY_MODELS), help="--int8-accuracy: which models")
    ap.add_argument("--seeds", default="0", help="--int8-accuracy: random-weight seeds of the generated models")
    ap.add_argument("--emulate", default="", metavar="CPU,...",
                    help="--int8-accuracy: also measure under qemu-x86_64 -cpu CPU (e.g. Haswell-noTSX-IBRS: AVX2, no VNNI)")
    ap.add_argument("--int8-measure", metavar="OUT", help=argparse.SUPPRESS)  # the measuring half, run under qemu
    ap.add_argument("--batch-consistency", action="store_true",
                    help="min cosine of each input alone vs in a batch of 32, every shipped tower and variant")
    ap.add_argument("--consistency-measure", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--emulated-variants", default="",
                    help="--batch-consistency: only these variants under --emulate (e.g. int8: fp32 ViT-B/32 takes hours there)")
    ap.add_argument("folders", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.consistency_measure:
        only = {v for v in args.emulated_variants.split(",") if v} or None
        Path(args.consistency_measure).write_text(json.dumps(consistency_measure(args.models.split(","), only)))
        return 0
    if args.batch_consistency:
        names = CONSISTENCY_MODELS if args.models == ",".join(ACCURACY_MODELS) else args.models.split(",")
        return batch_consistency(list(names), [c for c in args.emulate.split(",") if c], args.rounds, args.json,
                                 args.emulated_variants)
    if args.int8_measure:
        Path(args.int8_measure).write_text(json.dumps(int8_measure([Path(f) for f in args.folders], args.threads or 2)))
        return 0
    if args.int8_accuracy:
        return int8_accuracy(args.models.split(","), [int(s) for s in args.seeds.split(",")],
                             [c for c in args.emulate.split(",") if c], args.threads or _threads(), args.json)
    result = (bench_cpu(args.rounds, args.explore, args.threads, args.int8_choices) if args.device == "cpu"
              else bench_cuda(args.rounds))
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": os.cpu_count(), "affinity": _threads()}
    result["bundle"] = str(vitb32_bundle())
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
