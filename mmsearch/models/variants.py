"""The variants of a bundle's towers, made with onnxruntime's and onnx's own tools (no torch): fused
attention, fp16 for CUDA, int8 for the CPU, and the op counts the manifest records.

Used by the export step (mmsearch_export/to_onnx.py re-exports these) and by `mmsearch models pull/import`,
so a pulled bundle's variants are made exactly as an exported one's. onnx and onnxruntime's tools are
imported when a function runs, never at import.

- ``optimize``: onnxruntime's transformer optimizer (``model_type="clip"`` or ``"bert"``) with the
  python fusions only (``opt_level=0``), so the file holds standard and contrib ops that both the CPU
  and the CUDA provider run and the session applies its own graph optimizations at load time.
- ``to_fp16``: the graph in float16 for the CUDA provider, float32 inputs and outputs kept.
- ``to_int8``: dynamic quantization of the weights (``quantize_dynamic``) for the CPU provider, with
  INT8_OPTIONS (see there for why each setting).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

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
def quiet():
    """onnxruntime's tools (and torch's exporter) print warnings meant for their developers."""
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


def optimize(src: Path, dst: Path, *, num_heads: int = 0, hidden_size: int = 0, model_type: str = "clip",
             shape_inference: bool = True) -> dict[str, int]:
    """Fuse attention / layer norm / gelu with onnxruntime's transformer optimizer; returns op counts.

    model_type "clip" for CLIP/SigLIP encoders (pre-norm ViT/text transformers), "bert" for
    BERT-like text towers (Chinese-CLIP, XLM-RoBERTa). num_heads and hidden_size 0: the optimizer
    reads them from the graph (attention is fused only where they are known). shape_inference: the
    optimizer's symbolic shape inference, which needs sympy (torch brings it; a pull does without:
    on CLIP towers the same nodes fuse either way)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(model_type)
    options.enable_shape_inference = shape_inference
    with quiet():
        model = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, optimization_options=options)
        model.save_model_to_file(str(dst))
    return op_counts(dst)


def to_fp16(src: Path, dst: Path, shape_inference: bool = True) -> dict[str, int]:
    """float16 weights and compute, float32 inputs/outputs (keep_io_types), for the CUDA provider.
    shape_inference: onnxruntime's symbolic shape inference and its cleanup of useless casts (needs
    sympy); else onnxruntime's float16 converter alone, every op in float16."""
    import onnx

    with quiet():
        if shape_inference:
            from onnxruntime.transformers.onnx_model import OnnxModel

            model = OnnxModel(onnx.load(str(src)))
            model.convert_float_to_float16(keep_io_types=True)
            _drop_repeated_nodes(model.model.graph)
            model.save_model_to_file(str(dst))
        else:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Everything in float16: without symbolic shape inference the converter does not know the
            # types past contrib ops, so it could not cast around the ops it would keep in float32.
            converted = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=[])
            _drop_repeated_nodes(converted.graph)
            onnx.save(converted, str(dst))
    return op_counts(dst)


def _drop_repeated_nodes(graph: Any) -> None:
    """onnxruntime's float16 converter casts a float16 tensor back to float32 once for every kept-float32
    node that reads it, each time under the same node and tensor name: an invalid graph where two kept
    nodes share an input. The copies are identical, so one is kept."""
    seen, keep = set(), []
    for node in graph.node:
        key = (node.op_type, node.name, tuple(node.input), tuple(node.output))
        if node.op_type == "Cast" and key in seen:
            continue
        seen.add(key)
        keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def to_int8(src: Path, dst: Path, options: dict[str, Any] | None = None) -> dict[str, int]:
    """Dynamic int8 quantization of the weights (activations quantized at run time), for the CPU."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = dict(INT8_OPTIONS, **(options or {}))
    exclude = list(opts.get("nodes_to_exclude") or [])
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # contrib ops defeat ONNX shape inference
    extra.update(opts.get("extra_options") or {})
    with quiet():
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
