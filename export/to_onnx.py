"""Towers to ONNX files: export, fuse, fp16, int8.

- ``export_tower``: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``) at opset
  17, dynamic batch (and dynamic sequence length where the tower allows it).
- ``optimize``: onnxruntime's transformer optimizer as ``model_type="clip"`` with the python fusions
  only (``opt_level=0``), so the file holds standard and contrib ops that both the CPU and the CUDA
  provider run and the session applies its own graph optimizations at load time. Attention, layer
  norm (Skip/LayerNormalization) and QuickGelu get fused; the counts go to the manifest.
- ``to_fp16``: the fused graph in float16 for the CUDA provider, float32 inputs and outputs kept.
- ``to_int8``: dynamic quantization of the weights (``quantize_dynamic``) for the CPU provider,
  from the plain export by default (see INT8_OPTIONS for why).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

OPSET = 17

# Op types worth counting in a fused/quantized graph (what the manifest's "fused" records).
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "QAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "EmbedLayerNormalization",
    "QuickGelu",
    "Gelu",
    "FastGelu",
    "BiasGelu",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "ConvInteger",
)

# Quantization settings for the int8 variant, chosen by measurement on both kinds of x86 int8 kernel
# (benchmarks/encoders.py --int8-accuracy --emulate Haswell-noTSX-IBRS, and --int8-choices; onnxruntime
# 1.31, 2 cores with AVX-512 VNNI, and the same CPU under qemu as an AVX2 CPU without VNNI):
# - reduce_range (7-bit weights): without VNNI, onnxruntime's u8 x s8 kernels sum pairs of products in
#   16 bits (vpmaddubsw), which saturates for 8-bit weights: tiny SigLIP's image tower gave min cosine
#   0.855 vs fp32 there (0.9995 with VNNI; seeds 1 and 2: 0.592 text, 0.697 image). 7-bit weights
#   (|w| <= 64) cannot saturate (2 x 255 x 64 < 2^15): every shipped tower (tiny CLIP, SigLIP and
#   Chinese-CLIP at seeds 0-2, the toyclip fixture, ViT-B/32) gives >= 0.996 on both paths, with the
#   same figures on both to 4 decimals.
# - per_channel: with reduce_range, ViT-B/32's towers come closer (text 0.9971 -> 0.9983, mean 0.9977
#   -> 0.9986; image 0.9994 -> 0.9996; the tiny ones either way, 0.9968-0.9999), for ~1.5% of image
#   throughput with VNNI (63.9 vs 64.9 images/s, 1 thread, batch 32) and ~3% of text latency (4.87
#   vs 4.71 ms). Without reduce_range it saturates more (tiny SigLIP image 0.816 on AVX2).
# - s8 weights: u8 weights never saturate either, but take half the speed with VNNI (33 vs 65 images/s).
# - Conv (the patch embedding) stays float32: ConvInteger was ~20% of the int8 image tower's time,
#   a float Conv ~5% (op_types without "Conv": +20% images/s).
# - quantized from the plain export, not the fused graph: onnxruntime's own session-level fusions
#   (DynamicQuantizeMatMul, MatMulIntegerToFloat, LayerNormalization) beat the transformer
#   optimizer's QAttention + SkipLayerNormalization path on the CPU (about 57 vs 44 images/s, same
#   min cosine); the text tower at batch 1 is the same either way.
# mmsearch/int8_check.py still checks each int8 tower on the CPU it runs on.
INT8_OPTIONS: dict[str, Any] = {
    "per_channel": True,
    "reduce_range": True,
    "weight_type": "QInt8",
    "op_types": ["MatMul", "Attention", "Gather"],  # Gather: the token embedding table, 4x smaller
    "from_fused": False,
}


@contextlib.contextmanager
def _quiet():
    """torch's exporter and onnxruntime's tools print warnings meant for their developers."""
    logger_names = ("onnxruntime", "root", "fusion_base", "onnx_model", "onnx_model_bert", "fusion_utils")
    levels = {name: logging.getLogger(name if name != "root" else None).level for name in logger_names}
    for name in logger_names:
        logging.getLogger(name if name != "root" else None).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name if name != "root" else None).setLevel(level)


def export_tower(
    module: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: Path,
    input_names: Sequence[str],
    output_name: str,
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """torch.onnx.export of one tower (TorchScript exporter, opset 17)."""
    with _quiet(), torch.inference_mode():
        torch.onnx.export(
            module,
            tuple(example),
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def optimize(src: Path, dst: Path, *, num_heads: int, hidden_size: int, model_type: str = "clip") -> dict[str, int]:
    """Fuse attention / layer norm / gelu with onnxruntime's transformer optimizer; returns op counts.

    model_type "clip" for CLIP/SigLIP encoders (pre-norm ViT/text transformers), "bert" for
    Chinese-CLIP's BERT text tower."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(
            str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        )
        model.save_model_to_file(str(dst))
    return op_counts(dst)


def to_fp16(src: Path, dst: Path) -> dict[str, int]:
    """float16 weights and compute, float32 inputs/outputs (keep_io_types), for the CUDA provider."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    with _quiet():
        model = OnnxModel(onnx.load(str(src)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst))
    return op_counts(dst)


def to_int8(src: Path, dst: Path, options: dict[str, Any] | None = None) -> dict[str, int]:
    """Dynamic int8 quantization of the weights (activations quantized at run time), for the CPU."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = dict(INT8_OPTIONS, **(options or {}))
    exclude = list(opts.get("nodes_to_exclude") or [])
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # contrib ops defeat ONNX shape inference
    extra.update(opts.get("extra_options") or {})
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType[opts.get("weight_type", "QInt8")],
            per_channel=bool(opts["per_channel"]),
            reduce_range=bool(opts["reduce_range"]),
            op_types_to_quantize=opts["op_types"],  # None: every type quantize_dynamic knows
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
    return op_counts(dst)


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each fused / quantized op type the graph at `path` holds (zeros left out,
    except Attention, which is always reported)."""
    import onnx

    counts = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    out = {op: counts[op] for op in FUSED_OPS if counts.get(op)}
    out.setdefault("Attention", counts.get("Attention", 0))
    return dict(sorted(out.items()))


def attention_count(counts: dict[str, int]) -> int:
    return sum(counts.get(op, 0) for op in ("Attention", "MultiHeadAttention", "QAttention"))
