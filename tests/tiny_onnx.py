"""Tiny random CLIP-like towers written with onnx's helper API (no torch), laid out as the two kinds
of ready ONNX repositories on the Hugging Face hub, with their real file names, input and output
names, dtypes and shapes. Where each fact comes from:

immich (repositories immich-app/ViT-B-32__openai and the like):
- file names: immich_ml/models/clip/visual.py (model_dir / "preprocess_cfg.json", cache_dir /
  "config.json") and textual.py (tokenizer.json, tokenizer_config.json); the exporter
  (export/immich_model_exporter/exporters/onnx/__init__.py) writes visual/ and textual/ with
  model.onnx (util.get_model_path) at opset 19;
- inputs and outputs: exporters/onnx/models/openclip.py exports encode_image(image, normalize=True)
  with input_names=["image"], output_names=["embedding"], an example of shape (1, 3, size, size) and
  dynamic_axes commented out (frozen at batch 1); encode_text with input "text", int32 of shape
  (1, context_length); textual.py feeds {"text": np.array([ids], dtype=np.int32)};
- preprocess_cfg.json: open_clip.get_model_preprocess_cfg (size, mode, mean, std, interpolation,
  resize_mode, fill_color), read by visual.py's OpenClipVisualEncoder;
- tokenizer_config.json's pad_token: textual.py's OpenClipTextualEncoder pads to context_length with it;
- other runtimes' files (visual/rknpu/...): exporters/rknn.py.

transformers.js (repositories Xenova/clip-vit-base-patch32 and the like):
- file names: transformers.js scripts/convert.py moves the .onnx files into onnx/ and writes
  quantized siblings (*_quantized.onnx, *_fp16.onnx) and quantize_config.json; the tokenizer and
  preprocessor configs are saved at the top;
- inputs and outputs: scripts/extra/clip.py (CLIPTextModelWithProjectionOnnxConfig: outputs
  {"text_embeds": {0: "batch_size"}}, input_ids cast to int64; CLIPVisionModelWithProjectionOnnxConfig:
  outputs {"image_embeds": {0: "batch_size"}}), on optimum's CLIPTextOnnxConfig (inputs {"input_ids":
  {0: "batch_size", 1: "sequence_length"}}) and ViTOnnxConfig (pixel_values {0: "batch_size",
  1: "num_channels", 2: "height", 3: "width"}); image_embeds and text_embeds are transformers'
  CLIP*ModelWithProjection outputs, projected but not normalised; optimum adds last_hidden_state;
- preprocessor_config.json: the openai/clip-vit-base-patch32 form (CLIPFeatureExtractor, size and
  crop_size as plain ints, resample 3).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

IMAGE, PATCH, WIDTH, HEADS, EMBED = 32, 8, 32, 2, 16
CONTEXT = 16


class _Graph:
    """A few lines per op: nodes and weights collected, names made up."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def weight(self, shape: tuple[int, ...], scale: float | None = None) -> str:
        from onnx import numpy_helper

        fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
        w = self.rng.normal(0, scale if scale is not None else 1 / np.sqrt(fan_in), shape).astype(np.float32)
        n = self.name("w")
        self.inits.append(numpy_helper.from_array(w, n))
        return n

    def const(self, value, dtype=np.int64) -> str:
        from onnx import numpy_helper

        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def layer_norm(self, x: str) -> str:
        gamma = self.const(np.ones(WIDTH), np.float32)
        beta = self.const(np.zeros(WIDTH), np.float32)
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def mlp(self, x: str) -> str:
        h = self.op("MatMul", [self.layer_norm(x), self.weight((WIDTH, 2 * WIDTH))])
        h = self.op("Mul", [h, self.op("Sigmoid", [self.op("Mul", [h, self.const(1.702, np.float32)])])])
        return self.op("Add", [x, self.op("MatMul", [h, self.weight((2 * WIDTH, WIDTH))])])

    def normalise(self, x: str) -> str:
        sq = self.op("ReduceSum", [self.op("Mul", [x, x]), self.const([-1])], keepdims=1)
        return self.op("Div", [x, self.op("Sqrt", [sq])])

    def model(self, inputs: list, outputs: list, opset: int, final: dict[str, str]):
        from onnx import helper

        for wanted, produced in final.items():  # rename the producing node's output to the graph's name
            for node in self.nodes:
                for i, o in enumerate(node.output):
                    if o == produced:
                        node.output[i] = wanted
                for i, o in enumerate(node.input):
                    if o == produced:
                        node.input[i] = wanted
        graph = helper.make_graph(self.nodes, "tower", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        return model


def _attention_batch_first(g: _Graph, x: str, seq: int | None, batch_dim: int, mask: str | None) -> str:
    """Multi-head self-attention on [B,S,D]; reshapes take the batch from their input (0) or, where
    batch_dim is 1, bake it in as a 1 (what a batch-1 export does)."""
    h = g.layer_norm(x)
    s = 0 if seq is None else seq
    heads = []
    for _ in range(3):
        t = g.op("MatMul", [h, g.weight((WIDTH, WIDTH))])
        t = g.op("Reshape", [t, g.const([batch_dim, s if s else -1, HEADS, WIDTH // HEADS])])
        heads.append(g.op("Transpose", [t], perm=[0, 2, 1, 3]))
    q, k, v = heads
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = g.op("Mul", [scores, g.const(1 / np.sqrt(WIDTH // HEADS), np.float32)])
    if mask is not None:
        scores = g.op("Add", [scores, mask])
    ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    ctx = g.op("Transpose", [ctx], perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const([batch_dim, s if s else -1, WIDTH])])
    return g.op("Add", [x, g.op("MatMul", [ctx, g.weight((WIDTH, WIDTH))])])


def image_tower(*, seed: int, frozen: bool, normalise: bool, input_name: str, output_name: str,
                extra_output: bool, opset: int):
    """Conv patches -> one attention block -> first token -> projection [B, EMBED]."""
    from onnx import TensorProto, helper

    g = _Graph(seed)
    tokens = (IMAGE // PATCH) ** 2
    b = 1 if frozen else 0
    x = g.op("Conv", [input_name, g.weight((WIDTH, 3, PATCH, PATCH), 0.05)], strides=[PATCH, PATCH])
    x = g.op("Reshape", [x, g.const([b, WIDTH, tokens])])
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    x = g.op("Add", [x, g.weight((tokens, WIDTH), 0.1)])
    x = _attention_batch_first(g, x, tokens, b, None)
    hidden = g.mlp(x)
    pooled = g.op("Gather", [g.layer_norm(hidden), g.const(0)], axis=1)
    out = g.op("MatMul", [pooled, g.weight((WIDTH, EMBED))])
    if normalise:
        out = g.normalise(out)
    batch = 1 if frozen else "batch_size"
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                            [batch, 3 if frozen else "num_channels", IMAGE if frozen else "height",
                                             IMAGE if frozen else "width"])]
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, EMBED])]
    final = {output_name: out}
    if extra_output:
        outputs.append(helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                                     [batch, "sequence_length", WIDTH]))
        final["last_hidden_state"] = hidden
    return g.model(inputs, outputs, opset, final)


def _causal(g: _Graph, size: int) -> str:
    mask = np.triu(np.full((size, size), -1e4, dtype=np.float32), k=1)
    return g.const(mask, np.float32)


def text_tower_dynamic(*, seed: int, vocab: int, eos: int, opset: int, output_name: str = "text_embeds"):
    """transformers.js's CLIP text tower: input_ids int64 [batch_size, sequence_length] -> text_embeds
    (projected, not normalised) and last_hidden_state. Causal attention and pooling at the first end
    token make it take any length (padding after the end changes nothing)."""
    from onnx import TensorProto, helper

    g = _Graph(seed)
    ids = "input_ids"
    x = g.op("Gather", [g.weight((vocab, WIDTH), 0.5), ids], axis=0)
    length = g.op("Slice", [g.op("Shape", [ids]), g.const([1]), g.const([2])])
    zero = g.const([0])
    pos = g.op("Slice", [g.weight((CONTEXT, WIDTH), 0.1), zero, length, zero])
    x = g.op("Add", [x, pos])
    mask = g.op("Slice", [_causal(g, CONTEXT), g.const([0, 0]), g.op("Concat", [length, length], axis=0),
                          g.const([0, 1])])
    x = _attention_batch_first(g, x, None, 0, mask)
    hidden = g.layer_norm(g.mlp(x))
    first_end = g.op("ArgMax", [g.op("Cast", [g.op("Equal", [ids, g.const(eos)])], to=TensorProto.INT32)],
                     axis=1, keepdims=1)  # [B,1]
    index = g.op("Unsqueeze", [first_end, g.const([2])])  # [B,1,1]
    batch = g.op("Slice", [g.op("Shape", [ids]), g.const([0]), g.const([1])])
    index = g.op("Expand", [index, g.op("Concat", [batch, g.const([1]), g.const([WIDTH])], axis=0)])
    pooled = g.op("Squeeze", [g.op("GatherElements", [hidden, index], axis=1), g.const([1])])
    out = g.op("MatMul", [pooled, g.weight((WIDTH, EMBED))])
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch_size", "sequence_length"])]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                             ["batch_size", "sequence_length", WIDTH]),
               helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch_size", EMBED])]
    return g.model(inputs, outputs, opset, {output_name: out, "last_hidden_state": hidden})


def text_tower_frozen(*, seed: int, vocab: int, eos: int, opset: int):
    """immich's open_clip text tower: "text" int32 [1, CONTEXT] -> "embedding" (unit length). Like
    open_clip's attention at batch 1, the batch is folded into the heads ([L, 1*H, d]), so no
    rewrite of a Reshape can make it take batches: it must run one text at a time."""
    from onnx import TensorProto, helper

    g = _Graph(seed)
    ids = "text"
    x = g.op("Gather", [g.weight((vocab, WIDTH), 0.5), ids], axis=0)  # [1,L,D]
    x = g.op("Add", [x, g.weight((CONTEXT, WIDTH), 0.1)])
    x = g.op("Transpose", [x], perm=[1, 0, 2])  # [L,1,D]
    h = g.layer_norm(x)
    heads = []
    for _ in range(3):
        t = g.op("MatMul", [h, g.weight((WIDTH, WIDTH))])
        t = g.op("Reshape", [t, g.const([CONTEXT, HEADS, WIDTH // HEADS])])  # batch folded into heads
        heads.append(g.op("Transpose", [t], perm=[1, 0, 2]))  # [H,L,d]
    q, k, v = heads
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])])
    scores = g.op("Add", [g.op("Mul", [scores, g.const(1 / np.sqrt(WIDTH // HEADS), np.float32)]),
                          _causal(g, CONTEXT)])
    ctx = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])], perm=[1, 0, 2])
    ctx = g.op("Reshape", [ctx, g.const([CONTEXT, 1, WIDTH])])
    x = g.op("Add", [x, g.op("MatMul", [ctx, g.weight((WIDTH, WIDTH))])])
    x = g.op("Transpose", [g.mlp(x)], perm=[1, 0, 2])  # [1,L,D]
    hidden = g.op("Squeeze", [g.layer_norm(x), g.const([0])])  # [L,D]
    first_end = g.op("ArgMax", [g.op("Cast", [g.op("Equal", [ids, g.const(eos, np.int32)])], to=TensorProto.INT32)],
                     axis=1, keepdims=0)  # [1]
    pooled = g.op("Gather", [hidden, first_end], axis=0)  # [1,D]
    out = g.normalise(g.op("MatMul", [pooled, g.weight((WIDTH, EMBED))]))
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT32, [1, CONTEXT])]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, EMBED])]
    return g.model(inputs, outputs, opset, {"embedding": out})


