"""Image decoding and preprocessing, exactly as a bundle's manifest says (see bundle.ImageSpec).

The steps mirror transformers' CLIPImageProcessor / SiglipImageProcessor on a PIL image: convert to
RGB, resize with PIL (shortest edge or exact size), center crop, rescale to [0, 1], normalise with
mean/std, channels first. tests/test_preprocess.py holds them to transformers' own output.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from .bundle import ImageSpec
from .media import heif_supported, special_file_kind
from .errors import MmsearchError

# Images declaring more pixels are refused before decoding (decompression bombs): one limit for the CLI,
# the web app and an app that embeds the library, which leaves Pillow's own process-wide limit alone.
MAX_PIXELS = 250_000_000
# A picture to search by is decoded for a 224-pixel tower: at most this many pixels are decoded for it
# (a JPEG counts at the reduced scale its decoder draws it at, so any photo fits; a PNG or WebP is decoded
# whole, ~3 bytes a pixel, so a bigger one is refused rather than costing a server ~1 GB for a query).
QUERY_MAX_PIXELS = 40_000_000

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

_EXIF_ORIENTATION = 0x0112
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_DATETIME = 0x0132
_EXIF_OFFSET = 0x9010  # "+02:00": the zone of DateTime (EXIF 2.31)
_EXIF_OFFSET_ORIGINAL = 0x9011  # the zone of DateTimeOriginal
_EXIF_IFD = 0x8769


class ImageDecodeError(MmsearchError):
    """An image that cannot be read; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # float32 [3, H, W], ready for the image tower
    width: int  # of the upright original, before any draft reduction
    height: int
    taken_at: datetime | None  # EXIF DateTimeOriginal where present: aware when the photo records its offset
    orientation: int | None  # the EXIF orientation tag, where present
    picture: Image.Image | None = None  # with keep_picture: the upright RGB picture as decoded (draft scale)


def draft_size(spec: ImageSpec, width: int, height: int) -> tuple[int, int]:
    """The smallest size a JPEG may be decoded at (libjpeg scales by 1/2, 1/4, 1/8) and still give
    the resize step at least `factor` times the pixels it needs, so quality holds (measured in
    benchmarks/draft.py)."""
    target = max(spec.size) if spec.resize == "exact" else _short_side_target(spec)
    factor = 2
    if spec.resize == "exact":
        return target * factor, target * factor
    # shortest_edge: keep the short side >= factor * target
    scale = factor * target / min(width, height)
    return max(1, int(width * scale)), max(1, int(height * scale))


def _short_side_target(spec: ImageSpec) -> int:
    rs = spec.resize_size
    return rs if isinstance(rs, int) else min(rs)


