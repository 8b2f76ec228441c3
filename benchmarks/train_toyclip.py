"""Train a small CLIP on the toy world, on the CPU, then export it as an mmsearch bundle.

    python -m benchmarks.train_toyclip --out DIR [--minutes 15] [--seed 0] [--ckpt .work/toyclip-ckpt]
                                       [--no-export] [--eval-n 500]

1. Draws training pictures in memory (`benchmarks.toyworld.sample_scene`/`render`) at varied sizes
   and aspect ratios, some JPEG-compressed, and puts each through the runtime's own resize and
   centre crop (mmsearch.preprocess, the CLIPImageProcessor steps) to 64x64. Pictures come in
   families of four: a scene and three copies that differ in one attribute (a colour, a shape, a
   size, where things are), so every batch is full of hard negatives. Captions are drawn afresh
   each epoch from the same grammar as the toy world's, mirrored pictures get mirrored captions.
2. Trains a byte-level BPE tokenizer (CLIP's conventions) on captions, and a `transformers`
   CLIPModel (ViT 64 px / patch 16) with the symmetric contrastive loss of the CLIP paper. A picture
   and a caption that match (`toyworld.matches`) are both targets of each other, so captions that
   leave out an attribute do not teach the model to tell apart what they do not name. AdamW,
   warm-up then cosine, learned logit scale; the schedule ends at --minutes whatever the step.
3. Saves the checkpoint with save_pretrained (model, CLIPImageProcessor with this model's own
   mean/std, CLIPTokenizer) to --ckpt, with train_info.json (seed, steps, minutes, recall).
4. Measures Recall@1/5/10 in PyTorch on a held-out toy world written to disk (seed 9000+seed, read
   back through the saved image processor and tokenizer), text->image and image->text.
5. Exports fp32 and int8 with mmsearch_export.export_bundle to DIR (the test fixture:
   tests/fixtures/toyclip) unless --no-export.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import toyworld as tw

ROOT = Path(__file__).resolve().parents[1]

IMAGE_SIZE = 64
PATCH = 16  # 4x4 tokens: a ViT this small learns shapes many times faster than with patch 8
CONTEXT = 32
# This model's own normalisation: deliberately not CLIP's or SigLIP's, and different per channel,
# so a runtime that ignores the bundle's mean/std or swaps channels loses the benchmark.
MEAN = (0.40, 0.50, 0.60)
STD = (0.20, 0.25, 0.30)

MODEL = dict(
    vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
    text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4),
    projection_dim=128,
)
TOKENIZER_VOCAB = 1000  # an upper bound: merges stop once every caption word is one token


# ------------------------------------------------------------------------------------------- data
def image_spec():
    from mmsearch.bundle import ImageSpec

    return ImageSpec(size=(IMAGE_SIZE, IMAGE_SIZE), resize="shortest_edge", resize_size=IMAGE_SIZE,
                     interpolation="bicubic", crop="center", rescale_factor=1 / 255, mean=MEAN, std=STD)


def _mutate(scene: dict[str, Any], how: str, rng: random.Random) -> dict[str, Any] | None:
    s = json.loads(json.dumps(scene))
    objs = s["objects"]
    o = rng.choice(objs)
    if how == "colour":
        o["colour"] = rng.choice([c for c in tw.COLOURS if c != o["colour"]])
    elif how == "shape":
        o["shape"] = rng.choice([c for c in tw.SHAPES if c != o["shape"]])
    elif how == "size":
        o["size"] = "large" if o["size"] == "small" else "small"
        lo, hi = tw._RADIUS[o["size"]]
        o["r"] = round(rng.uniform(lo, hi), 4)
    elif how == "place":
        if s["kind"] == "single":
            pos = rng.choice([p for p in tw.POSITIONS if p != s["position"]])
            moved = tw.sample_scene(rng, 1, pos)
            o.update(u=moved["objects"][0]["u"], v=moved["objects"][0]["v"])
            s["position"] = pos
        else:  # swap two objects' places
            i, j = rng.sample(range(len(objs)), 2)
            for k in ("u", "v"):
                objs[i][k], objs[j][k] = objs[j][k], objs[i][k]
            if s["kind"] == "pair" and rng.random() < 0.5:  # or turn the pair a quarter
                s["axis"] = "vertical" if s["axis"] == "horizontal" else "horizontal"
                for ob in objs:
                    ob["u"], ob["v"] = ob["v"], ob["u"]
    elif how == "count":
        n = len(objs)
        m = rng.choice([c for c in (1, 2, 3) if c != n])
        new = tw.sample_scene(rng, m)
        for a, b in zip(new["objects"], objs):  # keep the first objects' looks
            a.update(shape=b["shape"], colour=b["colour"], size=b["size"], r=b["r"])
        s = new
    return s


def family(rng: random.Random) -> list[dict[str, Any]]:
    base = tw.sample_scene(rng)
    # Shapes are what a small model learns last: every family has a copy with one shape changed.
    hows = ["shape"] + rng.sample(("colour", "size", "place", "count", "shape"), 2)
    return [base] + [_mutate(base, h, rng) for h in hows]


def _render_train(scene: dict[str, Any], rng: random.Random, nrng: np.random.Generator, spec) -> np.ndarray:
    from PIL import Image

    from mmsearch.preprocess import resize_and_crop

    short = int(math.exp(rng.uniform(math.log(IMAGE_SIZE), math.log(IMAGE_SIZE * 3.5))))
    aw, ah = rng.choice(tw._ASPECTS)
    w, h = (round(short * aw / ah), short) if aw >= ah else (short, round(short * ah / aw))
    img = tw.render(scene, w, h, nrng)
    if rng.random() < 0.4:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(70, 95))
        img = Image.open(buf)
        img.load()
    return np.asarray(resize_and_crop(img.convert("RGB"), spec), np.uint8)


def _render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    seed, start, count = args
    spec = image_spec()
    images, scenes = [], []
    for f in range(start, start + count):
        rng = random.Random(f"toyclip-train/{seed}/{f}")
        nrng = np.random.default_rng([seed, f, 0x7C11])
        for scene in family(rng):
            images.append(_render_train(scene, rng, nrng, spec))
            scenes.append(scene)
    return np.stack(images), scenes


def make_data(families: int, seed: int, workers: int, log=print) -> tuple[np.ndarray, list[dict[str, Any]]]:
    t0 = time.monotonic()
    chunk = 250
    tasks = [(seed, s, min(chunk, families - s)) for s in range(0, families, chunk)]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, tasks, chunksize=1)
    else:
        parts = [_render_chunk(t) for t in tasks]
    images = np.concatenate([p[0] for p in parts])
    scenes = [s for p in parts for s in p[1]]
    log(f"drew {len(scenes)} training pictures ({families} families) in {time.monotonic() - t0:.0f}s")
    return images, scenes


def corpus(count: int, seed: int) -> list[str]:
    rng = random.Random(f"toyclip-corpus/{seed}")
    return [tw.caption(tw.sample_scene(rng), rng, omit=0.3)[0] for _ in range(count)]


def targets(scenes: list[dict[str, Any]], claims: list[dict[str, Any]]) -> np.ndarray:
    """match[i, j]: picture i matches every attribute caption j names."""
    n = len(scenes)
    out = np.zeros((n, n), np.float32)
    by_sig: dict[tuple, list[int]] = {}
    for j, c in enumerate(claims):
        by_sig.setdefault(tw.signature(c["objects"]), []).append(j)
    for i, s in enumerate(scenes):
        for j in by_sig.get(tw.signature(s["objects"]), ()):
            if tw.matches(claims[j], s["objects"]):
                out[i, j] = 1.0
    np.fill_diagonal(out, 1.0)
    return out


# ------------------------------------------------------------------------------------- tokenizer
def _train_bpe_tokenizer():
    """mmsearch_export/tiny.py's train_bpe_tokenizer (the export helper's)."""
    from mmsearch_export.tiny import train_bpe_tokenizer

    return train_bpe_tokenizer


def build_tokenizer(texts: list[str]):
    """A CLIPTokenizer (fast) whose vocabulary and merges come from BPE trained on `texts`."""
    from transformers import CLIPTokenizer

    trained = _train_bpe_tokenizer()(texts, TOKENIZER_VOCAB)
    model = json.loads(trained.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = CLIPTokenizer(vocab=dict(model["vocab"]), merges=merges, model_max_length=CONTEXT)
    assert tok.bos_token_id == 0 and tok.eos_token_id == 1 and tok.pad_token_id == 1, (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    return tok


# ----------------------------------------------------------------------------------------- model
def build_model(vocab_size: int, bos: int, eos: int, seed: int):
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(MODEL["text"], vocab_size=vocab_size, max_position_embeddings=CONTEXT,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(MODEL["vision"], image_size=IMAGE_SIZE, patch_size=PATCH),
        projection_dim=MODEL["projection_dim"],
    )
    torch.manual_seed(seed)
    return CLIPModel(config)


def to_pixels(images_u8: np.ndarray):
    import torch

    x = torch.from_numpy(images_u8).float().mul_(1 / 255)
    x = (x - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(0, 3, 1, 2).contiguous()


def encode_texts(model, tok, texts: list[str], batch: int = 512):
    import torch

    outs = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=CONTEXT, return_tensors="pt")
        outs.append(_features(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])))
    e = torch.cat(outs)
    return e / e.norm(dim=-1, keepdim=True)


def encode_images(model, pixels, batch: int = 512):
    import torch

    outs = [_features(model.get_image_features(pixel_values=pixels[i : i + batch])) for i in range(0, len(pixels), batch)]
    e = torch.cat(outs)
    return e / e.norm(dim=-1, keepdim=True)


def _features(x):
    # transformers 5 returns a ModelOutput from get_*_features; 4.x a tensor
    return x if hasattr(x, "norm") else x.pooler_output


def recall(sim: np.ndarray, relevant: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """sim[q, d], relevant[q, d] (bool): the share of queries with a relevant result in the top k."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def quick_eval(model, tok, images_u8, scenes, seed: int) -> dict[str, float]:
    import torch

    rng = random.Random(f"toyclip-quickeval/{seed}")
    caps = [tw.caption(s, rng) for s in scenes]
    model.eval()
    with torch.no_grad():
        ie = encode_images(model, to_pixels(images_u8))
        te = encode_texts(model, tok, [c[0] for c in caps])
    model.train()
    sim = (te @ ie.T).numpy()
    rel = np.array([[tw.matches(c[1], s["objects"]) for s in scenes] for c in caps])
    t2i = recall(sim, rel)
    i2t = recall(sim.T, rel.T)
    return {"t2i_" + k: v for k, v in t2i.items()} | {"i2t_" + k: v for k, v in i2t.items()}


