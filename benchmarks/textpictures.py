"""Pictures with words in them, and the same kinds of picture without: the OCR quality set.

Words are rendered in the system's fonts (every TrueType font fontconfig lists; DejaVu and Liberation
on Debian, `apt-get install fonts-dejavu-core` where there are none), at different sizes, colours and
rotations up to 15 degrees, over realistic photos (benchmarks/common.py), noise, gradients and flat
screens. Each picture of the text set carries words no other picture carries, so a keyword query for
one of them has exactly one right answer. The no-text set draws the same backgrounds from other seeds.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZES = ((640, 480), (1024, 768), (1600, 1200), (1920, 1080), (768, 1024))
BACKGROUNDS = ("photo", "noise", "gradient", "flat")
MAX_ROTATION = 15.0


class NoFonts(Exception):
    pass


@functools.cache
def system_fonts() -> tuple[str, ...]:
    """Every TrueType/OpenType font file fontconfig knows (else under /usr/share/fonts), sorted;
    symbol and math fonts are left out (their glyphs are not letters)."""
    found: list[str] = []
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, timeout=30).stdout
        found = [line.strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    if not found:
        found = glob.glob("/usr/share/fonts/**/*.[ot]tf", recursive=True)
    fonts = sorted({f for f in found if f.lower().endswith((".ttf", ".otf")) and os.path.isfile(f)
                    and not re.search(r"math|symbol|emoji|dingbat|awesome", os.path.basename(f), re.I)})
    if not fonts:
        raise NoFonts("no TrueType fonts on this machine: install them with `apt-get install fonts-dejavu-core`")
    return tuple(fonts)


@functools.cache
def vocabulary() -> tuple[str, ...]:
    """Distinct English words of 4 to 12 letters from Python's language reference, in a fixed order."""
    import pydoc_data.topics

    words: dict[str, None] = {}
    for text in pydoc_data.topics.topics.values():
        for w in re.findall(r"\b[A-Za-z]{4,12}\b", text):
            words.setdefault(w.lower(), None)
    return tuple(words)


@dataclass(frozen=True)
class TextPicture:
    name: str
    words: tuple[str, ...]  # what is written, one word per line or side by side
    font: str
    font_px: int
    angle: float
    background: str
    size: tuple[int, int]


def _background(rng: np.random.Generator, kind: str, width: int, height: int, seed: int) -> np.ndarray:
    from benchmarks.common import realistic_photo

    if kind == "photo":
        return realistic_photo(seed, width, height)
    if kind == "noise":
        base = rng.integers(40, 216, 3).astype(np.float32)
        noise = rng.normal(0, float(rng.uniform(12, 40)), (height, width, 3)).astype(np.float32)
        return np.clip(base + noise, 0, 255).astype(np.uint8)
    if kind == "gradient":
        a, b = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
        t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 1), np.float32)
        return (a + (b - a) * t).astype(np.uint8)
    return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (height, width, 3)).copy()


def _contrasting(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A text colour that stands out from the mean of the pixels it covers (light on dark, dark on
    light), in any hue: a sign or a caption, made to be read."""
    lum = float((under.reshape(-1, 3) @ np.array([0.299, 0.587, 0.114])).mean())
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if abs(float(c @ np.array([0.299, 0.587, 0.114])) - lum) >= 110:
            return int(c[0]), int(c[1]), int(c[2])
    return (0, 0, 0) if lum > 128 else (255, 255, 255)


def draw_picture(seed: int, words: tuple[str, ...] | None, size: tuple[int, int] | None = None,
                 background: str | None = None) -> tuple[np.ndarray, TextPicture]:
    """One picture of the set: words (None: no text) over a drawn background, of one of SIZES and
    BACKGROUNDS unless `size` or `background` is given."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    if size is not None:
        width, height = size
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if background is not None:
        kind = background
    pixels = _background(rng, kind, width, height, seed)
    info = TextPicture(f"{seed:05d}", (), "", 0, 0.0, kind, (width, height))
    if not words:
        return pixels, info
    fonts = system_fonts()
    font_path = fonts[int(rng.integers(len(fonts)))]
    # Sizes from a caption to a headline: the letters' em from 3% to 14% of the short side.
    font_px = int(min(width, height) * rng.uniform(0.03, 0.14))
    font = ImageFont.truetype(font_path, font_px)
    text = "\n".join(words) if rng.random() < 0.5 else " ".join(words)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, spacing=font_px // 3)
    tw, th = right - left + 2 * font_px // 4, bottom - top + 2 * font_px // 4
    while (tw > width * 0.95 or th > height * 0.95) and font_px > 12:  # too large for the picture: smaller
        font_px = int(font_px * 0.85)
        font = ImageFont.truetype(font_path, font_px)
        left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, spacing=font_px // 3)
        tw, th = right - left + 2 * font_px // 4, bottom - top + 2 * font_px // 4
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    layer = Image.new("L", (tw, th), 0)
    ImageDraw.Draw(layer).multiline_text((font_px // 4 - left, font_px // 4 - top), text, fill=255, font=font,
                                         spacing=font_px // 3)
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    lw, lh = layer.size
    x = int(rng.integers(0, max(1, width - lw)))
    y = int(rng.integers(0, max(1, height - lh)))
    mask = np.zeros((height, width), np.float32)
    region = np.asarray(layer, np.float32)[: height - y, : width - x] / 255.0
    mask[y : y + region.shape[0], x : x + region.shape[1]] = region
    covered = pixels[mask > 0.5]
    colour = np.array(_contrasting(rng, covered if len(covered) else pixels.reshape(-1, 3)), np.float32)
    out = pixels.astype(np.float32) * (1 - mask[..., None]) + colour * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), TextPicture(
        f"{seed:05d}", tuple(words), os.path.basename(font_path), font_px, round(angle, 1), kind, (width, height))


def write_set(folder: Path, n: int, *, seed: int, with_text: bool, words_per_picture: tuple[int, int] = (1, 3),
              size: tuple[int, int] | None = None, background: str | None = None, jpeg_only: bool = False
              ) -> list[TextPicture]:
    """n pictures into `folder` (JPEG, or PNG for every third unless `jpeg_only`); with text, each
    picture's words are its own. Pictures already there are drawn again (the same ones)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(vocabulary())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vocab))
    at = 0
    out = []
    for i in range(n):
        words: tuple[str, ...] | None = None
        if with_text:
            k = int(rng.integers(words_per_picture[0], words_per_picture[1] + 1))
            picked = [vocab[j] for j in order[at : at + k]]
            at += k
            style = rng.integers(3)  # lower case, Capitalised, UPPER CASE
            words = tuple(w.upper() if style == 2 else w.capitalize() if style == 1 else w for w in picked)
        pixels, info = draw_picture(seed * 100_000 + i, words, size, background)
        suffix = "png" if i % 3 == 0 and not jpeg_only else "jpg"
        name = f"{'text' if with_text else 'plain'}-{info.name}.{suffix}"
        img = Image.fromarray(pixels, "RGB")
        img.save(folder / name, **({"quality": int(rng.integers(80, 95))} if suffix == "jpg" else {}))
        out.append(TextPicture(name, info.words, info.font, info.font_px, info.angle, info.background, info.size))
    return out
