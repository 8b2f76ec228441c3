"""Architecture-sized stand-ins for the catalogue's repositories (random weights: the cost is the real
model's, the vectors mean nothing), written in each repository's own layout, so that `mmsearch models
pull` can be run on them through the local stand-in for the hub (tests/hubserver.py). Needs torch and
transformers (the export extra).

transformers.js (Xenova/...): transformers' own model classes exported as transformers.js's conversion
does (optimum's ONNX configs: batch and sequence dynamic, opset 14; the CLIP towers' projected
embeddings, SigLIP's pooler_output, each beside last_hidden_state).

immich (immich-app/...): the towers of open_clip exported as immich's exporter does
(machine-learning/export/immich_model_exporter/exporters/onnx/models/openclip.py: encode_image /
encode_text with normalize=True, torch.onnx.export at batch 1 with dynamic_axes commented out,
input "image" float32 [1,3,S,S] and "text" int32 [1,L], output "embedding", opset 19, the
multi-head-attention fast path off). The towers are written here with open_clip's structure
(open_clip/transformer.py: ResidualAttentionBlock over torch.nn.MultiheadAttention, batch first;
VisionTransformer with a class token, ln_pre, ln_post and a projection matrix; TextTransformer with a
causal mask pooled at the highest id, or for SigLIP no mask, pooled at the last token with a biased
projection; HFTextEncoder for XLM-RoBERTa: transformers' XLMRobertaModel, mean pooling over the
non-pad tokens and a two-layer MLP projection), because open_clip itself needs torchvision. SigLIP's
vision tower is timm's vit_base_patch16_siglip_224 in open_clip; transformers' SiglipVisionModel has
the same layers and attention-pooling head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .common import say

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


# -- transformers.js ---------------------------------------------------------------------------------


def _copy_configs(checkpoint: Path, out: Path) -> None:
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (checkpoint / name).is_file():
            shutil.copy(checkpoint / name, out / name)


def write_transformers_js(family: str, preset: str, out: Path) -> Path:
    """A transformers.js repository for a `family` (clip, siglip, chinese_clip) checkpoint of `preset`."""
    import torch

    if (out / "onnx" / "text_model.onnx").is_file():
        return out
    from mmsearch_export import tiny

    checkpoint = out.parent / "checkpoint"
    if not (checkpoint / "config.json").is_file():
        say(f"writing a random {family} {preset} checkpoint to {checkpoint}")
        make = {"clip": tiny.make_clip_checkpoint, "siglip": tiny.make_siglip_checkpoint,
                "chinese_clip": tiny.make_chinese_clip_checkpoint}[family]
        make(checkpoint, preset=preset)
    say(f"writing {out} (transformers.js layout)")
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    _copy_configs(checkpoint, out)
    if not (out / "tokenizer.json").is_file():  # a slow tokenizer's files: transformers.js ships tokenizer.json
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(checkpoint).backend_tokenizer.save(str(out / "tokenizer.json"))
    size = json.loads((checkpoint / "config.json").read_text())["vision_config"].get("image_size", 224)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint, attn_implementation="eager").eval()

    class Vision(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            o = self.model.vision_model(pixel_values=pixel_values)
            if family == "siglip":
                return o.pooler_output, o.last_hidden_state
            return self.model.visual_projection(o.pooler_output), o.last_hidden_state

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            model = self.model
            if family == "chinese_clip":
                o = model.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return model.text_projection(o.last_hidden_state[:, 0]), o.last_hidden_state
            o = model.text_model(input_ids=input_ids)
            if family == "siglip":
                return o.pooler_output, o.last_hidden_state
            return model.text_projection(o.pooler_output), o.last_hidden_state

    image_out = "pooler_output" if family == "siglip" else "image_embeds"
    text_out = "pooler_output" if family == "siglip" else "text_embeds"
    ids = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1]])
    text_args: tuple[Any, ...] = (ids,)
    text_names = ["input_ids"]
    if family == "chinese_clip":
        text_args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
        text_names = ["input_ids", "attention_mask", "token_type_ids"]
    from mmsearch.models.variants import quiet

    with torch.inference_mode(), quiet():
        torch.onnx.export(Vision(), (torch.randn(2, 3, size, size),), str(out / "onnx" / "vision_model.onnx"),
                          input_names=["pixel_values"], output_names=[image_out, "last_hidden_state"],
                          dynamic_axes={"pixel_values": {0: "batch_size"}, image_out: {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size"}}, opset_version=14, dynamo=False)
        torch.onnx.export(Text(), text_args, str(out / "onnx" / "text_model.onnx"), input_names=text_names,
                          output_names=[text_out, "last_hidden_state"],
                          dynamic_axes={**{n: {0: "batch_size", 1: "sequence_length"} for n in text_names},
                                        text_out: {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size", 1: "sequence_length"}},
                          opset_version=14, dynamo=False)
    return out


# -- immich (open_clip's towers) -----------------------------------------------------------------------


def _open_clip_modules():
    import torch
    from torch import nn

    class QuickGELU(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    class Block(nn.Module):  # open_clip.transformer.ResidualAttentionBlock
        def __init__(self, width: int, heads: int, act: type[nn.Module]):
            super().__init__()
            self.ln_1 = nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), act(), nn.Linear(4 * width, width))

        def forward(self, x, attn_mask=None):
            y = self.ln_1(x)
            x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Module):
        def __init__(self, width: int, layers: int, heads: int, act: type[nn.Module]):
            super().__init__()
            self.resblocks = nn.ModuleList([Block(width, heads, act) for _ in range(layers)])

        def forward(self, x, attn_mask=None):
            for block in self.resblocks:
                x = block(x, attn_mask)
            return x

    class VisionTransformer(nn.Module):  # open_clip.transformer.VisionTransformer, pool_type "tok"
        def __init__(self, image: int, patch: int, width: int, layers: int, heads: int, dim: int, act):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
            scale = width ** -0.5
            self.class_embedding = nn.Parameter(scale * torch.randn(width))
            self.positional_embedding = nn.Parameter(scale * torch.randn((image // patch) ** 2 + 1, width))
            self.ln_pre = nn.LayerNorm(width)
            self.transformer = Transformer(width, layers, heads, act)
            self.ln_post = nn.LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, dim))

        def forward(self, x):
            x = self.conv1(x)
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            token = self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1)
            x = torch.cat([token.to(x.dtype), x], dim=1) + self.positional_embedding.to(x.dtype)
            x = self.transformer(self.ln_pre(x))
            x = self.ln_post(x)
            return x[:, 0] @ self.proj

    class TextTransformer(nn.Module):  # open_clip.transformer.TextTransformer
        def __init__(self, context: int, vocab: int, width: int, layers: int, heads: int, dim: int, act,
                     causal: bool = True):
            super().__init__()
            self.causal = causal
            self.token_embedding = nn.Embedding(vocab, width)
            self.positional_embedding = nn.Parameter(0.01 * torch.randn(context, width))
            self.transformer = Transformer(width, layers, heads, act)
            self.ln_final = nn.LayerNorm(width)
            if causal:  # CLIP: a projection matrix, pooled at the end token (the highest id)
                self.text_projection = nn.Parameter(width ** -0.5 * torch.randn(width, dim))
                self.register_buffer("attn_mask", torch.full((context, context), float("-inf")).triu_(1),
                                     persistent=False)
            else:  # SigLIP: no mask, the last token, a biased linear projection
                self.proj = nn.Linear(width, dim)

        def forward(self, text):
            x = self.token_embedding(text) + self.positional_embedding
            x = self.transformer(x, self.attn_mask if self.causal else None)
            x = self.ln_final(x)
            if self.causal:
                return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection
            return self.proj(x[:, -1])

    class XlmrText(nn.Module):  # open_clip.hf_model.HFTextEncoder: mean pooler, "mlp" projection
        def __init__(self, dim: int, pad_id: int = 1):
            super().__init__()
            from transformers import XLMRobertaConfig, XLMRobertaModel

            config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12,
                                      num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                                      type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=pad_id, bos_token_id=0,
                                      eos_token_id=2)
            self.transformer = XLMRobertaModel(config, add_pooling_layer=False)
            self.pad_id = pad_id
            hidden = (768 + dim) // 2
            self.proj = nn.Sequential(nn.Linear(768, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False))

        def forward(self, text):
            mask = (text != self.pad_id).long()
            out = self.transformer(input_ids=text, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(out.dtype)
            return self.proj((out * m).sum(dim=1) / m.sum(dim=1))

    class SiglipVision(nn.Module):  # timm's vit_base_patch16_siglip_224: the layers and the pooling head
        def __init__(self):
            super().__init__()
            from transformers import SiglipVisionConfig, SiglipVisionModel

            self.model = SiglipVisionModel(SiglipVisionConfig(
                image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12), )

        def forward(self, x):
            return self.model(pixel_values=x).pooler_output

    return QuickGELU, VisionTransformer, TextTransformer, XlmrText, SiglipVision


def export_immich(visual: Any, textual: Any, size: int, context: int, out: Path) -> None:
    """visual/model.onnx and textual/model.onnx as immich's exporter writes them: encode_image /
    encode_text with normalize=True, at batch 1, the attention fast path off, opset 19."""
    import torch
    from torch import nn

    class Encode(nn.Module):
        def __init__(self, tower: nn.Module):
            super().__init__()
            self.tower = tower

        def forward(self, x):
            return nn.functional.normalize(self.tower(x), dim=-1)

    torch.backends.mha.set_fastpath_enabled(False)
    from mmsearch.models.variants import quiet

    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), quiet():
        for module in (visual, textual):
            module.eval()
        torch.onnx.export(Encode(visual), (torch.randn(1, 3, size, size),), str(out / "visual" / "model.onnx"),
                          input_names=["image"], output_names=["embedding"], opset_version=19, dynamo=False)
        torch.onnx.export(Encode(textual), (torch.ones(1, context, dtype=torch.int32),),
                          str(out / "textual" / "model.onnx"), input_names=["text"], output_names=["embedding"],
                          opset_version=19, dynamo=False)


def open_clip_towers(*, image: int, patch: int, width: int, layers: int, heads: int, dim: int, context: int,
                     vocab: int, quick_gelu: bool = False) -> tuple[Any, Any]:
    """An open_clip CLIP's two towers at any size (random weights)."""
    from torch import nn

    QuickGELU, VisionTransformer, TextTransformer, _, _ = _open_clip_modules()
    act = QuickGELU if quick_gelu else nn.GELU
    return (VisionTransformer(image, patch, width, layers, heads, dim, act),
            TextTransformer(context, vocab, width, layers, heads, dim, act))


