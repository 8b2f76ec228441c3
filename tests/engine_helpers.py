"""Small collections for engine tests: distinct pictures and documents, written as real files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DOCS = {
    "harbour.txt": "The old harbour at dawn, fishing boats tied along the stone quay while gulls circle overhead.",
    "recipe.md": "# Lemon cake\n\nWhisk eggs and sugar, fold in flour and lemon zest, bake for forty minutes.",
    "garden.txt": "Tomatoes and basil grow beside the greenhouse; the roses need pruning before winter frost.",
}


def picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A picture unlike any other seed's: random blocks of colour, upscaled."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize(size, Image.Resampling.NEAREST)


def make_collection(root: Path, n_images: int = 6, docs: dict[str, str] | None = None, first_seed: int = 0) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_images):
        fmt = ["jpg", "png", "webp"][i % 3]
        p = root / ("sub" if i % 2 else "") / f"img{i}.{fmt}"
        p.parent.mkdir(parents=True, exist_ok=True)
        img = picture(first_seed + i)
        img.save(p, quality=95) if fmt == "jpg" else img.save(p)
        paths.append(p)
    for name, text in (DOCS if docs is None else docs).items():
        p = root / "docs" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        paths.append(p)
    return paths


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


SIGN_BACKGROUND = (240, 236, 220)


def sign(lines: list[str], size: tuple[int, int] = (480, 200), angle: float = 0.0, px: int = 36) -> Image.Image:
    """Words on a plain board, one line each, turned by `angle` degrees."""
    img = Image.new("RGB", size, SIGN_BACKGROUND)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((24, 30 + i * int(px * 1.8)), line, fill=(30, 30, 30), font=ImageFont.load_default(size=px))
    return img.rotate(angle, fillcolor=SIGN_BACKGROUND) if angle else img


def scanned_pdf(path: Path, pages: list[Image.Image]) -> None:
    """An image-only PDF, as a scanner writes one: each page a picture, no text layer."""
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=150)
