"""A pulled tower graph rewritten to the bundle's interface, with onnx's own API (no torch).

The bundle's towers take pixel_values float32 [N,3,H,W] and input_ids int64 [N,L] (+ attention_mask
int64) and return L2-normalised image_embeds / text_embeds (bundle.py). The pulled graphs are
rewritten to that interface rather than teaching the runtime other names, dtypes and whether to
normalise: one runtime path (encoder, int8 check, references, the optimised-graph cache) serves
exported and pulled bundles alike, and the rewrite costs a Cast and, where the source does not
normalise, four small nodes at the end.

- inputs renamed; a Cast where the source takes int32 ids (immich's "text");
- token_type_ids (BERT-like text towers) fed zeros from inside the graph;
- the source output renamed, other outputs (last_hidden_state) dropped, and an L2 normalisation
  appended where the source's output is not unit length (transformers.js's CLIP and SigLIP);
- the batch dimension: "dynamic" relabels dimension 0 of the inputs and outputs; "reshape" also turns
  the leading 1 of Reshape shapes baked in by a batch-1 export into 0 (copy the input's dimension);
  "trace" follows the batch through the graph and rewrites every shape it is folded into
  (models/batching.py: torch.nn.MultiheadAttention's [L, N*heads, d], a class token, torch's
  x[arange(N), idx]); "fixed" keeps batch 1. Whether a rewrite is right is never assumed: models/build.py runs a batch
  against the same inputs one at a time and keeps the first that agrees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .layouts import LayoutError, Tower

BATCH_MODES = ("dynamic", "reshape", "trace", "fixed")
NORMALISE_PREFIX = "mmsearch_l2norm"  # the appended nodes' names
OUTPUTS = {"image": "image_embeds", "text": "text_embeds"}
# The protobuf limit: a graph over it keeps its weights in external files, which bundles do not hold.
MAX_GRAPH_BYTES = 2**31 - 2**20


def load(path: Path) -> Any:
    """The graph with its weights (external data files beside it are read too)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise LayoutError(f"{path}: cannot be read by onnx ({type(e).__name__}: {e}); an external data file "
                          "it names may be missing") from None
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > MAX_GRAPH_BYTES:
        raise LayoutError(f"{path}: {size / 1e9:.1f} GB of weights; towers over 2 GB are not supported yet")
    return model


def adapt(path: Path, tower: str, source: Tower, *, normalise: bool, batch: str) -> tuple[Any, int]:
    """The graph at `path` with the bundle's inputs and output (see the module's docstring), and how
    many nodes the "reshape" or "trace" batch mode changed (batching.BatchTraceError where "trace"
    cannot follow the batch)."""
    from onnx import TensorProto, helper

    if batch not in BATCH_MODES:
        raise ValueError(batch)
    model = load(path)
    traced = 0
    if batch == "trace":  # on the graph as exported: its inputs still a batch of 1
        from .batching import make_batched

        traced = make_batched(model)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    inputs = {vi.name: vi for vi in graph.input}
    front: list[Any] = []
    new_inputs = []
    wanted_type = TensorProto.FLOAT if tower == "image" else TensorProto.INT64
    batch_dim: int | str = 1 if batch == "fixed" else "batch"

    for new_name, old_name in source.inputs.items():
        vi = inputs.get(old_name)
        if vi is None:
            raise LayoutError(f"{path}: no input {old_name!r}")
        dims = _dims(vi)
        dims[0] = batch_dim
        new_inputs.append(helper.make_tensor_value_info(new_name, wanted_type, dims))
        old_type = vi.type.tensor_type.elem_type
        if old_type == wanted_type:
            _rename(graph, old_name, new_name)
        else:  # immich's towers take int32 ids
            front.append(helper.make_node("Cast", [new_name], [old_name], to=old_type, name=f"mmsearch_cast_{old_name}"))
    ids = "input_ids"
    for name in source.zero_inputs:
        vi = inputs[name]
        zero = helper.make_tensor("zero", vi.type.tensor_type.elem_type, [1], [0])
        front += [helper.make_node("Shape", [ids], [f"mmsearch_shape_{name}"], name=f"mmsearch_shape_{name}"),
                  helper.make_node("ConstantOfShape", [f"mmsearch_shape_{name}"], [name], value=zero,
                                   name=f"mmsearch_zeros_{name}")]
    initializers = {t.name for t in graph.initializer}
    kept = [vi for vi in graph.input if vi.name in initializers]  # older exports list weights as inputs
    del graph.input[:]
    graph.input.extend(new_inputs + kept)

    out_vi = next((o for o in graph.output if o.name == source.output), None)
    if out_vi is None:
        raise LayoutError(f"{path}: no output {source.output!r}")
    out_dims = _dims(out_vi)
    if out_dims:
        out_dims[0] = batch_dim
    final = OUTPUTS[tower]
    raw = f"{source.output}__source"
    _rename(graph, source.output, raw)
    tail = []
    if normalise:
        tail = _normalisation(graph, raw, final, opset)
    else:
        tail.append(helper.make_node("Identity", [raw], [final], name="mmsearch_output"))
    nodes = front + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(final, TensorProto.FLOAT, out_dims or None))

    if batch != "fixed":
        del graph.value_info[:]  # shapes inferred at batch 1 would contradict a batch of N
    changed = _unbake_reshapes(graph) if batch == "reshape" else traced
    return model, changed