# -- tokenizer and repositories --------------------------------------------------------------------------


def tokenizer():
    """A CLIP-style BPE (mmsearch_export.tiny, no torch): <|startoftext|> 0, <|endoftext|> 1."""
    from mmsearch_export.tiny import sample_texts, train_bpe_tokenizer

    return train_bpe_tokenizer(sample_texts(300, seed=3), 400)


def _save(model, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def write_transformers_js(folder: Path, *, seed: int = 0, siglip: bool = False) -> Path:
    """A repository as transformers.js's conversion writes one for CLIP, or with siglip for SigLIP
    (scripts/extra/siglip.py: SiglipVisionModel and SiglipTextModel, outputs last_hidden_state and
    pooler_output, not normalised; SiglipImageProcessor's exact resize, bilinear, mean and std 0.5)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    vocab, eos = tok.get_vocab_size(), tok.token_to_id(EOS)
    image_out, text_out = ("pooler_output", "pooler_output") if siglip else ("image_embeds", "text_embeds")
    _save(image_tower(seed=seed, frozen=False, normalise=False, input_name="pixel_values", output_name=image_out,
                      extra_output=True, opset=17), folder / "onnx" / "vision_model.onnx")
    _save(text_tower_dynamic(seed=seed + 1, vocab=vocab, eos=eos, opset=17, output_name=text_out),
          folder / "onnx" / "text_model.onnx")
    for other in ("vision_model_quantized.onnx", "text_model_quantized.onnx", "vision_model_fp16.onnx",
                  "text_model_fp16.onnx"):
        (folder / "onnx" / other).write_bytes(b"not used by mmsearch " * 64)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["SiglipModel" if siglip else "CLIPModel"], "model_type": "siglip" if siglip else "clip",
        "projection_dim": EMBED,
        "text_config": {"model_type": "clip_text_model", "hidden_size": WIDTH, "num_attention_heads": HEADS,
                        "max_position_embeddings": CONTEXT, "vocab_size": vocab, "bos_token_id": 0, "eos_token_id": eos},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": WIDTH, "image_size": IMAGE,
                          "patch_size": PATCH, "num_attention_heads": HEADS},
    }, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": IMAGE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
        "resample": 3, "size": IMAGE} if not siglip else {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": IMAGE, "width": IMAGE}}, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS, "model_max_length": CONTEXT,
        "tokenizer_class": "CLIPTokenizer"}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS, "pad_token": EOS}))
    (folder / "quantize_config.json").write_text(json.dumps({"per_channel": True, "reduce_range": True}))
    (folder / "README.md").write_text("---\nlibrary_name: transformers.js\n---\n")
    return folder


def write_immich(folder: Path, *, seed: int = 10) -> Path:
    """A repository as immich's exporter writes one for an open_clip model."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    vocab, eos = tok.get_vocab_size(), tok.token_to_id(EOS)
    _save(image_tower(seed=seed, frozen=True, normalise=True, input_name="image", output_name="embedding",
                      extra_output=False, opset=19), folder / "visual" / "model.onnx")
    _save(text_tower_frozen(seed=seed + 1, vocab=vocab, eos=eos, opset=19), folder / "textual" / "model.onnx")
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [IMAGE, IMAGE], "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
        "resize_mode": "shortest", "fill_color": 0}, indent=2))
    tok.save(str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS, "model_max_length": CONTEXT}, indent=2))
    (folder / "textual" / "special_tokens_map.json").write_text(json.dumps({"pad_token": EOS}))
    (folder / "config.json").write_text(json.dumps({
        "embed_dim": EMBED,
        "vision_cfg": {"image_size": IMAGE, "layers": 1, "width": WIDTH, "head_width": WIDTH // HEADS, "patch_size": PATCH},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "width": WIDTH, "heads": HEADS, "layers": 1},
    }, indent=2))
    rknn = folder / "visual" / "rknpu" / "rk3588" / "model.rknn"
    rknn.parent.mkdir(parents=True)
    rknn.write_bytes(b"another runtime's graph " * 64)
    (folder / "README.md").write_text("---\ntags:\n - immich\n - clip\n---\n")
    return folder


def text_tower_xlmr(*, seed: int, vocab: int, pad: int, opset: int):
    """immich's XLM-RoBERTa text tower (open_clip's HFTextEncoder): "text" int32 [1, CONTEXT] padded with
    <pad> (1), the mask made inside from the ids, mean pooling over the tokens that are not padding, a
    two-layer MLP projection, "embedding" unit length; frozen at batch 1 as immich exports it."""
    from onnx import TensorProto, helper

    g = _Graph(seed)
    ids = "text"
    x = g.op("Gather", [g.weight((vocab, WIDTH), 0.5), ids], axis=0)  # [1,L,D]
    x = g.op("Add", [x, g.weight((CONTEXT, WIDTH), 0.1)])
    x = g.layer_norm(g.mlp(x))
    keep = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, g.const(pad, np.int32)])])], to=TensorProto.FLOAT)  # [1,L]
    keep3 = g.op("Unsqueeze", [keep, g.const([2])])
    total = g.op("ReduceSum", [g.op("Mul", [x, keep3]), g.const([1])], keepdims=0)  # [1,D]
    count = g.op("ReduceSum", [keep, g.const([1])], keepdims=1)  # [1,1]
    pooled = g.op("Reshape", [g.op("Div", [total, count]), g.const([1, WIDTH])])  # the batch of 1, baked in
    hidden = g.op("Gelu" if opset >= 20 else "Relu", [g.op("MatMul", [pooled, g.weight((WIDTH, WIDTH))])])
    out = g.normalise(g.op("MatMul", [hidden, g.weight((WIDTH, EMBED))]))
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT32, [1, CONTEXT])]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, EMBED])]
    return g.model(inputs, outputs, opset, {"embedding": out})


