"""A graph traced at batch 1 (immich's towers: torch.onnx.export without dynamic axes) made to take a
batch, by following where the batch goes.

torch's exporter folds every shape into constants when the inputs are static, so the batch of 1 is baked
into Reshape targets, and not always as a leading 1: torch.nn.MultiheadAttention (open_clip's attention)
reshapes [L, N, E] to [L, N*heads, head_dim] and back to [L*N, E], folding the batch into another axis.
Relabelling the input, or turning leading 1s into 0s (graphs.py's "dynamic" and "reshape"), cannot fix
those. Here the batch is followed from the input through every node: for each tensor, the axis that
holds the batch factor and how much of that axis lies inside it (`inner`: 1 where the batch is the
axis's innermost factor, heads for [L, N*heads, d]). A Reshape keeps the batch at the same place in the
flattened order; where that place is the boundary between two axes, either could take it, and the
choice is made by what follows (a MatMul must not contract over the batch, a Softmax or LayerNorm must
not normalise over it, two batched operands must meet on a leading axis): the search tries the choices
in turn and keeps the first under which every node is consistent. Then each such Reshape target gets
-1 where the batch goes; batch-free inputs concatenated with batched ones (a class token) are expanded
to the batch; torch's `x[arange(N), idx]` (CLIP's pooling at the end token), whose arange was folded to
[0], gets its offsets computed from the batch.

Nothing here is assumed right: models/build.py runs a batch against the same inputs one at a time and
keeps the rewrite only where they agree. Graphs whose batch goes through an op not known here are left
as they are (BatchTraceError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MmsearchError

# Element-wise and shape-preserving ops: the batch stays where it is.
_SAME = {"Identity", "Cast", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Neg", "Abs", "Exp", "Log", "Not", "Gelu",
         "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Dropout", "FastGelu", "QuickGelu", "Softplus", "HardSigmoid",
         "IsNaN", "Clip"}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And",
              "Or", "Xor", "Max", "Min", "Mod", "Where", "BitShift", "PRelu"}
_REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1", "ReduceProd", "ReduceSumSquare",
           "ReduceLogSumExp"}
_MAX_STEPS = 200_000  # node visits over every branch of the search, then give up


class BatchTraceError(MmsearchError):
    """The batch's path through a graph could not be followed (an op not known here, or no consistent choice)."""


@dataclass(frozen=True)
class Loc:
    axis: int
    inner: int  # the product of the axis's factors inside the batch factor


@dataclass
class _State:
    loc: dict[str, Loc] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)  # values computed from a batched tensor's shape
    reshapes: dict[int, tuple[list[int], int]] = field(default_factory=dict)  # node -> (shape at 1, batch axis)
    expands: list[tuple[int, int, str, int]] = field(default_factory=list)  # (node, input, batched input, rank)
    offsets: list[tuple[int, str, int]] = field(default_factory=list)  # (Add node, batched input, stride)
    shape_of: dict[str, str] = field(default_factory=dict)  # a Shape node's output -> its batched input

    def copy(self) -> "_State":
        return _State(dict(self.loc), set(self.dynamic), dict(self.reshapes), list(self.expands), list(self.offsets),
                      dict(self.shape_of))


class _Violation(Exception):
    pass


