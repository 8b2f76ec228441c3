"""The two layouts of ready ONNX CLIP models on the Hugging Face hub, recognised from a file list and
read into what a bundle needs: which graph is which tower, its input and output names, and the
preprocessing and tokenisation translated to the manifest's terms (bundle.py).

immich (``immich-app/ViT-B-32__openai`` ...), as immich's machine-learning service reads it
(immich_ml/models/clip/visual.py and textual.py) and its exporter writes it
(export/immich_model_exporter/exporters/onnx/models/openclip.py and mclip.py)::

    config.json                    the open_clip model config (embed_dim, vision_cfg, text_cfg)
    visual/model.onnx              input "image" float32 [1,3,H,W], output "embedding" (unit length)
    visual/preprocess_cfg.json     open_clip's preprocess config (size, mean, std, interpolation, resize_mode)
    textual/model.onnx             input "text" int32 [1,L] (M-CLIP: "input_ids" + "attention_mask"),
                                   output "embedding" (unit length)
    textual/tokenizer.json         padded to L with tokenizer_config.json's pad_token, truncated to L
    textual/tokenizer_config.json

Graphs over 2 GB keep their weights in files beside model.onnx (torch's external data); every other
file directly in visual/ and textual/ is taken as such (not the subfolders other runtimes use).

transformers.js / optimum (``Xenova/clip-vit-base-patch32`` ...), as transformers.js's conversion
script writes them (scripts/convert.py, --split_modalities: optimum's CLIPTextModelWithProjection and
CLIPVisionModelWithProjection configs, SigLIP's SiglipTextModel and SiglipVisionModel)::

    config.json                    transformers' model config (model_type, text_config, vision_config)
    preprocessor_config.json       transformers' image processor config
    tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
    onnx/vision_model.onnx         input "pixel_values" float32 [batch,3,H,W];
                                   output "image_embeds" (CLIP, not normalised) or "pooler_output" (SigLIP)
    onnx/text_model.onnx           input "input_ids" int64 [batch,sequence] (+ "attention_mask" where the
                                   model takes one); output "text_embeds" or "pooler_output"
    onnx/*_fp16.onnx, *_quantized.onnx ...   their own variants: not used, mmsearch makes its own
                                             (models/variants.py) and validates them

Graphs over 2 GB keep their weights in ``onnx/NAME.onnx_data`` files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle import image_section
from ..errors import MmsearchError

IMMICH = "immich"
TRANSFORMERS_JS = "transformers.js"

IMMICH_REQUIRED = ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
                   "textual/tokenizer.json", "textual/tokenizer_config.json")
# Files other runtimes keep beside immich's graphs (ARM NN, RKNN), never a graph's external data.
_IMMICH_OTHER_RUNTIMES = (".armnn", ".rknn", ".md")

TRANSFORMERS_JS_REQUIRED = ("config.json", "preprocessor_config.json", "tokenizer.json", "onnx/vision_model.onnx",
                            "onnx/text_model.onnx")
TRANSFORMERS_JS_OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")

# PIL's resampling filters by name (open_clip, immich) and by number (transformers stores PIL's own).
_RESAMPLE_NUMBERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
SUPPORTED_INTERPOLATION = ("nearest", "lanczos", "bilinear", "bicubic")

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class LayoutError(MmsearchError):
    """A folder or repository that is not a model mmsearch can read; the message names the file or the
    missing piece and says why."""


@dataclass
class Tower:
    """One tower as the source ships it."""

    file: str  # the graph, relative to the source folder
    inputs: dict[str, str]  # the bundle's input name -> the source graph's ("pixel_values" -> "image")
    output: str  # the source output that holds the embedding
    zero_inputs: list[str] = field(default_factory=list)  # source inputs the runtime does not feed: zeros
    heads: int = 0  # attention heads and hidden size, for onnxruntime's attention fusion (0: unknown)
    hidden: int = 0


@dataclass
class Source:
    """A model in one of the two layouts, read from a folder."""

    layout: str
    folder: Path
    family: str
    image: Tower
    text: Tower
    image_spec: dict[str, Any]  # the manifest's "image" section, less input, output and max_batch
    tokenizer: str  # tokenizer.json, relative to the folder
    context_length: int
    pad_id: int
    padding: str | None  # "max_length", or None: decided by measurement (a text tower that takes any length)
    clean: str | None  # immich's clean_text: "whitespace" or "canonicalize"; None: the tokenizer.json as it is
    text_model_type: str  # onnxruntime's optimizer model_type for the text tower ("clip" or "bert")
    files: list[str]  # every file the model is made from, relative to the folder
    details: dict[str, Any] = field(default_factory=dict)


# -- recognising a layout from a file list --------------------------------------------------------------


def wanted_files(files: list[str], where: str) -> tuple[str, list[str]]:
    """(layout, the files to fetch) for a repository or folder holding `files` (relative, '/'-separated);
    LayoutError when it is in neither layout, or in one with a piece missing (the message names it)."""
    present = set(files)
    immich = [f for f in ("visual/model.onnx", "textual/model.onnx") if f in present]
    tjs = [f for f in ("onnx/vision_model.onnx", "onnx/text_model.onnx") if f in present]
    if immich and (not tjs or all(f in present for f in IMMICH_REQUIRED)):
        _require(IMMICH_REQUIRED, present, where, IMMICH, immich[0])
        extra = [f for f in files if f.count("/") == 1 and f.split("/")[0] in ("visual", "textual")
                 and f not in IMMICH_REQUIRED and not f.lower().endswith(_IMMICH_OTHER_RUNTIMES)
                 and not f.rsplit("/", 1)[1].startswith(".")]
        return IMMICH, list(IMMICH_REQUIRED) + sorted(extra)
    if tjs:
        _require(TRANSFORMERS_JS_REQUIRED, present, where, TRANSFORMERS_JS, tjs[0])
        optional = [f for f in TRANSFORMERS_JS_OPTIONAL if f in present]
        data = sorted(f for f in files if f.startswith(("onnx/vision_model.onnx_data", "onnx/text_model.onnx_data")))
        return TRANSFORMERS_JS, list(TRANSFORMERS_JS_REQUIRED) + optional + data
    shown = ", ".join(sorted(files)[:12]) + (f" and {len(files) - 12} more" if len(files) > 12 else "")
    raise LayoutError(
        f"{where}: not a ready ONNX CLIP model in either layout mmsearch reads: immich's "
        f"({', '.join(IMMICH_REQUIRED)}) or transformers.js's ({', '.join(TRANSFORMERS_JS_REQUIRED)}); "
        f"it holds {shown or 'no files'}. A PyTorch checkpoint is turned into a bundle with `mmsearch export`."
    )


def _require(required: tuple[str, ...], present: set[str], where: str, layout: str, found: str) -> None:
    missing = [f for f in required if f not in present]
    if missing:
        raise LayoutError(
            f"{where}: looks like a {layout}-layout model ({found} is there) but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing; the model cannot be used without "
            f"{'it' if len(missing) == 1 else 'them'}"
        )


def list_folder(folder: Path) -> list[str]:
    """Every file under `folder`, relative and '/'-separated (hidden files and folders left out)."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            out.append(rel.as_posix())
    return out