def write_immich_xlmr(folder: Path, *, seed: int = 20) -> Path:
    """A repository as immich's exporter writes XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k: an
    open_clip ViT image tower, the XLM-RoBERTa text tower above, the tokenizer saved from
    AutoTokenizer("xlm-roberta-base") (a SentencePiece Unigram tokenizer.json: <s> 0, <pad> 1, </s> 2,
    <unk> 3), and open_clip's config with hf_model_name (no context_length: 77, open_clip's default)."""
    from mmsearch_export.tiny import sample_texts, train_xlmr_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_xlmr_tokenizer(sample_texts(300, seed=4), 400)
    _save(image_tower(seed=seed, frozen=True, normalise=True, input_name="image", output_name="embedding",
                      extra_output=False, opset=19), folder / "visual" / "model.onnx")
    _save(text_tower_xlmr(seed=seed + 1, vocab=tok.get_vocab_size(), pad=1, opset=19), folder / "textual" / "model.onnx")
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [IMAGE, IMAGE], "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
        "resize_mode": "shortest", "fill_color": 0}, indent=2))
    tok.save(str(folder / "textual" / "tokenizer.json"))
    special = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>",
               "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({
        **special, "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer"}, indent=2))
    (folder / "textual" / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "textual" / "sentencepiece.bpe.model").write_bytes(b"a sentencepiece model, not used " * 32)
    (folder / "config.json").write_text(json.dumps({
        "embed_dim": EMBED,
        "vision_cfg": {"image_size": IMAGE, "layers": 1, "width": WIDTH, "head_width": WIDTH // HEADS, "patch_size": PATCH},
        "text_cfg": {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base",
                     "hf_proj_type": "mlp", "hf_pooler_type": "mean_pooler", "context_length": CONTEXT},
    }, indent=2))
    (folder / "README.md").write_text("---\ntags:\n - immich\n - clip\n - multilingual\n---\n")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
