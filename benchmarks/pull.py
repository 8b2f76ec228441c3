"""`mmsearch models pull` on a ViT-B/32-sized CLIP (random weights, the exact architecture) in each
layout, through the local stand-in for the hub (tests/hubserver.py): download and conversion times,
the validation figures, how each graph was made to take batches, and what was fused.

    python -m benchmarks.pull            # needs torch (to write the two repositories once)

The repositories are written from the cached checkpoint (benchmarks/common.py) as the layouts' own
exporters write them: transformers.js's (optimum's CLIP*ModelWithProjection outputs, batch and sequence
dynamic, opset 14) and immich's (open_clip-style towers at batch 1, "image" and "text" int32 inputs,
"embedding" outputs normalised, opset 17 here). The pull itself runs as users run it, in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import BENCH_DIR, ROOT, say, vitb32_checkpoint

PULL_DIR = BENCH_DIR / "pull"


def _towers(checkpoint: Path):
    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(checkpoint, attn_implementation="eager").eval()

    class Tower(torch.nn.Module):
        def __init__(self, tower: str, normalise: bool):
            super().__init__()
            self.model, self.tower, self.normalise = model, tower, normalise

        def forward(self, x):
            if self.tower == "image":
                o = self.model.vision_model(pixel_values=x)
                out = self.model.visual_projection(o.pooler_output)
            else:
                o = self.model.text_model(input_ids=x.long())
                out = self.model.text_projection(o.pooler_output)
            if self.normalise:
                return torch.nn.functional.normalize(out, dim=-1)
            return out, o.last_hidden_state

    return model, Tower


def write_transformers_js(checkpoint: Path, out: Path) -> Path:
    import torch

    if (out / "onnx" / "text_model.onnx").is_file():
        return out
    _, Tower = _towers(checkpoint)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (checkpoint / name).is_file():
            shutil.copy(checkpoint / name, out / name)
    say(f"writing {out} (transformers.js layout)")
    with torch.inference_mode():
        torch.onnx.export(Tower("image", False), (torch.randn(2, 3, 224, 224),), str(out / "onnx" / "vision_model.onnx"),
                          input_names=["pixel_values"], output_names=["image_embeds", "last_hidden_state"],
                          dynamic_axes={"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size"}}, opset_version=14, dynamo=False)
        torch.onnx.export(Tower("text", False), (torch.tensor([[49406, 320, 1125, 49407], [49406, 320, 49407, 49407]]),),
                          str(out / "onnx" / "text_model.onnx"), input_names=["input_ids"],
                          output_names=["text_embeds", "last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "text_embeds": {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size", 1: "sequence_length"}},
                          opset_version=14, dynamo=False)
    return out


def write_immich(checkpoint: Path, out: Path) -> Path:
    import torch

    if (out / "textual" / "model.onnx").is_file():
        return out
    _, Tower = _towers(checkpoint)
    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(parents=True, exist_ok=True)
    say(f"writing {out} (immich layout)")
    with torch.inference_mode():  # no dynamic axes: immich's exporter freezes batch 1
        torch.onnx.export(Tower("image", True), (torch.randn(1, 3, 224, 224),), str(out / "visual" / "model.onnx"),
                          input_names=["image"], output_names=["embedding"], opset_version=17, dynamo=False)
        torch.onnx.export(Tower("text", True), (torch.ones(1, 77, dtype=torch.int32),), str(out / "textual" / "model.onnx"),
                          input_names=["text"], output_names=["embedding"], opset_version=17, dynamo=False)
    shutil.copy(checkpoint / "tokenizer.json", out / "textual" / "tokenizer.json")
    tokenizer_config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    (out / "textual" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (out / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [224, 224], "mode": "RGB", "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest",
        "fill_color": 0}))
    (out / "config.json").write_text(json.dumps({
        "embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}))
    return out


def pull(folder: Path, repo_id: str, work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from hubserver import HubServer, Repo

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with HubServer() as hub:
        hub.add(repo_id, Repo.from_folder(folder))
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(work / "hf"), MMSEARCH_HOME=str(work / "home"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mmsearch", "models", "pull", repo_id, "--json"], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"pull failed:\n{proc.stderr}")
    info = json.loads(proc.stdout)
    manifest = json.loads((Path(info["path"]) / "manifest.json").read_text())
    return {
        "repo": repo_id,
        "layout": manifest["layout"],
        "download_mb": round(sum(f["bytes"] for f in manifest["pulled"]["files"].values()) / 1e6, 1),
        "seconds_total": round(wall, 1),
        "seconds_download": manifest["pulled"]["download_seconds"],
        "seconds_convert": manifest["convert_seconds"],
        "batch": {t: manifest["conversion"][t]["batch"] for t in ("image", "text")},
        "fused_fp32": manifest["variants"]["fp32"]["fused"],
        "validation": {v: {k: e["validation"][k] for k in ("image_min_cosine", "text_min_cosine",
                                                           "batch_vs_single_min_cosine")}
                       | ({"top1_agreement_decided": e["validation"]["top1_agreement_decided"]} if v == "int8" else {})
                       for v, e in manifest["variants"].items()},
        "left_out": manifest.get("left_out", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    checkpoint = vitb32_checkpoint()
    results = []
    for layout, write, repo_id in (("transformers.js", write_transformers_js, "Xenova/clip-vit-b-32-random"),
                                   ("immich", write_immich, "immich-app/ViT-B-32__random")):
        folder = write(checkpoint, PULL_DIR / layout.replace(".", ""))
        say(f"pulling {repo_id} from the stand-in hub")
        results.append(pull(folder, repo_id, PULL_DIR / f"work-{layout.replace('.', '')}"))
        print(json.dumps(results[-1], indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