def open_image(path: Path | str | IO[bytes], spec: ImageSpec | None = None, *, draft: bool = True,
               fit: int | None = None, decode_limit: int | None = None
               ) -> tuple[Image.Image, int, int, datetime | None, int | None]:
    """Open an image as an upright RGB PIL image; JPEGs decode at a reduced scale when `spec` allows,
    or, with `fit` (for display), at the smallest scale whose longest side still reaches `fit` pixels.
    An image declaring more than MAX_PIXELS is refused before it is decoded, and one whose decode (at that
    reduced scale) would be more than `decode_limit` pixels too."""
    _register_heif()
    size = (0, 0)
    try:
        with _source(path) as (fp, name):
            img = _identify(fp, name)
            width, height = size = img.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(too_many_pixels(width, height))
            if draft and img.format == "JPEG":
                if fit is not None:
                    scale = min(1.0, fit / max(width, height))
                    img.draft("RGB", (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
                elif spec is not None:
                    img.draft("RGB", draft_size(spec, width, height))
            # Before the EXIF: a PNG's getexif() decodes the whole image to reach a chunk after the pixels.
            if decode_limit is not None and img.size[0] * img.size[1] > decode_limit:
                raise ImageDecodeError(f"is {width}x{height} pixels, more than a picture to search by may be "
                                       f"({decode_limit / 1e6:g} million decoded); scale it down first")
            exif = img.getexif()
            orientation = exif.get(_EXIF_ORIENTATION)
            taken_at = _exif_datetime(exif)
            img.seek(0)  # first frame of an animation
            img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError:  # a frame inside (a GIF's, an icon's) past Pillow's own limit
        raise ImageDecodeError(too_many_pixels(*size)) from None
    except IsADirectoryError:
        raise ImageDecodeError("is a folder, not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as e:
        raise ImageDecodeError(_decode_reason(e)) from None
    if orientation in (5, 6, 7, 8):  # rotated 90 degrees: the upright picture is height x width
        width, height = height, width
    img = ImageOps.exif_transpose(img) if orientation and orientation != 1 else img
    return _to_rgb(img), width, height, taken_at, orientation if isinstance(orientation, int) else None


def too_many_pixels(width: int, height: int) -> str:
    """The one message for an image past the limit, wherever it is met."""
    return f"declares {width}x{height} pixels, more than mmsearch decodes ({MAX_PIXELS:,})"


@contextmanager
def _source(path: Path | str | IO[bytes]) -> Iterator[tuple[IO[bytes], str]]:
    """A path opened for reading (and closed after), or a file object used as it is. Only a regular
    file is read: a FIFO, a socket or a device would block the read or never end."""
    if not isinstance(path, (str, os.PathLike)):
        yield path, ""
        return
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO's open does not wait
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", name)
        if not stat.S_ISREG(mode):
            raise ImageDecodeError(f"is {special_file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        fp = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fp:
        yield fp, name


def _identify(fp: IO[bytes], name: str) -> Image.Image:
    """What Image.open does, less its check of the size against Image.MAX_IMAGE_PIXELS: that setting is
    process-wide and belongs to the application (an app embedding mmsearch may set it as it likes), so
    mmsearch applies its own limit, MAX_PIXELS, to the size the header declares (open_image): the CLI,
    the web app and an embedding app refuse the same images with the same message."""
    prefix = fp.read(16)
    for load in (Image.preinit, Image.init):  # the common formats first, then every plugin
        load()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):
                continue
            fp.seek(0)
            try:
                return factory(fp, name)
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise Image.UnidentifiedImageError(f"cannot identify image file {name!r}")


@lru_cache(maxsize=1)
def _register_heif() -> None:
    """HEIC/HEIF photos, when the optional pillow-heif is installed (`mmsearch doctor` says): its opener
    joins Pillow's on first use, not when mmsearch is imported."""
    if heif_supported():
        from pillow_heif import register_heif_opener

        register_heif_opener()


def _decode_reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, Image.UnidentifiedImageError) or "cannot identify image file" in text:
        return "not an image Pillow can read (unknown or damaged format)"
    if "truncated" in text.lower():
        return "the image file is truncated"
    return f"cannot decode the image ({text})"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: Pillow's convert("RGB") clips at 255, so scale to 8 bits first.
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _exif_datetime(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal (else DateTime), with its offset where the photo records one; naive otherwise
    (a camera's wall clock: the catalog reads it as local time)."""
    try:
        ifd = exif.get_ifd(_EXIF_IFD)
    except Exception:
        ifd = {}
    raw, offset = ifd.get(_EXIF_DATETIME_ORIGINAL), ifd.get(_EXIF_OFFSET_ORIGINAL)
    if not raw:
        raw, offset = exif.get(_EXIF_DATETIME), ifd.get(_EXIF_OFFSET)
    if not raw:
        return None
    try:
        taken = datetime.strptime(str(raw).strip("\x00 ").strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if offset:
        try:
            return datetime.strptime(f"{taken:%Y-%m-%d %H:%M:%S}{str(offset).strip(chr(0) + ' ')}", "%Y-%m-%d %H:%M:%S%z")
        except ValueError:
            pass  # a malformed offset: the wall-clock time is still right
    return taken


def resize_and_crop(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """PIL resize then center crop, as transformers' image processors do it."""
    resample = _RESAMPLE.get(spec.interpolation, Image.Resampling.BICUBIC)
    w, h = img.size
    if spec.resize == "shortest_edge":
        target = _short_side_target(spec)
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = target, int(target * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        rs = spec.resize_size
        new_h, new_w = (rs, rs) if isinstance(rs, int) else rs
    if spec.crop == "center":
        crop_h, crop_w = spec.size
        top = (new_h - crop_h) // 2
        left = (new_w - crop_w) // 2
        if top == 0 and new_h == crop_h and crop_w <= new_w <= w and new_h <= h:
            # A landscape downscale: resize only the columns the crop keeps. Pillow's box resize
            # reads the same source pixels (its filter still reaches past the box's edges) and skips
            # the rest: a quarter less work for a 4:3 photo. Versus resize-then-crop, at most 6 values
            # in 10,000 move by one 8-bit level (205 sizes checked). Portrait crops keep the plain
            # path: given a box that drops rows, Pillow 13 runs its vertical pass first, and the other
            # rounding order moved a quarter of the values by up to 4 levels on some sizes.
            sx, sy = w / new_w, h / new_h
            box = (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)
            return img.resize((crop_w, crop_h), resample=resample, box=box)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample=resample)
        return img.crop((left, top, left + crop_w, top + crop_h))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample=resample)
    return img


def to_tensor(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW, rescaled and normalised: (v * rescale - mean) / std, looked up per
    channel from a 256-entry table of exactly those float32 values (a fifth of the time of the
    arithmetic on every pixel, bit for bit the same)."""
    planes = np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))  # CHW uint8
    table = _normalise_table(spec.rescale_factor, spec.mean, spec.std)
    return np.stack([table[c][planes[c]] for c in range(3)])


@lru_cache(maxsize=8)
def _normalise_table(rescale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    levels = np.arange(256, dtype=np.float32)[None, :] * np.float32(rescale)  # [1, 256]
    return (levels - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]  # [3, 256]


def preprocess_image(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    return to_tensor(resize_and_crop(_to_rgb(img), spec), spec)


def decode_image(path: Path | str | IO[bytes], spec: ImageSpec, *, draft: bool = True,
                 decode_limit: int | None = None, keep_picture: bool = False) -> DecodedImage:
    """Read one file into the tower's input; raises ImageDecodeError with the reason. `keep_picture`:
    keep the picture as decoded too (for another look at it without decoding it again: OCR's glance)."""
    img, width, height, taken_at, orientation = open_image(path, spec, draft=draft, decode_limit=decode_limit)
    try:
        pixels = preprocess_image(img, spec)
    except (OSError, ValueError) as e:
        raise ImageDecodeError(_decode_reason(e)) from None
    return DecodedImage(pixels, width, height, taken_at, orientation, img if keep_picture else None)
