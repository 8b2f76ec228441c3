"""A small world drawn with Pillow, for training and judging a CLIP model without a model hub.

Each picture holds one to three objects (six shapes, eight colours, two sizes) placed on the left,
right, top, bottom or in the middle, or beside each other (left of / above / in a row), on a varied
background with blur and noise. Every picture gets a caption that names its objects and their
layout ("a small red circle left of a blue square"); a caption may leave out a size or the layout,
and then every picture that matches what it does name is a right answer (see `matches`).

    python -m benchmarks.toyworld --out DIR --n 500 --seed 7 [--caption-docs] [--max-size 1024]

writes::

    DIR/images/img_00000.jpg ...    JPEG (200 px to 4000x3000, some with an EXIF orientation tag and
                                    their pixels stored turned so the tag makes them upright), PNG, WebP
    DIR/captions/img_00000.txt ...  with --caption-docs: one text file per picture holding its caption
    DIR/docs/notes.txt, album.md, report.pdf
                                    a few documents whose paragraphs describe some of the pictures
    DIR/captions.jsonl              one row per picture: path (relative to DIR), caption, claims (what
                                    the caption names), objects (what the picture holds), size, format,
                                    orientation, caption_doc
    DIR/docs.jsonl                  one row per document: path, describes (picture paths)
    DIR/world.json                  how it was made (seed, n, options)

Same seed, same options: the same bytes. Objects stay inside the centred square of the picture,
so a shortest-edge resize and centre crop (CLIP's preprocessing) never cuts one off. Positions
(`u`, `v`, radius `r`) are fractions of that square's side, measured on the upright picture.

Training draws scenes in memory with `sample_scene`, `render` and `caption` at the sizes it likes.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

VERSION = 1

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "middle")
RELATIONS = ("left of", "right of", "above", "below")
ORDERS = ("left to right", "top to bottom")

# Hue (0..1), saturation and value ranges of each colour; white and black are near-grey.
_COLOUR_HSV = {
    "red": ((-0.02, 0.02), (0.75, 1.0), (0.70, 1.0)),
    "orange": ((0.065, 0.095), (0.80, 1.0), (0.85, 1.0)),
    "yellow": ((0.14, 0.17), (0.75, 1.0), (0.85, 1.0)),
    "green": ((0.28, 0.40), (0.65, 1.0), (0.50, 0.90)),
    "blue": ((0.58, 0.66), (0.70, 1.0), (0.65, 1.0)),
    "purple": ((0.76, 0.83), (0.55, 0.90), (0.50, 0.85)),
    "white": ((0.0, 1.0), (0.0, 0.06), (0.93, 1.0)),
    "black": ((0.0, 1.0), (0.0, 0.25), (0.0, 0.12)),
}
# Radius of an object, as a fraction of the centred square's side.
_RADIUS = {"small": (0.080, 0.092), "large": (0.135, 0.148)}

# How a caption says where things are; the matching rules in `_position_holds` / `_relation_holds`
# leave a margin, so every generated layout is unambiguous.
_POSITION_WORDS = {
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
    "middle": ("in the middle", "in the centre"),
}
_RELATION_WORDS = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below",),
}
_PREFIXES = ("", "", "", "", "a photo of ", "a picture of ")

_ASPECTS = ((4, 3), (3, 2), (16, 9), (1, 1), (3, 4), (2, 3), (9, 16), (5, 4))
# Stored pixels are the upright picture turned by the inverse of what exif_transpose applies.
_EXIF_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # exif_transpose turns 6 back with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # ... and 8 with ROTATE_90
}
_ORIENTATIONS = (6, 6, 8, 8, 3, 3, 2, 4, 5, 7)
_WORK_SIDE = 800  # pictures larger than this are drawn at this size and scaled up

_FILLER = (
    "The light was soft that afternoon.",
    "It is one of the clearer shots in the set.",
    "Nothing else was on the table.",
    "We kept it for the catalogue.",
    "The background came out a little noisy.",
    "Taken with the old camera.",
    "A test shot before the real session.",
    "The colours are true to life.",
)


# ----------------------------------------------------------------------------------------- scenes
def _obj(rng: random.Random, u: float, v: float, size: str | None = None) -> dict[str, Any]:
    size = size or rng.choice(SIZES)
    lo, hi = _RADIUS[size]
    return {
        "shape": rng.choice(SHAPES),
        "colour": rng.choice(COLOURS),
        "size": size,
        "u": round(u, 4),
        "v": round(v, 4),
        "r": round(rng.uniform(lo, hi), 4),
    }


def sample_scene(rng: random.Random, count: int | None = None, layout: str | None = None) -> dict[str, Any]:
    """A scene: its objects (shape, colour, size, centre u/v and radius r in square units) and
    how they were laid out (`kind` single/pair/row, and the `position` or `axis` used)."""
    if count is None:
        count = rng.choices((1, 2, 3), weights=(0.35, 0.45, 0.20))[0]
    if count == 1:
        position = layout or rng.choice(POSITIONS)
        if position in ("left", "right"):
            u, v = rng.uniform(0.19, 0.29), rng.uniform(0.40, 0.60)
            u = u if position == "left" else 1 - u
        elif position in ("top", "bottom"):
            u, v = rng.uniform(0.40, 0.60), rng.uniform(0.19, 0.29)
            v = v if position == "top" else 1 - v
        else:
            u, v = rng.uniform(0.43, 0.57), rng.uniform(0.43, 0.57)
        return {"kind": "single", "position": position, "objects": [_obj(rng, u, v)]}
    axis = layout or rng.choice(("horizontal", "vertical"))
    if count == 2:
        a, b = rng.uniform(0.20, 0.34), rng.uniform(0.66, 0.80)
        across = (rng.uniform(0.40, 0.60), rng.uniform(0.40, 0.60))
        along = (a, b)
    else:
        along = tuple(c + rng.uniform(-0.012, 0.012) for c in (0.17, 0.50, 0.83))
        across = tuple(rng.uniform(0.42, 0.58) for _ in range(3))
    objects = []
    for p, q in zip(along, across):
        u, v = (p, q) if axis == "horizontal" else (q, p)
        objects.append(_obj(rng, u, v))
    return {"kind": "pair" if count == 2 else "row", "axis": axis, "objects": objects}


def hflip_scene(scene: dict[str, Any]) -> dict[str, Any]:
    """The scene seen in a mirror (all shapes are left-right symmetric), for training."""
    out = json.loads(json.dumps(scene))
    for o in out["objects"]:
        o["u"] = round(1 - o["u"], 4)
    if out.get("position") in ("left", "right"):
        out["position"] = "right" if out["position"] == "left" else "left"
    return out


# --------------------------------------------------------------------------------------- captions
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(o: dict[str, Any], with_size: bool) -> str:
    words = ([o["size"]] if with_size else []) + [o["colour"], o["shape"]]
    return f"{_article(words[0])} {' '.join(words)}"


def caption(scene: dict[str, Any], rng: random.Random, *, omit: float = 0.25, prefix: bool = True) -> tuple[str, dict]:
    """A caption of `scene` and its claims: what it names (objects in the caption's order, each
    with shape, colour and size or None, and the position, relation or order, or None)."""
    objs = scene["objects"]
    if scene["kind"] == "row":  # listed in the order they stand
        objs = sorted(objs, key=lambda o: o["u"] if scene["axis"] == "horizontal" else o["v"])
    if scene["kind"] == "pair" and rng.random() < 0.5:
        objs = [objs[1], objs[0]]
    sized = [rng.random() >= omit for _ in objs]
    claims: dict[str, Any] = {
        "objects": [
            {"shape": o["shape"], "colour": o["colour"], "size": o["size"] if s else None} for o, s in zip(objs, sized)
        ],
        "position": None,
        "relation": None,
        "order": None,
    }
    phrases = [_phrase(o, s) for o, s in zip(objs, sized)]
    if scene["kind"] == "single":
        text = phrases[0]
        if rng.random() >= omit * 0.8:
            claims["position"] = scene["position"]
            text += " " + rng.choice(_POSITION_WORDS[scene["position"]])
    elif scene["kind"] == "pair":
        a, b = objs
        if rng.random() >= omit * 0.6:
            if scene["axis"] == "horizontal":
                rel = "left of" if a["u"] < b["u"] else "right of"
            else:
                rel = "above" if a["v"] < b["v"] else "below"
            claims["relation"] = rel
            text = f"{phrases[0]} {rng.choice(_RELATION_WORDS[rel])} {phrases[1]}"
        else:
            text = f"{phrases[0]} and {phrases[1]}"
    else:
        listed = f"{phrases[0]}, {phrases[1]} and {phrases[2]}"
        if rng.random() >= omit * 0.8:
            order = "left to right" if scene["axis"] == "horizontal" else "top to bottom"
            claims["order"] = order
            text = f"from {order}: {listed}" if rng.random() < 0.5 else f"{listed}, from {order}"
        else:
            text = listed
    if prefix and not text.startswith("from "):
        text = rng.choice(_PREFIXES) + text
    return text, claims


def _position_holds(o: dict[str, Any], position: str) -> bool:
    u, v = o["u"], o["v"]
    if position == "left":
        return u < 0.34
    if position == "right":
        return u > 0.66
    if position == "top":
        return v < 0.34
    if position == "bottom":
        return v > 0.66
    return 0.38 <= u <= 0.62 and 0.38 <= v <= 0.62


def _relation_holds(a: dict[str, Any], b: dict[str, Any], relation: str) -> bool:
    if relation == "left of":
        return b["u"] - a["u"] >= 0.25
    if relation == "right of":
        return a["u"] - b["u"] >= 0.25
    if relation == "above":
        return b["v"] - a["v"] >= 0.25
    return a["v"] - b["v"] >= 0.25  # below


def _order_holds(objs: Sequence[dict[str, Any]], order: str) -> bool:
    key = "u" if order == "left to right" else "v"
    return all(objs[i + 1][key] - objs[i][key] >= 0.2 for i in range(len(objs) - 1))


def matches(claims: dict[str, Any], objects: Sequence[dict[str, Any]]) -> bool:
    """Whether a picture holding `objects` matches every attribute `claims` names: as many objects,
    each named shape, colour and size, and the named position, relation or order."""
    named = claims["objects"]
    if len(named) != len(objects):
        return False
    for perm in itertools.permutations(objects):
        if not all(
            o["shape"] == c["shape"] and o["colour"] == c["colour"] and (c["size"] is None or o["size"] == c["size"])
            for o, c in zip(perm, named)
        ):
            continue
        if claims.get("position") and not _position_holds(perm[0], claims["position"]):
            continue
        if claims.get("relation") and not _relation_holds(perm[0], perm[1], claims["relation"]):
            continue
        if claims.get("order") and not _order_holds(perm, claims["order"]):
            continue
        return True
    return False


def signature(objects_or_claims: Sequence[dict[str, Any]]) -> tuple:
    """Colour and shape of each object, sorted: pictures and claims can only match when equal."""
    return tuple(sorted((o["colour"], o["shape"]) for o in objects_or_claims))


# -------------------------------------------------------------------------------------- rendering
def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _object_rgb(colour: str, rng: np.random.Generator) -> tuple[int, int, int]:
    (h0, h1), (s0, s1), (v0, v1) = _COLOUR_HSV[colour]
    return _hsv_to_rgb(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


def _muted(rng: np.random.Generator) -> np.ndarray:
    return np.asarray(_hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.30), rng.uniform(0.30, 0.72)), np.float32)


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(4)
    if kind == 0:  # plain
        return np.broadcast_to(_muted(rng), (h, w, 3)).copy()
    if kind == 1:  # gradient in some direction
        a, b = _muted(rng), _muted(rng)
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xs / max(w - 1, 1) - 0.5) * math.cos(angle) + (ys / max(h - 1, 1) - 0.5) * math.sin(angle)
        t = np.clip(t + 0.5, 0, 1)[..., None]
        return a * (1 - t) + b * t
    if kind == 2:  # horizon: two tones split at some height, softly
        a, b = _muted(rng), _muted(rng)
        cut = rng.uniform(0.25, 0.75) * h
        ys = np.arange(h, dtype=np.float32)[:, None, None]
        t = np.clip((ys - cut) / max(h * 0.03, 1.0) + 0.5, 0, 1)
        return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()
    # blotches: a few muted colours on a coarse grid, smoothly interpolated
    gh, gw = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    grid = np.stack([_muted(rng) for _ in range(gh * gw)]).reshape(gh, gw, 3).astype(np.uint8)
    return np.asarray(Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC), np.float32)


def _shape_polygon(shape: str, cx: float, cy: float, rad: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = 0.86 * rad
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
    elif shape == "triangle":
        rr = 1.12 * rad
        pts = [(rr * math.cos(a), rr * math.sin(a) + 0.12 * rad) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "star":
        pts = []
        for i in range(10):
            rr = 1.15 * rad if i % 2 == 0 else 0.48 * rad
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((rr * math.cos(a), rr * math.sin(a) + 0.08 * rad))
    elif shape == "cross":
        a, b = 0.34 * rad, 1.0 * rad
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    elif shape == "heart":
        pts = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 16 * 1.05 * rad, (-y / 16 - 0.12) * 1.05 * rad))
    else:
        raise ValueError(shape)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def render(scene: dict[str, Any], width: int, height: int, rng: np.random.Generator, *,
           noise: float | None = None, blur: float | None = None) -> Image.Image:
    """Draw `scene` upright at width x height: background, objects, blur, noise."""
    side = min(width, height)
    ox, oy = (width - side) / 2, (height - side) / 2
    bg = _background(width, height, rng)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for o in scene["objects"]:
        cx, cy, rad = ox + o["u"] * side, oy + o["v"] * side, o["r"] * side
        fill = _object_rgb(o["colour"], rng)
        if o["shape"] == "circle":
            draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=fill)
        else:
            angle = math.radians(rng.uniform(-8, 8))
            draw.polygon(_shape_polygon(o["shape"], cx, cy, rad, angle), fill=fill)
    blur = float(rng.uniform(0.0, 1.2)) if blur is None else blur
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur * side / 200))
    noise = float(rng.uniform(0.0, 12.0)) if noise is None else noise
    if noise > 0:
        arr = np.asarray(img, np.float32) + rng.standard_normal((height, width, 3), dtype=np.float32) * noise
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


# ------------------------------------------------------------------------------------------ files
def _file_plan(rng: random.Random, max_size: int | None) -> tuple[str, int, int]:
    fmt = rng.choices(("jpeg", "png", "webp"), weights=(0.6, 0.2, 0.2))[0]
    aw, ah = rng.choice(_ASPECTS)
    if fmt == "jpeg" and rng.random() < 0.04:  # a camera's full-size photo: up to 4000x3000
        long = rng.choice((3000, 3264, 4000))
        long = min(long, int(math.sqrt(12_000_000 * max(aw, ah) / min(aw, ah))))
    else:
        hi = {"jpeg": 1600, "png": 800, "webp": 1100}[fmt]
        short = int(math.exp(rng.uniform(math.log(200), math.log(hi))))
        long = int(short * max(aw, ah) / min(aw, ah))
    short = max(200, round(long * min(aw, ah) / max(aw, ah)))
    w, h = (long, short) if aw >= ah else (short, long)
    if max_size and max(w, h) > max_size:
        scale = max_size / max(w, h)
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
    return fmt, w, h


def _encode(img: Image.Image, fmt: str, rng: random.Random, orientation: int | None) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        kwargs: dict[str, Any] = {"quality": rng.randint(78, 95)}
        if orientation:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kwargs["exif"] = exif.tobytes()
        img.save(buf, "JPEG", **kwargs)
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=3)
    else:
        img.save(buf, "WEBP", quality=rng.randint(80, 92), method=3)
    return buf.getvalue()


def _picture(out: Path, index: int, seed: int, max_size: int | None) -> tuple[dict[str, Any], bytes, str]:
    rng = random.Random(f"toyworld/{seed}/{index}")
    nrng = np.random.default_rng([seed, index, 0x70])
    scene = sample_scene(rng)
    text, claims = caption(scene, rng)
    fmt, w, h = _file_plan(rng, max_size)
    work = min(1.0, _WORK_SIDE / max(w, h))
    ww, wh = max(1, round(w * work)), max(1, round(h * work))
    img = render(scene, ww, wh, nrng)
    if (ww, wh) != (w, h):
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    orientation = rng.choice(_ORIENTATIONS) if fmt == "jpeg" and rng.random() < 0.2 else None
    stored = img.transpose(_EXIF_STORE[orientation]) if orientation else img
    data = _encode(stored, fmt, rng, orientation)
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}[fmt]
    name = f"img_{index:05d}"
    side = min(w, h)
    ox, oy = (w - side) / 2, (h - side) / 2
    objects = []
    for o in scene["objects"]:
        cx, cy, rad = ox + o["u"] * side, oy + o["v"] * side, o["r"] * side
        objects.append(dict(o, box=[round(cx - rad), round(cy - rad), round(cx + rad), round(cy + rad)]))
    row = {
        "path": f"images/{name}.{ext}",
        "caption": text,
        "claims": claims,
        "objects": objects,
        "kind": scene["kind"],
        "layout": scene.get("position") or scene.get("axis"),
        "width": w,
        "height": h,
        "format": fmt,
        "orientation": orientation,
        "caption_doc": None,
    }
    return row, data, name


def _write_pdf(path: Path, title: str, paragraphs: Sequence[str]) -> None:
    from fpdf import FPDF  # fpdf2, in the `dev` extra

    pdf = FPDF(format="A4")
    pdf.set_creation_date(__import__("datetime").datetime(2024, 5, 1, 12, 0, 0, tzinfo=__import__("datetime").timezone.utc))
    pdf.set_title(title)
    pdf.set_producer("mmsearch toyworld")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 10, title)
    pdf.ln(4)
    pdf.set_font("Helvetica", size=11)
    for i, para in enumerate(paragraphs):
        if i and i % 6 == 0:
            pdf.add_page()
        pdf.multi_cell(0, 6, para)
        pdf.ln(3)
    pdf.output(str(path))


def _documents(out: Path, rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"toyworld-docs/{seed}")
    picks = list(range(len(rows)))
    rng.shuffle(picks)
    per = max(1, min(12, len(rows) // 10))
    groups = [sorted(picks[i * per : (i + 1) * per]) for i in range(3)]
    (out / "docs").mkdir(parents=True, exist_ok=True)

    def para(i: int) -> str:
        name = Path(rows[i]["path"]).name
        return f"Picture {name} shows {rows[i]['caption']}. {rng.choice(_FILLER)}"

    docs = []
    txt = ["Notes from the shoot", ""] + [para(i) + "\n" for i in groups[0]]
    (out / "docs" / "notes.txt").write_text("\n".join(txt), encoding="utf-8")
    docs.append({"path": "docs/notes.txt", "describes": [rows[i]["path"] for i in groups[0]]})
    md = ["# Album", "", "Some pictures from the collection.", ""]
    for i in groups[1]:
        md += [f"## {Path(rows[i]['path']).stem}", "", para(i), ""]
    (out / "docs" / "album.md").write_text("\n".join(md), encoding="utf-8")
    docs.append({"path": "docs/album.md", "describes": [rows[i]["path"] for i in groups[1]]})
    _write_pdf(out / "docs" / "report.pdf", "Report on the toy world", [para(i) for i in groups[2]])
    docs.append({"path": "docs/report.pdf", "describes": [rows[i]["path"] for i in groups[2] if groups[2]]})
    return docs


def generate(out: Path, n: int, seed: int, caption_docs: bool = False, *, max_size: int | None = None,
             documents: bool = True, progress: bool = False) -> list[dict[str, Any]]:
    """Write `n` pictures (and captions.jsonl, docs) under `out`; return the captions.jsonl rows."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if caption_docs:
        (out / "captions").mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.monotonic()
    for i in range(n):
        row, data, name = _picture(out, i, seed, max_size)
        (out / row["path"]).write_bytes(data)
        if caption_docs:
            row["caption_doc"] = f"captions/{name}.txt"
            (out / row["caption_doc"]).write_text(row["caption"] + "\n", encoding="utf-8")
        rows.append(row)
        if progress and (i + 1) % 100 == 0:
            print(f"{i + 1}/{n} pictures, {time.monotonic() - t0:.1f}s", file=sys.stderr)
    docs = _documents(out, rows, seed) if documents and rows else []
    with open(out / "captions.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, sort_keys=True) + "\n")
    meta = {"version": VERSION, "n": n, "seed": seed, "caption_docs": caption_docs, "max_size": max_size,
            "documents": documents}
    (out / "world.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return rows


def load(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The captions.jsonl and docs.jsonl rows of a generated world."""
    out = Path(out)
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    docs_file = out / "docs.jsonl"
    docs = [json.loads(line) for line in docs_file.read_text(encoding="utf-8").splitlines() if line] if docs_file.exists() else []
    return rows, docs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.toyworld", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caption-docs", action="store_true", help="one .txt file per picture holding its caption")
    ap.add_argument("--max-size", type=int, default=None, help="cap the long side of every picture (default 4000)")
    ap.add_argument("--no-docs", action="store_true", help="leave out the .txt/.md/.pdf documents")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    rows = generate(args.out, args.n, args.seed, args.caption_docs, max_size=args.max_size,
                    documents=not args.no_docs, progress=True)
    print(f"wrote {len(rows)} pictures to {args.out} in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
