"""The toy world's generator: same seed, same bytes; real files of every kind; captions that say
what the pictures hold; EXIF orientation that makes the stored pixels upright."""

from __future__ import annotations

import colorsys
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from benchmarks import toyworld

ROOT = Path(__file__).resolve().parents[1]
N = 60
SEED = 11


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("world")
    rows = toyworld.generate(out, N, SEED, caption_docs=True, max_size=900)
    return out, rows


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    toyworld.generate(again, N, SEED, caption_docs=True, max_size=900)
    assert _files(out) == _files(again)
    other = tmp_path / "other"
    toyworld.generate(other, 10, SEED + 1, max_size=900)
    first = _files(out)
    assert any(first.get(k) != v for k, v in _files(other).items() if k.startswith("images/"))


def test_files_and_formats(world):
    out, rows = world
    assert len(rows) == N
    assert [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()] == rows
    seen = set()
    for row in rows:
        path = out / row["path"]
        with Image.open(path) as img:
            seen.add(img.format)
            stored = img.size
        want = (row["width"], row["height"])
        assert stored == (want if row["orientation"] not in (5, 6, 7, 8) else want[::-1])
        assert 1 <= len(row["objects"]) <= 3
        assert max(want) <= 900
    assert seen == {"JPEG", "PNG", "WEBP"}
    assert any(r["orientation"] for r in rows)
    assert any(r["orientation"] in (5, 6, 7, 8) for r in rows)
    assert len({(r["width"], r["height"]) for r in rows}) > N // 2


def test_large_pictures_allowed_by_default():
    import random

    rng = random.Random(5)
    sizes = [toyworld._file_plan(rng, None)[1:] for _ in range(2000)]
    assert max(max(s) for s in sizes) == 4000
    assert max(w * h for w, h in sizes) <= 12_000_000
    assert min(min(s) for s in sizes) >= 200
    assert sum(max(s) > 2500 for s in sizes) < 0.06 * len(sizes)  # the big ones stay few


def _colour_name(rgb) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if v < 0.25:
        return "black"
    if s < 0.2 and v > 0.8:
        return "white"
    hue_bins = [(0.04, "red"), (0.115, "orange"), (0.22, "yellow"), (0.48, "green"), (0.70, "blue"), (0.9, "purple")]
    for edge, name in hue_bins:
        if h < edge:
            return name
    return "red"


def _colour_at(img: Image.Image, box) -> str:
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    half = max(1, (box[2] - box[0]) // 12)
    patch = np.asarray(img.crop((cx - half, cy - half, cx + half + 1, cy + half + 1)), np.float32)
    return _colour_name(np.median(patch.reshape(-1, 3), axis=0))


def test_objects_where_the_rows_say(world):
    out, rows = world
    for row in rows:
        with Image.open(out / row["path"]) as raw:
            upright = ImageOps.exif_transpose(raw).convert("RGB")
        assert upright.size == (row["width"], row["height"])
        for o in row["objects"]:
            assert _colour_at(upright, o["box"]) == o["colour"], (row["path"], o)


def test_exif_orientation_is_needed(world):
    """The stored pixels of a turned picture do not show the objects where the row says."""
    out, rows = world
    turned = [r for r in rows if r["orientation"] in (3, 6, 8) and len(r["objects"]) >= 2]
    assert turned
    wrong = 0
    for row in turned:
        with Image.open(out / row["path"]) as raw:
            stored = raw.convert("RGB")
            exif = raw.getexif()
        assert exif.get(0x0112) == row["orientation"]
        w, h = stored.size
        for o in row["objects"]:
            box = o["box"]
            if box[2] <= w and box[3] <= h and _colour_at(stored, box) != o["colour"]:
                wrong += 1
                break
            if box[2] > w or box[3] > h:
                wrong += 1
                break
    assert wrong >= len(turned) // 2


def test_captions_name_the_attributes(world):
    _, rows = world
    for row in rows:
        claims, text = row["claims"], row["caption"]
        assert toyworld.matches(claims, row["objects"]), row
        words = text.replace(",", " ").replace(":", " ").split()
        assert sum(w in toyworld.SHAPES for w in words) == len(row["objects"])
        for c in claims["objects"]:
            assert c["colour"] in words and c["shape"] in words
            if c["size"]:
                assert c["size"] in words
        assert sum(w in toyworld.SIZES for w in words) == sum(1 for c in claims["objects"] if c["size"])
        # Change one named colour: no longer a match.
        wrong = json.loads(json.dumps(claims))
        c0 = wrong["objects"][0]
        c0["colour"] = next(c for c in toyworld.COLOURS if c not in {o["colour"] for o in row["objects"]})
        assert not toyworld.matches(wrong, row["objects"])


def test_relevance_rules():
    a = {"shape": "circle", "colour": "red", "size": "small", "u": 0.25, "v": 0.5}
    b = {"shape": "square", "colour": "blue", "size": "large", "u": 0.75, "v": 0.5}
    claim = {"objects": [{"shape": "circle", "colour": "red", "size": None},
                         {"shape": "square", "colour": "blue", "size": None}],
             "position": None, "relation": "left of", "order": None}
    assert toyworld.matches(claim, [a, b]) and toyworld.matches(claim, [b, a])
    assert not toyworld.matches(dict(claim, relation="right of"), [a, b])
    assert not toyworld.matches(dict(claim, relation="above"), [a, b])
    assert not toyworld.matches(claim, [a])
    sized = json.loads(json.dumps(claim))
    sized["objects"][0]["size"] = "large"
    assert not toyworld.matches(sized, [a, b])
    single = {"objects": [{"shape": "circle", "colour": "red", "size": "small"}], "position": "left",
              "relation": None, "order": None}
    assert toyworld.matches(single, [a]) and not toyworld.matches(dict(single, position="middle"), [a])


def test_documents(world):
    import pypdfium2 as pdfium

    out, rows = world
    by_path = {r["path"]: r for r in rows}
    _, docs = toyworld.load(out)
    assert {d["path"] for d in docs} == {"docs/notes.txt", "docs/album.md", "docs/report.pdf"}
    for d in docs:
        assert d["describes"] and all(p in by_path for p in d["describes"])
        if d["path"].endswith(".pdf"):
            pdf = pdfium.PdfDocument(str(out / d["path"]))
            text = " ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
            pdf.close()
        else:
            text = (out / d["path"]).read_text()
        text = " ".join(text.split())
        for p in d["describes"]:
            assert Path(p).name in text and by_path[p]["caption"] in text, (d["path"], p)
    for row in rows:
        assert (out / row["caption_doc"]).read_text().strip() == row["caption"]


def test_cli(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.toyworld", "--out", str(tmp_path / "w"), "--n", "5", "--seed", "2",
         "--max-size", "400", "--caption-docs"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    rows, _ = toyworld.load(tmp_path / "w")
    assert len(rows) == 5 and all((tmp_path / "w" / r["caption_doc"]).exists() for r in rows)