def _normalisation(graph: Any, raw: str, final: str, opset: int) -> list[Any]:
    """final = raw / |raw| along the last axis, computed as y = raw / max|raw|, then y / |y|: the same
    in float32, and no square can overflow in the fp16 variant (every |y| <= 1, and |y| >= 1 where raw
    is not all zeros). A tiny constant is added to both divisors, so an all-zero row stays zero; Add
    rather than Max, which onnxruntime's float16 converter keeps in float32."""
    from onnx import helper, numpy_helper

    p = NORMALISE_PREFIX

    def const(name: str, value: Any, dtype: Any) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), f"{p}_{name}"))
        return f"{p}_{name}"

    def reduce(op: str, x: str, out: str, axes_input_from: int) -> Any:
        if opset >= axes_input_from:  # axes became an input: ReduceSum at opset 13, ReduceMax at 18
            return helper.make_node(op, [x, const(f"{out}_axes", [-1], np.int64)], [f"{p}_{out}"], keepdims=1,
                                    name=f"{p}_{out}")
        return helper.make_node(op, [x], [f"{p}_{out}"], axes=[-1], keepdims=1, name=f"{p}_{out}")

    tiny = const("tiny", 1e-30, np.float32)
    return [
        helper.make_node("Abs", [raw], [f"{p}_abs"], name=f"{p}_abs"),
        reduce("ReduceMax", f"{p}_abs", "max", 18),
        helper.make_node("Add", [f"{p}_max", tiny], [f"{p}_scale"], name=f"{p}_scale"),
        helper.make_node("Div", [raw, f"{p}_scale"], [f"{p}_y"], name=f"{p}_y"),
        helper.make_node("Mul", [f"{p}_y", f"{p}_y"], [f"{p}_sq"], name=f"{p}_sq"),
        reduce("ReduceSum", f"{p}_sq", "sum", 13),
        helper.make_node("Sqrt", [f"{p}_sum"], [f"{p}_norm"], name=f"{p}_norm"),
        helper.make_node("Add", [f"{p}_norm", tiny], [f"{p}_safe"], name=f"{p}_safe"),
        helper.make_node("Div", [f"{p}_y", f"{p}_safe"], [final], name=f"{p}_div"),
    ]


def save(model: Any, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def _dims(vi: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim]


def _rename(graph: Any, old: str, new: str) -> None:
    """Every use and production of tensor `old` becomes `new` (subgraphs of If/Loop/Scan too)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for attr in node.attribute:
            if attr.HasField("g"):
                _rename(attr.g, old, new)
            for sub in attr.graphs:
                _rename(sub, old, new)
    for vi in list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _unbake_reshapes(graph: Any) -> int:
    """Reshape targets like [1, 50, 12, 64], baked by a batch-1 export: the leading 1 becomes 0 (take
    the input's first dimension). Returns how many were changed."""
    from onnx import numpy_helper

    constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        shape = constants.get(node.input[1])
        if shape is None or shape.ndim != 1 or len(shape) < 2 or shape[0] != 1 or 0 in shape:
            continue
        target = shape.astype(np.int64).copy()
        target[0] = 0
        name = f"mmsearch_batch_shape_{changed}"
        graph.initializer.append(numpy_helper.from_array(target, name))
        node.input[1] = name
        changed += 1
    return changed