# -- reading one ----------------------------------------------------------------------------------------


def read_source(folder: Path, files: list[str] | None = None, label: str | None = None) -> Source:
    """The model in `folder` (either layout); LayoutError naming the file and the reason otherwise.
    `label`: the repository id where the folder is a download (immich's model names tell SigLIP apart)."""
    folder = Path(folder)
    layout, wanted = wanted_files(files if files is not None else list_folder(folder), str(folder))
    for name in wanted:
        _check_not_a_pointer(folder / name)
    if layout == IMMICH:
        return _read_immich(folder, wanted, label or folder.name)
    return _read_transformers_js(folder, wanted)


def _check_not_a_pointer(path: Path) -> None:
    """A git clone without `git lfs pull` holds small pointer files where the graphs should be."""
    try:
        if path.stat().st_size < 1024 and path.read_bytes().startswith(b"version https://git-lfs"):
            raise LayoutError(f"{path}: a Git LFS pointer, not the file itself; fetch it (`git lfs pull`) "
                              "or download the repository with `mmsearch models pull`")
    except FileNotFoundError:
        raise LayoutError(f"{path}: missing") from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayoutError(f"{path}: missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise LayoutError(f"{path}: expected a JSON object")
    return data


def graph_io(path: Path) -> tuple[dict[str, tuple[int, list[int | str]]], dict[str, tuple[int, list[int | str]]]]:
    """({input name: (onnx element type, dims)}, {output name: ...}) of a graph, weights not read."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise LayoutError(f"{path}: not an ONNX graph onnx can read ({type(e).__name__}: {e})") from None

    def dims(vi: Any) -> list[int | str]:
        shape = vi.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]

    initializers = {i.name for i in model.graph.initializer}
    inputs = {i.name: (i.type.tensor_type.elem_type, dims(i)) for i in model.graph.input if i.name not in initializers}
    outputs = {o.name: (o.type.tensor_type.elem_type, dims(o)) for o in model.graph.output}
    return inputs, outputs


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _pad_token(config: dict[str, Any]) -> str | None:
    token = config.get("pad_token")
    if isinstance(token, dict):  # an AddedToken as transformers serialises it
        token = token.get("content")
    return token if isinstance(token, str) else None


def _read_immich(folder: Path, files: list[str], label: str) -> Source:
    config_path = folder / "config.json"
    config = read_json(config_path)
    preprocess_path = folder / "visual" / "preprocess_cfg.json"
    image_spec = immich_image_spec(read_json(preprocess_path), preprocess_path)

    visual = folder / "visual" / "model.onnx"
    v_in, v_out = graph_io(visual)
    image_input = _one_input(v_in, ("image",), visual, "the image")
    image_output = _output(v_out, ("embedding",), visual)
    _check_image_dims(v_in[image_input][1], image_spec, visual, preprocess_path)

    textual = folder / "textual" / "model.onnx"
    t_in, t_out = graph_io(textual)
    if "text" in t_in:  # open_clip (immich's OpenClipTextualEncoder)
        text_inputs = {"input_ids": "text"}
    elif "input_ids" in t_in:  # M-CLIP (immich's MClipTextualEncoder)
        text_inputs = {"input_ids": "input_ids"}
        if "attention_mask" in t_in:
            text_inputs["attention_mask"] = "attention_mask"
    else:
        raise LayoutError(f"{textual}: inputs {sorted(t_in)}; an immich text tower takes 'text' (open_clip) "
                          "or 'input_ids' and 'attention_mask' (M-CLIP)")
    text_output = _output(t_out, ("embedding",), textual)

    text_cfg = _section(config, "text_cfg")
    context = int(text_cfg.get("context_length", 77))
    seq = t_in[text_inputs["input_ids"]][1]
    if len(seq) == 2 and isinstance(seq[1], int) and seq[1] > 0 and seq[1] != context:
        raise LayoutError(f"{textual}: takes {seq[1]} tokens but {config_path} says context_length {context}")

    tokenizer_path = folder / "textual" / "tokenizer.json"
    tokenizer_config_path = folder / "textual" / "tokenizer_config.json"
    pad_token = _pad_token(read_json(tokenizer_config_path))
    if pad_token is None:
        raise LayoutError(f"{tokenizer_config_path}: no pad_token (immich pads every text to {context} tokens with it)")
    tokenizer = _load_tokenizer(tokenizer_path)
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise LayoutError(f"{tokenizer_path}: has no token {pad_token!r}, the pad_token of {tokenizer_config_path}")
    kwargs = _section(text_cfg, "tokenizer_kwargs")
    clean = "canonicalize" if kwargs.get("clean") == "canonicalize" else "whitespace"

    family = "siglip" if "siglip" in label.lower() or "init_logit_bias" in config else "clip"
    bert_like = "hf_model_name" in text_cfg or "attention_mask" in text_inputs
    vision_cfg = _section(config, "vision_cfg")
    # open_clip's configs: width and head_width (64 unless said) for a ViT, width and heads for the text
    v_width = _int(vision_cfg.get("width")) if "timm_model_name" not in vision_cfg else 0
    v_heads = v_width // (_int(vision_cfg.get("head_width")) or 64) if v_width else 0
    v_width = v_width if v_heads else 0
    t_width, t_heads = (0, 0) if bert_like else (_int(text_cfg.get("width")), _int(text_cfg.get("heads", 8)))
    return Source(
        layout=IMMICH, folder=folder, family=family,
        image=Tower("visual/model.onnx", {"pixel_values": image_input}, image_output, heads=v_heads, hidden=v_width),
        text=Tower("textual/model.onnx", text_inputs, text_output, heads=t_heads, hidden=t_width),
        image_spec=image_spec, tokenizer="textual/tokenizer.json", context_length=context, pad_id=int(pad_id),
        padding="max_length",  # immich pads every text to the context, the graph takes nothing else
        clean=clean, text_model_type="bert" if bert_like else "clip", files=files,
        details={"embed_dim": config.get("embed_dim")},
    )


def immich_image_spec(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """open_clip's preprocess config as immich applies it (OpenClipVisualEncoder): "shortest" resizes
    the short side to size and center-crops (open_clip's default for older configs), "squash" resizes
    to size x size. The short side's length follows open_clip's own resize (torchvision's: int(size *
    long / short)); immich's int(long / short * size) rounds the other way on a few sizes, by a pixel."""
    size = cfg.get("size")
    if isinstance(size, list) and size and all(isinstance(s, int) for s in size):
        height, width = (size[0], size[-1])
    elif isinstance(size, int):
        height = width = size
    else:
        raise LayoutError(f"{path}: size {size!r} is not a number of pixels")
    mode = cfg.get("mode", "RGB")
    if mode != "RGB":
        raise LayoutError(f"{path}: mode {mode!r}; mmsearch feeds RGB images")
    interpolation = str(cfg.get("interpolation", "bicubic")).lower()
    if interpolation not in SUPPORTED_INTERPOLATION:
        raise LayoutError(f"{path}: interpolation {interpolation!r} is not one mmsearch reproduces "
                          f"({', '.join(SUPPORTED_INTERPOLATION)})")
    resize_mode = cfg.get("resize_mode", "shortest")
    if resize_mode == "shortest":
        if height != width:
            raise LayoutError(f"{path}: resize_mode 'shortest' with a {height}x{width} size; immich crops a square")
        resize, resize_size, crop = "shortest_edge", height, "center"
    elif resize_mode == "squash":
        resize, resize_size, crop = "exact", [height, width], None
    else:
        raise LayoutError(f"{path}: resize_mode {resize_mode!r} is not one immich or mmsearch reads (shortest, squash)")
    return {
        "size": [height, width],
        "resize": resize,
        "resize_size": resize_size,
        "interpolation": interpolation,
        "crop": crop,
        "rescale_factor": 1 / 255,
        "mean": _three_floats(cfg.get("mean"), path, "mean"),
        "std": _three_floats(cfg.get("std"), path, "std"),
        "channel_order": "RGB",
        "layout": "NCHW",
    }


def _three_floats(values: Any, path: Path, key: str) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    if not (isinstance(values, list) and len(values) in (1, 3) and all(isinstance(v, (int, float)) for v in values)):
        raise LayoutError(f"{path}: {key} {values!r} is not three numbers")
    return [float(v) for v in (values * 3 if len(values) == 1 else values)]


def _read_transformers_js(folder: Path, files: list[str]) -> Source:
    config_path = folder / "config.json"
    config = read_json(config_path)
    model_type = str(config.get("model_type", "clip"))
    family = {"clip": "clip", "siglip": "siglip", "siglip2": "siglip", "chinese_clip": "chinese_clip"}.get(
        model_type, model_type)
    preprocessor_path = folder / "preprocessor_config.json"
    vision_config = _section(config, "vision_config")
    image_spec = hf_image_spec(read_json(preprocessor_path), preprocessor_path, family,
                               vision_config.get("image_size"), config_path)

    vision = folder / "onnx" / "vision_model.onnx"
    v_in, v_out = graph_io(vision)
    image_input = _one_input(v_in, ("pixel_values",), vision, "the image")
    image_output = _output(v_out, ("image_embeds", "pooler_output"), vision)
    _check_image_dims(v_in[image_input][1], image_spec, vision, preprocessor_path)

    text = folder / "onnx" / "text_model.onnx"
    t_in, t_out = graph_io(text)
    if "input_ids" not in t_in:
        raise LayoutError(f"{text}: inputs {sorted(t_in)}; a transformers.js text tower takes 'input_ids'")
    text_inputs = {"input_ids": "input_ids"}
    if "attention_mask" in t_in:
        text_inputs["attention_mask"] = "attention_mask"
    unknown = [n for n in t_in if n not in text_inputs and n not in ("token_type_ids", "position_ids")]
    if unknown:
        raise LayoutError(f"{text}: takes {', '.join(unknown)}, which mmsearch does not know how to feed")
    zero_inputs = [n for n in ("token_type_ids",) if n in t_in]
    if "position_ids" in t_in:
        raise LayoutError(f"{text}: takes position_ids; mmsearch feeds input_ids and attention_mask only")
    text_output = _output(t_out, ("text_embeds", "pooler_output"), text)

    text_config = _section(config, "text_config")
    tokenizer_config_path = folder / "tokenizer_config.json"
    tokenizer_config = read_json(tokenizer_config_path) if (folder / "tokenizer_config.json").is_file() else {}
    context = int(text_config.get("max_position_embeddings", 64 if family == "siglip" else 77))
    model_max = tokenizer_config.get("model_max_length")
    if isinstance(model_max, int) and 0 < model_max < context:
        context = model_max
    seq = t_in["input_ids"][1]
    fixed_length = len(seq) == 2 and isinstance(seq[1], int) and seq[1] > 0
    if fixed_length:
        context = int(seq[1])

    tokenizer_path = folder / "tokenizer.json"
    tokenizer = _load_tokenizer(tokenizer_path)
    pad_id = _hf_pad_id(tokenizer, tokenizer_config, tokenizer_path, tokenizer_config_path)
    # SigLIP pools the last position: right only at the padded length it was trained with (transformers.js
    # calls its tokenizer with padding: 'max_length'). CLIP and Chinese-CLIP take any length where the
    # graph does: that is measured before it is used (models/build.py).
    padding = "max_length" if family == "siglip" or fixed_length else None
    bert_like = family == "chinese_clip" or "attention_mask" in text_inputs
    return Source(
        layout=TRANSFORMERS_JS, folder=folder, family=family,
        image=Tower("onnx/vision_model.onnx", {"pixel_values": image_input}, image_output,
                    heads=_int(vision_config.get("num_attention_heads")), hidden=_int(vision_config.get("hidden_size"))),
        text=Tower("onnx/text_model.onnx", text_inputs, text_output, zero_inputs,
                   heads=_int(text_config.get("num_attention_heads")), hidden=_int(text_config.get("hidden_size"))),
        image_spec=image_spec, tokenizer="tokenizer.json", context_length=context, pad_id=pad_id, padding=padding,
        clean=None, text_model_type="bert" if bert_like else "clip", files=files,
        details={"model_type": model_type, "projection_dim": config.get("projection_dim")},
    )


def _hf_pad_id(tokenizer: Any, tokenizer_config: dict[str, Any], tokenizer_path: Path, config_path: Path) -> int:
    """The pad id as transformers.js finds it: tokenizer_config.json's pad_token, else tokenizer.json's
    own padding section, else the end token."""
    token = _pad_token(tokenizer_config)
    if token is not None:
        pad_id = tokenizer.token_to_id(token)
        if pad_id is None:
            raise LayoutError(f"{tokenizer_path}: has no token {token!r}, the pad_token of {config_path}")
        return int(pad_id)
    padding = json.loads(tokenizer.to_str()).get("padding") or {}
    if isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in ("<|endoftext|>", "</s>", "[PAD]", "<pad>"):
        if tokenizer.token_to_id(token) is not None:
            return int(tokenizer.token_to_id(token))
    raise LayoutError(f"{tokenizer_path}: no pad token (no tokenizer_config.json pad_token, no padding section)")


def hf_image_spec(cfg: dict[str, Any], path: Path, family: str, image_size: Any, config_path: Path) -> dict[str, Any]:
    """A transformers image processor config as the processor applies it (the same translation as the
    export step's, mmsearch_export/manifest.py, read from the JSON instead of a loaded processor). An int size
    means the shortest edge for CLIP and Chinese-CLIP, a square for SigLIP (transformers' get_size_dict
    default_to_square)."""
    square_by_default = family == "siglip"
    if not cfg.get("do_resize", True):
        raise LayoutError(f"{path}: do_resize is false; the towers need a fixed input size")
    size = cfg.get("size")
    if isinstance(size, int):
        size = {"height": size, "width": size} if square_by_default else {"shortest_edge": size}
    if not isinstance(size, dict):
        raise LayoutError(f"{path}: size {size!r} is neither a shortest edge nor a height and width")
    resize_size: int | list[int]
    if "shortest_edge" in size:
        resize, resize_size = "shortest_edge", int(size["shortest_edge"])
    elif "height" in size and "width" in size:
        resize, resize_size = "exact", [int(size["height"]), int(size["width"])]
    else:
        raise LayoutError(f"{path}: size {size!r} is neither a shortest edge nor a height and width")

    if cfg.get("do_center_crop", not square_by_default):
        crop_size = cfg.get("crop_size")
        if isinstance(crop_size, int):
            crop_size = {"height": crop_size, "width": crop_size}
        if not (isinstance(crop_size, dict) and "height" in crop_size and "width" in crop_size):
            raise LayoutError(f"{path}: crop_size {crop_size!r} has no height and width")
        crop, out_size = "center", [int(crop_size["height"]), int(crop_size["width"])]
    elif isinstance(resize_size, list):
        crop, out_size = None, list(resize_size)
    else:
        raise LayoutError(f"{path}: resizes the shortest edge without cropping, so the size varies")

    resample = cfg.get("resample", 2 if square_by_default else 3)
    interpolation = _RESAMPLE_NUMBERS.get(resample) if isinstance(resample, int) else str(resample).lower()
    if interpolation not in SUPPORTED_INTERPOLATION:
        raise LayoutError(f"{path}: resampling filter {resample!r} is not one mmsearch reproduces")

    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if cfg.get("do_normalize", True):
        default_mean = [0.5, 0.5, 0.5] if square_by_default else OPENAI_CLIP_MEAN
        default_std = [0.5, 0.5, 0.5] if square_by_default else OPENAI_CLIP_STD
        mean = _three_floats(cfg.get("image_mean", default_mean), path, "image_mean")
        std = _three_floats(cfg.get("image_std", default_std), path, "image_std")
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if isinstance(image_size, int) and out_size != [image_size, image_size]:
        raise LayoutError(f"{path} produces {out_size[0]}x{out_size[1]} images but {config_path} says the vision "
                          f"model takes {image_size}x{image_size}")
    return image_section(size=out_size, resize=resize, resize_size=resize_size, interpolation=interpolation,
                         crop=crop, rescale=rescale, mean=mean, std=std)


def _load_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise LayoutError(f"{path}: not a tokenizer the `tokenizers` library reads ({e})") from None


def _one_input(inputs: dict[str, Any], names: tuple[str, ...], path: Path, what: str) -> str:
    for name in names:
        if name in inputs:
            elem, dims = inputs[name]
            if elem != 1:  # onnx.TensorProto.FLOAT
                raise LayoutError(f"{path}: input {name!r} is not float32; mmsearch feeds {what} as float32")
            return name
    raise LayoutError(f"{path}: inputs {sorted(inputs)}; expected {' or '.join(repr(n) for n in names)}")


def _output(outputs: dict[str, Any], names: tuple[str, ...], path: Path) -> str:
    for name in names:
        if name in outputs:
            elem, dims = outputs[name]
            if elem != 1:
                raise LayoutError(f"{path}: output {name!r} is not float32")
            return name
    raise LayoutError(f"{path}: outputs {sorted(outputs)}; expected {' or '.join(repr(n) for n in names)}")


def _check_image_dims(dims: list[int | str], spec: dict[str, Any], graph: Path, config: Path) -> None:
    if len(dims) != 4:
        raise LayoutError(f"{graph}: the image input has {len(dims)} dimensions, not [batch, 3, height, width]")
    if dims[1] not in (3, "?") and isinstance(dims[1], int):
        raise LayoutError(f"{graph}: the image input has {dims[1]} channels, not 3")
    h, w = dims[2], dims[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and [h, w] != spec["size"]:
        raise LayoutError(f"{graph} takes {h}x{w} images but {config} makes {spec['size'][0]}x{spec['size'][1]}")