def make_batched(model: Any) -> int:
    """Rewrite `model` (an onnx ModelProto whose graph inputs take a batch of 1 on axis 0) in place so
    that it takes a batch; returns the number of nodes changed. BatchTraceError where it cannot."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    shapes = observed_shapes(model)
    constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(a.t)
                    shapes[node.output[0]] = list(constants[node.output[0]].shape)
    for name, value in constants.items():
        shapes.setdefault(name, list(value.shape))
    initializers = {t.name for t in graph.initializer}
    state = _State()
    for vi in graph.input:
        if vi.name not in initializers:
            dims = shapes.get(vi.name)
            if not dims or dims[0] != 1:
                raise BatchTraceError(f"input {vi.name!r} is not a batch of 1 on its first axis")
            state.loc[vi.name] = Loc(0, 1)
    nodes = list(graph.node)
    tracer = _Tracer(nodes, shapes, constants)
    found = tracer.search(0, state)
    if found is None:
        raise BatchTraceError(tracer.why or "no consistent place for the batch")
    for out in graph.output:
        if out.name not in found.loc or found.loc[out.name] != Loc(0, 1):
            raise BatchTraceError(f"output {out.name!r} does not hold the batch on its first axis")
    return _apply(graph, nodes, found)


class _Tracer:
    def __init__(self, nodes: list[Any], shapes: dict[str, list[int]], constants: dict[str, np.ndarray]):
        self.nodes, self.shapes, self.constants = nodes, shapes, constants
        self.steps = 0
        self.why: str | None = None
        self.deepest = -1

    def search(self, start: int, state: _State) -> _State | None:
        for i in range(start, len(self.nodes)):
            self.steps += 1
            if self.steps > _MAX_STEPS:
                return None
            node = self.nodes[i]
            try:
                options = self.visit(i, node, state)
            except _Violation as e:
                if i > self.deepest:
                    self.deepest, self.why = i, f"{node.op_type} node {node.name!r}: {e}"
                return None
            if options is None:
                continue
            for option in options:  # a choice: the rest of the graph decides
                branch = state.copy()
                option(branch)
                found = self.search(i + 1, branch)
                if found is not None:
                    return found
            return None
        return state

    # the rules ---------------------------------------------------------------------------------------

    def shape(self, name: str) -> list[int]:
        dims = self.shapes.get(name)
        if dims is None or any(d < 0 for d in dims):
            raise _Violation(f"no static shape for {name!r}")
        return dims

    def visit(self, i: int, node: Any, s: _State) -> list[Any] | None:
        ins = [n for n in node.input]
        batched = [n for n in ins if n in s.loc]
        op = node.op_type
        if not batched:
            if op == "ConstantOfShape" and ins[0] in s.shape_of:  # e.g. torch.ones(x.shape)
                s.loc[node.output[0]] = s.loc[s.shape_of[ins[0]]]
            elif op in ("Reshape", "Expand", "ConstantOfShape", "Range", "Tile") and any(n in s.dynamic for n in ins if n):
                raise _Violation("a tensor shaped by the batch from no batched input")
            elif any(n in s.dynamic for n in ins if n):
                s.dynamic.update(node.output)
            return None
        if op == "Shape":
            s.dynamic.update(node.output)
            if len(node.attribute) == 0:
                s.shape_of[node.output[0]] = ins[0]
            return None
        out = node.output[0]
        loc = s.loc[batched[0]]
        if op in _SAME:
            s.loc[out] = loc
            return None
        if op in _BROADCAST:
            s.loc[out] = self.broadcast(node, s, out)
            return None
        if op in ("Softmax", "LogSoftmax", "LayerNormalization", "ArgMax", "ArgMin") or op in _REDUCE:
            s.loc[out] = self.reduce(node, s.loc[ins[0]], ins, op)
            if op == "LayerNormalization":
                for extra in node.output[1:]:
                    if extra:
                        s.loc[extra] = s.loc[out]
            return None
        if op == "CumSum":  # along another axis (XLM-RoBERTa's position ids from the mask)
            if ins[0] not in s.loc or ins[1] not in self.constants:
                raise _Violation("a cumulative sum along an axis that is not constant")
            if int(self.constants[ins[1]]) % len(self.shape(ins[0])) == loc.axis:
                raise _Violation("sums along the batch")
            s.loc[out] = loc
            return None
        if op == "GatherElements":  # e.g. XLM-RoBERTa's token types, a buffer gathered at the position ids
            axis = _attr(node, "axis", 0) % len(self.shape(ins[0]))
            locs = {s.loc[n] for n in ins[:2] if n in s.loc}
            if ins[1] not in s.loc or len(locs) != 1 or s.loc[ins[1]].axis == axis:
                raise _Violation("gathers elements along the batch")
            if ins[0] not in s.loc:
                index = s.loc[ins[1]]
                dims = self.shape(ins[0])
                if index.inner != 1 or dims[index.axis] != 1:
                    raise _Violation(f"{ins[0]!r} has no batch and cannot be repeated to one")
                s.expands.append((i, 0, ins[1], len(dims)))
            s.loc[out] = s.loc[ins[1]]
            return None
        if op == "Transpose":
            perm = _attr(node, "perm")
            s.loc[out] = Loc(list(perm).index(loc.axis), loc.inner)
            return None
        if op == "Unsqueeze":
            axes = self.axes(node, ins, len(self.shape(out)))
            kept = [p for p in range(len(self.shape(out))) if p not in axes]
            s.loc[out] = Loc(kept[loc.axis], loc.inner)
            return None
        if op == "Squeeze":
            axes = self.axes(node, ins, len(self.shape(ins[0])))
            if loc.axis in axes:
                raise _Violation("squeezes the batch's axis")
            s.loc[out] = Loc(loc.axis - sum(1 for a in axes if a < loc.axis), loc.inner)
            return None
        if op == "Flatten":
            dims = self.shape(ins[0])
            f = _attr(node, "axis", 1) % max(1, len(dims))
            if loc.axis < f:
                s.loc[out] = Loc(0, loc.inner * int(np.prod(dims[loc.axis + 1:f])))
            else:
                s.loc[out] = Loc(1, loc.inner * int(np.prod(dims[loc.axis + 1:])))
            return None
        if op == "Conv":
            if ins[0] not in s.loc or loc != Loc(0, 1) or len(batched) > 1:
                raise _Violation("the batch is not the first axis of a convolution's input")
            s.loc[out] = loc
            return None
        if op == "MatMul":
            s.loc[out] = self.matmul(ins, s, out)
            return None
        if op == "Gemm":
            if ins[0] not in s.loc or len(batched) > 1 or _attr(node, "transA", 0) or loc.axis != 0:
                raise _Violation("the batch is not the rows of a Gemm's first input")
            s.loc[out] = loc
            return None
        if op == "Concat":
            self.concat(i, node, s)
            return None
        if op == "Gather":
            self.gather(i, node, s)
            return None
        if op == "Slice":
            self.slice(node, ins, s)
            return None
        if op == "Expand":
            if ins[0] not in s.loc:
                raise _Violation("expands a tensor without the batch to a shape with it")
            dims_in, dims_out = self.shape(ins[0]), self.shape(out)
            s.loc[out] = Loc(loc.axis + len(dims_out) - len(dims_in), loc.inner)
            return None
        if op == "Reshape":
            return self.reshape(i, node, s)
        raise _Violation(f"the batch reaches an op this does not follow ({op})")

    def broadcast(self, node: Any, s: _State, out: str) -> Loc:
        rank = len(self.shape(out))
        found: Loc | None = None
        for name in node.input:
            if name in s.loc:
                l = s.loc[name]
                aligned = Loc(l.axis + rank - len(self.shape(name)), l.inner)
                if found is not None and aligned != found:
                    raise _Violation("operands hold the batch in different places")
                found = aligned
        assert found is not None
        carrier = next(n for n in node.input if n in s.loc)
        batch_dim = self.shape(carrier)[s.loc[carrier].axis]
        for name in node.input:
            if name and name not in s.loc:
                dims = self.shape(name)
                position = found.axis - (rank - len(dims))
                if 0 <= position < len(dims) and dims[position] != 1:
                    raise _Violation(f"{name!r} would have to repeat along the batch (dimension {dims[position]} "
                                     f"where the batch holds {batch_dim})")
        return found

    def reduce(self, node: Any, loc: Loc, ins: list[str], op: str) -> Loc:
        rank = len(self.shape(ins[0]))
        if op in ("Softmax", "LogSoftmax"):
            axes = [_attr(node, "axis", -1) % rank]
            keep = True
        elif op == "LayerNormalization":
            axes = list(range(_attr(node, "axis", -1) % rank, rank))
            keep = True
        elif op in ("ArgMax", "ArgMin"):
            axes = [_attr(node, "axis", 0) % rank]
            keep = bool(_attr(node, "keepdims", 1))
        else:
            axes = self.axes(node, ins, rank) or list(range(rank))
            keep = bool(_attr(node, "keepdims", 1))
        if loc.axis in axes:
            raise _Violation("normalises or reduces over the batch")
        return loc if keep else Loc(loc.axis - sum(1 for a in axes if a < loc.axis), loc.inner)

    def axes(self, node: Any, ins: list[str], rank: int) -> list[int]:
        axes = _attr(node, "axes", None)
        if axes is None and len(ins) > 1 and ins[1]:
            if ins[1] not in self.constants:
                raise _Violation("axes that are not constant")
            axes = self.constants[ins[1]].tolist()
        return sorted(int(a) % rank for a in (axes or []))

    def matmul(self, ins: list[str], s: _State, out: str) -> Loc:
        a, b = ins
        ra, rb, rank = len(self.shape(a)), len(self.shape(b)), len(self.shape(out))
        la, lb = s.loc.get(a), s.loc.get(b)
        if la and lb:
            if la.axis > ra - 3 or lb.axis > rb - 3 or la.axis - ra != lb.axis - rb or la.inner != lb.inner:
                raise _Violation("both operands hold the batch, not on the same leading axis")
            return Loc(la.axis + rank - ra, la.inner)
        if la:
            if la.axis == ra - 1 or ra == 1:
                raise _Violation("contracts over the batch")
            return Loc(la.axis + rank - ra, la.inner)
        assert lb is not None
        if lb.axis == rb - 2 or rb == 1:
            raise _Violation("contracts over the batch")
        return Loc(lb.axis + rank - rb, lb.inner)

    def concat(self, i: int, node: Any, s: _State) -> None:
        out = node.output[0]
        rank = len(self.shape(out))
        axis = _attr(node, "axis", 0) % rank
        locs = {s.loc[n] for n in node.input if n in s.loc}
        if len(locs) > 1:
            raise _Violation("inputs hold the batch in different places")
        loc = locs.pop()
        if loc.axis == axis:
            raise _Violation("concatenates along the batch")
        carrier = next(n for n in node.input if n in s.loc)
        for position, name in enumerate(node.input):
            if name not in s.loc:
                dims = self.shape(name)
                if dims[loc.axis] != 1 or loc.inner != 1 or self.shape(carrier)[loc.axis] != 1:
                    raise _Violation(f"{name!r} has no batch and cannot be repeated to one")
                s.expands.append((i, position, carrier, len(dims)))  # e.g. the class token before the patches
        s.loc[out] = loc

    def gather(self, i: int, node: Any, s: _State) -> None:
        data, indices = node.input[0], node.input[1]
        rank = len(self.shape(data))
        g = _attr(node, "axis", 0) % rank
        ld, li = s.loc.get(data), s.loc.get(indices)
        out = node.output[0]
        r_idx = len(self.shape(indices))
        if ld and not li:
            if ld.axis == g:
                raise _Violation("gathers along the batch")
            s.loc[out] = ld if ld.axis < g else Loc(ld.axis + r_idx - 1, ld.inner)
            return
        if li and not ld:
            s.loc[out] = Loc(g + li.axis, li.inner)
            return
        assert ld and li
        # torch's x[arange(N), idx] on x flattened: data [N*L, ...] (the batch outermost in axis 0), indices
        # idx + arange(N) * L with the arange folded to [0] at batch 1
        size = self.shape(data)[g]
        if g != 0 or ld.axis != 0 or ld.inner != size or li != Loc(0, 1) or r_idx != 1:
            raise _Violation("gathers along the batch with batched indices")
        add = next((k for k in range(i) if self.nodes[k].output and self.nodes[k].output[0] == indices), None)
        producer = self.nodes[add] if add is not None else None
        if add is None or producer is None or producer.op_type != "Add":
            raise _Violation("batched indices that are not an index plus offsets")
        batched_in = [n for n in producer.input if n in s.loc]
        if len(batched_in) != 1:
            raise _Violation("offsets of the batch not found")
        s.offsets.append((add, batched_in[0], size))
        s.loc[out] = Loc(0, 1)

    def slice(self, node: Any, ins: list[str], s: _State) -> None:
        if ins[0] not in s.loc or any(n in s.loc for n in ins[1:]):
            raise _Violation("slices with batched bounds")
        loc = s.loc[ins[0]]
        dims = self.shape(ins[0])
        axes = self.constants[ins[3]].tolist() if len(ins) > 3 and ins[3] in self.constants else None
        starts = self.constants.get(ins[1])
        if axes is None:
            axes = list(range(len(starts))) if starts is not None else []
        for k, a in enumerate(int(x) % len(dims) for x in axes):
            if a == loc.axis:
                ends = self.constants.get(ins[2])
                if starts is None or ends is None or int(starts[k]) != 0 or int(ends[k]) < dims[a]:
                    raise _Violation("slices the batch's axis")
        s.loc[node.output[0]] = loc

    def reshape(self, i: int, node: Any, s: _State) -> list[Any]:
        data, target = node.input[0], node.input[1]
        loc = s.loc[data]
        if target in s.loc:
            raise _Violation("a reshape to a batched shape")
        dims_in, dims_out = self.shape(data), self.shape(node.output[0])
        stride = loc.inner * int(np.prod(dims_in[loc.axis + 1:]))
        suffix = [int(np.prod(dims_out[k:])) for k in range(len(dims_out) + 1)]  # suffix[k]: the size of axes k..
        dynamic = target in s.dynamic
        n = len(dims_out)
        explicit = [Loc(k, 1) for k in range(n) if dims_out[k] == 1 and suffix[k + 1] == stride]
        inside = [Loc(k, stride // suffix[k + 1]) for k in range(n)
                  if suffix[k + 1] < stride < suffix[k] and stride % suffix[k + 1] == 0]
        options: list[Loc] = explicit or inside
        if not options:  # at the boundary of two axes: the outermost factor of the one inside, or the
            for k in range(-1, n):  # innermost of the one outside; the rest of the graph decides
                if (suffix[k + 1] if k >= 0 else suffix[0]) == stride:
                    if k + 1 < n:
                        options.append(Loc(k + 1, dims_out[k + 1]))
                    if k >= 0:
                        options.append(Loc(k, 1))
        if not options:
            raise _Violation("the batch has no place in the new shape")

        def choose(option: Loc) -> Any:
            def apply(branch: _State) -> None:
                branch.loc[node.output[0]] = option
                if not dynamic:
                    branch.reshapes[i] = (list(dims_out), option.axis)
            return apply

        return [choose(o) for o in dict.fromkeys(options)]


def observed_shapes(model: Any) -> dict[str, list[int]]:
    """Every tensor's shape at batch 1, as onnxruntime computes it: the graph run once on zeros with each
    node's outputs made graph outputs (onnx's shape inference leaves shapes computed from shapes out)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    feeds = {}
    types = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT64: np.int64}
    initializers = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        dtype = types.get(vi.type.tensor_type.elem_type)
        if dtype is None:
            raise BatchTraceError(f"input {vi.name!r} of an element type this does not feed")
        feeds[vi.name] = np.ones(dims, dtype=dtype)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds)
    except Exception as e:
        raise BatchTraceError(f"the graph does not run at batch 1 ({type(e).__name__}: {e})") from None
    shapes = {name: list(np.shape(v)) for name, v in zip(names, values)}
    shapes.update({name: list(v.shape) for name, v in feeds.items()})
    return shapes


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _apply(graph: Any, nodes: list[Any], state: _State) -> int:
    """The rewrites the trace found: new Reshape targets, batch-free inputs expanded to the batch, and
    the offsets of a gather over a flattened batch."""
    from onnx import helper, numpy_helper

    changed = 0
    # Each new target computed from the batch (N from the first input's shape): the axis that holds the
    # batch is its size at batch 1 times N, whichever factor of it the batch is. One per distinct shape.
    first_input = next(vi.name for vi in graph.input if vi.name in state.loc)
    head: list[Any] = []
    targets: dict[tuple[tuple[int, ...], int], str] = {}
    if state.reshapes:
        graph.initializer.extend([numpy_helper.from_array(np.array([0], dtype=np.int64), "mmsearch_batch_at"),
                                  numpy_helper.from_array(np.array([1], dtype=np.int64), "mmsearch_batch_to")])
        head += [helper.make_node("Shape", [first_input], ["mmsearch_batch_shape"], name="mmsearch_batch_shape"),
                 helper.make_node("Slice", ["mmsearch_batch_shape", "mmsearch_batch_at", "mmsearch_batch_to"],
                                  ["mmsearch_batch_n"], name="mmsearch_batch_n")]
    for i, (target, axis) in state.reshapes.items():
        node = nodes[i]
        key = (tuple(target), axis)
        name = targets.get(key)
        if name is None:
            name = targets[key] = p = f"mmsearch_batch_target_{len(targets)}"
            for part, values in (("before", target[:axis]), ("after", target[axis + 1:])):
                graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), f"{p}_{part}"))
            graph.initializer.append(numpy_helper.from_array(np.array([target[axis]], dtype=np.int64), f"{p}_size"))
            parts = [f"{p}_before", f"{p}_axis", f"{p}_after"]
            head += [helper.make_node("Mul", ["mmsearch_batch_n", f"{p}_size"], [f"{p}_axis"], name=f"{p}_axis"),
                     helper.make_node("Concat", parts, [name], axis=0, name=name)]
        node.input[1] = name
        for a in list(node.attribute):
            if a.name == "allowzero":
                node.attribute.remove(a)
        changed += 1
    extra: list[tuple[int, list[Any]]] = []
    for i, position, carrier, rank in state.expands:
        node = nodes[i]
        loc = state.loc[carrier]
        p = f"mmsearch_batch_expand_{i}_{position}"
        source = node.input[position]
        ones_before = numpy_helper.from_array(np.ones(loc.axis, dtype=np.int64), f"{p}_before")
        ones_after = numpy_helper.from_array(np.ones(rank - loc.axis - 1, dtype=np.int64), f"{p}_after")
        start = numpy_helper.from_array(np.array([loc.axis], dtype=np.int64), f"{p}_start")
        stop = numpy_helper.from_array(np.array([loc.axis + 1], dtype=np.int64), f"{p}_stop")
        graph.initializer.extend([ones_before, ones_after, start, stop])
        extra.append((i, [
            helper.make_node("Shape", [carrier], [f"{p}_shape"], name=f"{p}_shape"),
            helper.make_node("Slice", [f"{p}_shape", f"{p}_start", f"{p}_stop"], [f"{p}_n"], name=f"{p}_n"),
            helper.make_node("Concat", [f"{p}_before", f"{p}_n", f"{p}_after"], [f"{p}_to"], axis=0, name=f"{p}_to"),
            helper.make_node("Expand", [source, f"{p}_to"], [f"{p}_out"], name=f"{p}_expand"),
        ]))
        node.input[position] = f"{p}_out"
        changed += 1
    for i, batched, stride in state.offsets:
        node = nodes[i]
        p = f"mmsearch_batch_offsets_{i}"
        graph.initializer.extend([numpy_helper.from_array(np.array(0, dtype=np.int64), f"{p}_zero"),
                                  numpy_helper.from_array(np.array(1, dtype=np.int64), f"{p}_one"),
                                  numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}_first"),
                                  numpy_helper.from_array(np.array(stride, dtype=np.int64), f"{p}_stride")])
        extra.append((i, [
            helper.make_node("Shape", [batched], [f"{p}_shape"], name=f"{p}_shape"),
            helper.make_node("Gather", [f"{p}_shape", f"{p}_zero"], [f"{p}_n"], axis=0, name=f"{p}_n"),
            helper.make_node("Range", [f"{p}_zero", f"{p}_n", f"{p}_one"], [f"{p}_range"], name=f"{p}_range"),
            helper.make_node("Mul", [f"{p}_range", f"{p}_stride"], [f"{p}_offsets"], name=f"{p}_mul"),
        ]))
        other = [k for k, n in enumerate(node.input) if n != batched][0]
        node.input[other] = f"{p}_offsets"
        changed += 1
    if extra or head:  # new nodes before those that use them (the graph stays in topological order)
        merged: dict[int, list[Any]] = {}
        for i, new in extra:
            merged.setdefault(i, []).extend(new)
        ordered = list(head)
        for i, node in enumerate(nodes):
            ordered.extend(merged.get(i, []))
            ordered.append(node)
        del graph.node[:]
        graph.node.extend(ordered)
    return changed

