"""A checkpoint's two towers as plain modules: batch in, L2-normalised embeddings out.

The projection and the normalisation live inside each wrapper, so the exported graphs hand the
runtime unit vectors. The reference the exported graphs are held to is *not* these wrappers but the
checkpoint's own ``get_image_features`` / ``get_text_features`` (see ``reference_*``), so a mistake
in a wrapper fails validation.

CLIP's text tower is rebuilt here around the checkpoint's own layers so that its causal mask has
the shape onnxruntime's CLIP attention fusion recognises (see ``causal_mask``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmsearch.errors import first_line

FAMILIES = ("clip", "siglip", "chinese_clip")


class CheckpointError(Exception):
    """A folder that is not a checkpoint this exporter handles; the message says why."""


@dataclass
class Checkpoint:
    """An image-text checkpoint loaded for export (eager attention, eval mode, float32)."""

    family: str
    path: Path
    model: Any  # CLIPModel | SiglipModel | ChineseCLIPModel
    tokenizer: Any  # a transformers tokenizer with a `backend_tokenizer`
    image_processor: Any

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config


_MODEL_TYPES = {"clip": "clip", "siglip": "siglip", "chinese_clip": "chinese_clip"}


def read_family(folder: Path) -> str:
    """The family of the checkpoint in `folder`, from its config.json; CheckpointError otherwise."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder}: no config.json; this is not a transformers checkpoint "
            "(expected a CLIP, SigLIP or Chinese-CLIP model folder)"
        )
    try:
        config = json.loads(config_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    model_type = config.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise CheckpointError(
            f"{config_path}: model_type {model_type!r} is not an image-text model this exporter handles "
            f"(it handles {', '.join(_MODEL_TYPES)}: CLIPModel, SiglipModel, ChineseCLIPModel)"
        )
    return _MODEL_TYPES[model_type]


def load_checkpoint(folder: Path) -> Checkpoint:
    """Load model, tokenizer and image processor from a local checkpoint folder."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    folder = Path(folder)
    family = read_family(folder)
    cls = {"clip": "CLIPModel", "siglip": "SiglipModel", "chinese_clip": "ChineseCLIPModel"}[family]
    transformers.utils.logging.disable_progress_bar()
    try:
        model = getattr(transformers, cls).from_pretrained(
            folder, attn_implementation="eager", dtype=torch.float32
        )
    except Exception as e:  # missing weights, a shape mismatch, a different architecture...
        raise CheckpointError(f"{folder}: cannot load it as a {cls} ({first_line(e)})") from None
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise CheckpointError(f"{folder}: cannot load its tokenizer ({first_line(e)})") from None
    try:
        image_processor = AutoImageProcessor.from_pretrained(folder)
    except Exception as e:
        raise CheckpointError(f"{folder}: cannot load its image processor ({first_line(e)})") from None
    return Checkpoint(family, folder, model, tokenizer, image_processor)



def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / ||x||, first scaled by its largest component so that the sum of squares stays within
    float16's range in the fp16 variant (it overflows 65504 once ||x|| passes 256)."""
    x = x / x.abs().amax(dim=-1, keepdim=True)
    return x / torch.linalg.vector_norm(x, ord=2, dim=-1, keepdim=True)


def causal_mask(hidden: torch.Tensor) -> torch.Tensor:
    """The additive causal mask [N, 1, L, L] for `hidden` [N, L, D], built the way onnxruntime's
    CLIP attention fusion (fusion_attention_clip.py) looks for it.

    The fusion recognises a causal mask by the path Add <- Expand <- Unsqueeze <- Unsqueeze <- Where
    <- Less from the attention scores, and then emits an `Attention` node with unidirectional=1 (the
    mask itself is dropped). transformers' `create_causal_mask` builds the mask with different ops
    (arange comparisons through its mask functions, and-ing, a Where on a boolean mask and, with
    sdpa, no Add at all), so nothing fused. This builds the same values -- 0 on and below the
    diagonal, the float32 minimum above it -- from Less/Where/Unsqueeze/Unsqueeze/Expand.
    """
    n, length = hidden.shape[0], hidden.shape[1]
    pos = torch.arange(length, device=hidden.device)
    future = torch.lt(pos.unsqueeze(1), pos.unsqueeze(0))  # Less: key position after query position
    zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
    neg = torch.full((), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
    mask = torch.where(future, neg, zero)  # [L, L]
    return mask.unsqueeze(0).unsqueeze(0).expand(n, 1, length, length)


class ClipImageTower(nn.Module):
    """CLIP / Chinese-CLIP image tower: pixel_values [N,3,H,W] -> image_embeds [N,D], unit length."""

    def __init__(self, model: Any):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return l2_normalize(self.visual_projection(pooled))


class ClipTextTower(nn.Module):
    """CLIP text tower: input_ids [N,L] -> text_embeds [N,D], unit length, any L <= context.

    Runs the checkpoint's own embedding, layers, final norm and projection; only the causal mask is
    built here (see `causal_mask`). Pools the first end-of-text token as transformers does (or the
    highest id, for old configs whose eos_token_id is 2). Padding after that token never reaches
    it through the causal mask, so the tower takes ids padded to any length.
    """

    def __init__(self, model: Any):
        super().__init__()
        text = model.text_model
        self.embeddings = text.embeddings
        self.layers = text.encoder.layers
        self.final_layer_norm = text.final_layer_norm
        self.text_projection = model.text_projection
        self.eos_token_id = int(text.eos_token_id)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids=input_ids)
        mask = causal_mask(hidden)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        hidden = self.final_layer_norm(hidden)
        ids = input_ids.to(torch.int32)
        if self.eos_token_id == 2:
            eos_at = ids.argmax(dim=-1)
        else:
            eos_at = (ids == self.eos_token_id).to(torch.int32).argmax(dim=-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_at]
        return l2_normalize(self.text_projection(pooled))


class SiglipImageTower(nn.Module):
    """SigLIP image tower: pixel_values [N,3,H,W] -> image_embeds [N,D], unit length.

    Runs the checkpoint's own embeddings, encoder and post-norm; the attention-pooling head is
    spelled out here with its weights. transformers' head is a torch.nn.MultiheadAttention, whose
    TorchScript export computes shapes through Mod/Reshape chains that onnxruntime's symbolic shape
    inference rejects, and without shapes the optimizer fuses nothing in the whole graph (0 Attention,
    0 SkipLayerNormalization for a ViT-B/16 SigLIP). This head exports as plain MatMul/Softmax.
    """

    def __init__(self, model: Any):
        super().__init__()
        vision = model.vision_model
        if not getattr(vision, "use_head", True):
            raise CheckpointError("this SigLIP checkpoint has no attention-pooling head (vision_use_head is false), "
                                  "so it gives no image embedding")
        self.embeddings = vision.embeddings
        self.encoder = vision.encoder
        self.post_layernorm = vision.post_layernorm
        head = vision.head
        self.probe = head.probe
        attention = head.attention
        self.num_heads = attention.num_heads
        self.in_proj_weight = attention.in_proj_weight
        self.in_proj_bias = attention.in_proj_bias
        self.out_proj = attention.out_proj
        self.layernorm = head.layernorm
        self.mlp = head.mlp

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(pixel_values)
        hidden = self.encoder(inputs_embeds=hidden).last_hidden_state
        hidden = self.post_layernorm(hidden)
        return l2_normalize(self._pool(hidden))

    def _pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """What SiglipMultiheadAttentionPoolingHead computes: one learned query attends over the patches."""
        n, length, dim = hidden.shape
        heads = self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = nn.functional.linear(self.probe, w_q, b_q).reshape(1, heads, 1, dim // heads)  # [1,h,1,d]
        k = nn.functional.linear(hidden, w_k, b_k).reshape(n, length, heads, dim // heads).transpose(1, 2)
        v = nn.functional.linear(hidden, w_v, b_v).reshape(n, length, heads, dim // heads).transpose(1, 2)
        scores = torch.matmul(q * (dim // heads) ** -0.5, k.transpose(-1, -2))  # [n,h,1,L]
        attended = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(n, dim)  # [n,D]
        attended = self.out_proj(attended)
        return attended + self.mlp(self.layernorm(attended))


class SiglipTextTower(nn.Module):
    """SigLIP text tower: input_ids [N,64] (padded to the context) -> text_embeds; pools the last token."""

    def __init__(self, model: Any):
        super().__init__()
        self.text_model = model.text_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.text_model(input_ids=input_ids).pooler_output)


class ChineseClipTextTower(nn.Module):
    """Chinese-CLIP (BERT) text tower: input_ids, attention_mask [N,L] -> text_embeds; pools [CLS]."""

    def __init__(self, model: Any):
        super().__init__()
        self.text_model = model.text_model
        self.text_projection = model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        token_type_ids = torch.zeros_like(input_ids)
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return l2_normalize(self.text_projection(out.last_hidden_state[:, 0, :]))


def build_towers(ckpt: Checkpoint) -> tuple[nn.Module, nn.Module]:
    """(image tower, text tower) for a loaded checkpoint, in eval mode."""
    if ckpt.family == "clip":
        towers = ClipImageTower(ckpt.model), ClipTextTower(ckpt.model)
    elif ckpt.family == "siglip":
        towers = SiglipImageTower(ckpt.model), SiglipTextTower(ckpt.model)
    elif ckpt.family == "chinese_clip":
        towers = ClipImageTower(ckpt.model), ChineseClipTextTower(ckpt.model)
    else:  # pragma: no cover - read_family guards this
        raise CheckpointError(f"{ckpt.path}: unknown family {ckpt.family}")
    return towers[0].eval(), towers[1].eval()


def text_inputs(family: str) -> list[str]:
    return ["input_ids", "attention_mask"] if family == "chinese_clip" else ["input_ids"]


def _features(out: Any) -> torch.Tensor:
    # transformers 5 returns a model output with the projected features in pooler_output;
    # transformers 4 returned the tensor itself.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.inference_mode()
def reference_image_embeds(ckpt: Checkpoint, pixel_values: torch.Tensor) -> torch.Tensor:
    """The checkpoint's own image features, L2-normalised: what every variant is held to."""
    return torch.nn.functional.normalize(_features(ckpt.model.get_image_features(pixel_values=pixel_values)), dim=-1)


@torch.inference_mode()
def reference_text_embeds(ckpt: Checkpoint, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    """The checkpoint's own text features for HF-tokenizer feeds, L2-normalised."""
    return torch.nn.functional.normalize(_features(ckpt.model.get_text_features(**feeds)), dim=-1)