# name: (vision, text, context, open_clip config, preprocess config)
IMMICH_ARCHITECTURES = {
    "vit-b-32-openai": dict(vision="vit-b-32", text="clip", quick_gelu=True),
    "vit-b-32-laion2b": dict(vision="vit-b-32", text="clip", quick_gelu=False),
    "xlm-roberta-b-32": dict(vision="vit-b-32", text="xlmr", quick_gelu=False),
    "siglip-b-16": dict(vision="siglip-b-16", text="siglip", vocab=32000),
    "siglip2-b-16": dict(vision="siglip-b-16", text="siglip", vocab=256000),
}


def write_immich(arch: str, out: Path) -> Path:
    """An immich repository for one of IMMICH_ARCHITECTURES, as immich's exporter writes one."""
    import torch
    from torch import nn

    if (out / "textual" / "model.onnx").is_file():
        return out
    from mmsearch_export import tiny

    spec = IMMICH_ARCHITECTURES[arch]
    QuickGELU, VisionTransformer, TextTransformer, XlmrText, SiglipVision = _open_clip_modules()
    act = QuickGELU if spec.get("quick_gelu") else nn.GELU
    torch.manual_seed(0)
    say(f"writing {out} (immich layout, {arch})")
    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(parents=True, exist_ok=True)
    if spec["vision"] == "vit-b-32":
        dim, size, mean, std = 512, 224, OPENAI_MEAN, OPENAI_STD
        visual: nn.Module = VisionTransformer(224, 32, 768, 12, 12, dim, act)
        vision_cfg: dict[str, Any] = {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}
    else:
        dim, size, mean, std = 768, 224, [0.5] * 3, [0.5] * 3
        visual = SiglipVision()
        vision_cfg = {"image_size": 224, "timm_model_name": "vit_base_patch16_siglip_224", "timm_model_pretrained": False,
                      "timm_pool": "map", "timm_proj": "none"}
    texts = tiny.sample_texts(400, seed=1)
    if spec["text"] == "clip":
        context = 77
        textual: nn.Module = TextTransformer(context, 49408, 512, 12, 8, dim, act)
        tok = tiny.train_bpe_tokenizer(texts, 2000)
        pad, special = tiny.EOS, {"bos_token": tiny.BOS, "eos_token": tiny.EOS, "pad_token": tiny.EOS}
        text_cfg: dict[str, Any] = {"context_length": context, "vocab_size": 49408, "width": 512, "heads": 8,
                                    "layers": 12}
    elif spec["text"] == "xlmr":
        context = 77
        textual = XlmrText(dim)
        tok = tiny.train_xlmr_tokenizer(texts, 2000)
        pad, special = "<pad>", {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        text_cfg = {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base", "hf_proj_type": "mlp",
                    "hf_pooler_type": "mean_pooler"}
    else:
        context = 64
        textual = TextTransformer(context, spec["vocab"], 768, 12, 12, dim, lambda: nn.GELU(approximate="tanh"),
                                  causal=False)
        tok = tiny.train_siglip_tokenizer(texts, 2000)
        pad, special = tiny.SIGLIP_EOS, {"eos_token": tiny.SIGLIP_EOS, "pad_token": tiny.SIGLIP_EOS,
                                         "unk_token": tiny.SIGLIP_UNK}
        text_cfg = {"context_length": context, "vocab_size": spec["vocab"], "width": 768, "heads": 12, "layers": 12,
                    "no_causal_mask": True, "pool_type": "last", "proj_bias": True,
                    "tokenizer_kwargs": {"clean": "canonicalize"}}

    export_immich(visual, textual, size, context, out)
    tok.save(str(out / "textual" / "tokenizer.json"))
    (out / "textual" / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": context}))
    (out / "textual" / "special_tokens_map.json").write_text(json.dumps(special))
    assert tok.token_to_id(pad) is not None
    (out / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [size, size], "mode": "RGB", "mean": mean, "std": std,
        "interpolation": "bicubic" if spec["vision"] == "vit-b-32" else "bilinear",
        "resize_mode": "shortest" if spec["vision"] == "vit-b-32" else "squash", "fill_color": 0}))
    config: dict[str, Any] = {"embed_dim": dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    if spec["text"] == "siglip":
        config.update(init_logit_scale=2.3026, init_logit_bias=-10)
    (out / "config.json").write_text(json.dumps(config))
    return out