# ---------------------------------------------------------------------------------------- train
def train(args, log=print) -> dict[str, Any]:
    import torch

    t_start = time.monotonic()
    if not args.threads:
        cores = os.cpu_count() or 1
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        args.threads = 1 if cores <= 2 and busy > 1.5 else cores
        log(f"threads: {args.threads} ({cores} cores, load {busy:.1f})")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    budget = args.minutes * 60

    texts = corpus(20000, args.seed)
    tok = build_tokenizer(texts)
    log(f"tokenizer: {len(tok)} tokens, e.g. {tok.tokenize(texts[0])}")

    images, scenes = make_data(args.families, args.seed, args.workers, log)
    val_rng = random.Random(f"toyclip-val/{args.seed}")
    val_scenes = [tw.sample_scene(val_rng) for _ in range(400)]
    spec = image_spec()
    nrng = np.random.default_rng([args.seed, 0x5A1])
    val_images = np.stack([_render_train(s, val_rng, nrng, spec) for s in val_scenes])

    model = build_model(len(tok), tok.bos_token_id, tok.eos_token_id, args.seed)
    model.train()
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name == "logit_scale":
            continue
        (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    # The temperature learns ten times faster: hard-negative batches want it sharp early.
    groups = [{"params": decay, "weight_decay": 0.1, "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
              {"params": [model.logit_scale], "weight_decay": 0.0, "lr_mult": 10.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    nfam = len(scenes) // 4
    fam_per_batch = args.batch // 4
    rng = random.Random(f"toyclip-batches/{args.seed}")
    step, epoch = 0, 0
    t_train = time.monotonic()
    train_budget = budget - (t_train - t_start) - args.reserve * 60
    total = args.steps
    warmup = max(1, int(0.04 * total))
    history = []
    done = False
    while not done:
        order = list(range(nfam))
        rng.shuffle(order)
        for b in range(0, nfam - fam_per_batch + 1, fam_per_batch):
            fams = order[b : b + fam_per_batch]
            idx = [4 * f + k for f in fams for k in range(4)]
            flip = [rng.random() < 0.5 for _ in idx]
            batch_scenes = [tw.hflip_scene(scenes[i]) if fl else scenes[i] for i, fl in zip(idx, flip)]
            imgs = images[idx]
            imgs = np.where(np.asarray(flip)[:, None, None, None], imgs[:, :, ::-1], imgs)
            caps = [tw.caption(s, rng, omit=0.3) for s in batch_scenes]
            tgt = torch.from_numpy(targets(batch_scenes, [c[1] for c in caps]))
            enc = tok([c[0] for c in caps], padding=True, truncation=True, max_length=CONTEXT, return_tensors="pt")

            elapsed = time.monotonic() - t_train
            progress = max(step / total, elapsed / train_budget)
            if progress >= 1:
                done = True
                break
            lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]

            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            pixel_values=to_pixels(imgs))
            logits = out.logits_per_image.float()  # [images, texts], scaled by exp(logit_scale)
            loss_i = -(torch.log_softmax(logits, 1) * (tgt / tgt.sum(1, keepdim=True))).sum(1).mean()
            loss_t = -(torch.log_softmax(logits.T, 1) * (tgt.T / tgt.T.sum(1, keepdim=True))).sum(1).mean()
            loss = (loss_i + loss_t) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            if step % args.log_every == 0:
                log(f"step {step} epoch {epoch} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                    f"lr {lr:.2e} {time.monotonic() - t_train:.0f}s")
            if step % args.eval_every == 0:
                r = quick_eval(model, tok, val_images, val_scenes, args.seed)
                history.append({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 3) for k, v in r.items()}})
                log(f"  val {json.dumps(r)}")
        epoch += 1
    model.eval()
    train_s = time.monotonic() - t_train
    r = quick_eval(model, tok, val_images, val_scenes, args.seed)
    log(f"trained {step} steps ({epoch} epochs) in {train_s / 60:.1f} min; val {json.dumps(r)}")
    return {"model": model, "tokenizer": tok, "steps": step, "epochs": epoch, "train_seconds": round(train_s, 1),
            "total_seconds": round(time.monotonic() - t_start, 1), "val": r, "history": history}


def save_checkpoint(result: dict[str, Any], ckpt: Path, info: dict[str, Any]) -> None:
    from transformers import CLIPImageProcessorPil, CLIPProcessor

    ckpt.mkdir(parents=True, exist_ok=True)
    result["model"].save_pretrained(ckpt)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3, do_center_crop=True, do_resize=True, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=list(MEAN), image_std=list(STD), do_convert_rgb=True,
    )
    CLIPProcessor(image_processor=processor, tokenizer=result["tokenizer"]).save_pretrained(ckpt)
    processor.save_pretrained(ckpt)
    (ckpt / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")


# ------------------------------------------------------------------------------------- held out
def heldout_eval(ckpt: Path, world: Path, log=print) -> dict[str, float]:
    """Recall on a toy world on disk, read with the checkpoint's own processor and tokenizer."""
    import torch
    from PIL import Image, ImageOps
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(ckpt).eval()
    proc = CLIPImageProcessorPil.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    rows, _ = tw.load(world)
    feats = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            ims = []
            for r in rows[i : i + 64]:
                with Image.open(world / r["path"]) as im:
                    ims.append(ImageOps.exif_transpose(im).convert("RGB"))
            px = proc(images=ims, return_tensors="pt")["pixel_values"]
            feats.append(_features(model.get_image_features(pixel_values=px)))
        ie = torch.cat(feats)
        ie = ie / ie.norm(dim=-1, keepdim=True)
        caps = [r["caption"] for r in rows]
        enc = tok(caps, padding=True, return_tensors="pt")
        te = _features(model.get_text_features(**enc))
        te = te / te.norm(dim=-1, keepdim=True)
    sim = (te @ ie.T).numpy()
    rel = np.array([[tw.matches(q["claims"], d["objects"]) for d in rows] for q in rows])
    out = {"t2i_" + k: v for k, v in recall(sim, rel).items()}
    out |= {"i2t_" + k: v for k, v in recall(sim.T, rel.T).items()}
    log(f"held-out ({len(rows)} pictures, {world}): {json.dumps(out)}")
    return out


# ---------------------------------------------------------------------------------------- export
def export(ckpt: Path, out: Path, log=print) -> Path | None:
    try:
        from mmsearch_export import export_bundle
    except ImportError as e:  # the export extra (torch, transformers) is missing
        log(f"export skipped: mmsearch_export.export_bundle is not available ({e})")
        return None
    if out.exists():
        import shutil

        shutil.rmtree(out)
    path = export_bundle(ckpt, out, name="toyclip", variants=("fp32", "int8"))
    # The runtime remembers verified hashes next to the files; that cache is not part of the fixture.
    (Path(path) / ".gitignore").write_text(".verified.json\n")
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    log(f"exported {path} ({size / 1e6:.1f} MB)")
    return Path(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_toyclip", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "toyclip", help="the exported bundle")
    ap.add_argument("--ckpt", type=Path, default=ROOT / ".work" / "toyclip-ckpt", help="the transformers checkpoint")
    ap.add_argument("--minutes", type=float, default=15.0, help="time for everything but the held-out test and export")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000, help="steps, when the minutes allow")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--families", type=int, default=12000, help="training families of four pictures")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores, or one when others keep them busy)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--reserve", type=float, default=0.3, help="minutes kept for saving")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-n", type=int, default=500, help="held-out pictures for the PyTorch recall (0: none)")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    result = train(args, log)
    info = {
        "seed": args.seed,
        "steps": result["steps"],
        "epochs": result["epochs"],
        "batch": args.batch,
        "lr": args.lr,
        "families": args.families,
        "bf16": args.bf16,
        "threads": args.threads,
        "train_minutes": round(result["train_seconds"] / 60, 2),
        "total_minutes": round(result["total_seconds"] / 60, 2),
        "image_size": IMAGE_SIZE, "patch": PATCH, "context": CONTEXT, "mean": MEAN, "std": STD, "model": MODEL,
        "val": result["val"],
        "history": result["history"],
        "command": " ".join(["python -m benchmarks.train_toyclip"] + list(argv if argv is not None else sys.argv[1:])),
    }
    save_checkpoint(result, args.ckpt, info)
    log(f"saved checkpoint to {args.ckpt}")
    if args.eval_n:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            world = Path(tmp) / "heldout"
            tw.generate(world, args.eval_n, 9000 + args.seed, max_size=1024, documents=False)
            info["heldout"] = {"n": args.eval_n, "seed": 9000 + args.seed, **heldout_eval(args.ckpt, world, log)}
        (args.ckpt / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    if not args.no_export:
        path = export(args.ckpt, args.out, log)
        if path is not None:
            (Path(path) / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
