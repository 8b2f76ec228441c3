"""Preprocessing must be what the checkpoint's own image processor does, on the same pixels."""

import numpy as np
import pytest
from PIL import Image

from mmsearch.bundle import ImageSpec
from mmsearch.preprocess import decode_image, open_image, preprocess_image

transformers = pytest.importorskip("transformers")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    noise = rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


ONE_LEVEL = 1 / 255 / min(CLIP_STD) + 1e-4  # one 8-bit step of one pixel, normalised


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000), (300, 500), (1200, 1600), (224, 224), (1000, 90)])
def test_clip_preprocessing_matches_transformers(size):
    proc = transformers.CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD), do_convert_rgb=True,
    )
    spec = ImageSpec(size=(224, 224), resize="shortest_edge", resize_size=224, interpolation="bicubic",
                     crop="center", rescale_factor=1 / 255, mean=CLIP_MEAN, std=CLIP_STD)
    img = _photo(*size)
    ours = preprocess_image(img, spec)
    theirs = proc(images=img, return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    diff = np.abs(ours - theirs)
    # Equal but for float rounding; a landscape photo's resize skips the columns the crop drops,
    # which moves a rare value by one 8-bit level.
    assert diff.max() <= ONE_LEVEL and (diff > 1e-4).mean() <= 1e-3
    if size[0] <= size[1]:
        assert diff.max() <= 1e-4


@pytest.mark.parametrize("size", [(640, 480), (200, 300)])
def test_siglip_preprocessing_matches_transformers(size):
    proc = transformers.SiglipImageProcessor(size={"height": 224, "width": 224})
    spec = ImageSpec(size=(224, 224), resize="exact", resize_size=(224, 224), interpolation="bicubic", crop=None,
                     rescale_factor=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    img = _photo(*size, seed=1)
    ours = preprocess_image(img, spec)
    theirs = proc(images=img, return_tensors="np")["pixel_values"][0]
    assert np.abs(ours - theirs).max() <= 1e-2


def test_exif_orientation_is_applied(tmp_path):
    # Stored pixels rotated 90 degrees; the orientation tag says how to turn them upright.
    upright = _photo(400, 200)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 200 x 400 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view" undoes ROTATE_90 (counter-clockwise)
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    img, w, h, _, orientation = open_image(path)
    assert (w, h) == (400, 200) and img.size == (400, 200) and orientation == 6
    diff = np.abs(np.asarray(img, np.float32) - np.asarray(upright, np.float32)).mean()
    assert diff < 20  # JPEG noise only; a wrong rotation differs by far more


def test_draft_decode_is_close_to_full_decode(tmp_path):
    spec = ImageSpec(size=(224, 224), resize="shortest_edge", resize_size=224, interpolation="bicubic",
                     crop="center", rescale_factor=1 / 255, mean=CLIP_MEAN, std=CLIP_STD)
    path = tmp_path / "big.jpg"
    _photo(2400, 1800).save(path, quality=90)
    full = decode_image(path, spec, draft=False).pixels
    fast = decode_image(path, spec, draft=True).pixels
    cos = float((full.ravel() @ fast.ravel()) / np.linalg.norm(full) / np.linalg.norm(fast))
    assert cos > 0.99


def test_modes_become_rgb(tmp_path):
    spec = ImageSpec(size=(32, 32), resize="exact", resize_size=(32, 32), interpolation="bicubic", crop=None,
                     rescale_factor=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3)
    grey16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    grey16.save(tmp_path / "g16.png")
    out = decode_image(tmp_path / "g16.png", spec).pixels
    assert out.shape == (3, 32, 32) and out.max() > 0.5  # not clipped to white or black
    Image.new("CMYK", (50, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert decode_image(tmp_path / "cmyk.jpg", spec).pixels.shape == (3, 32, 32)


def test_normalisation_is_bit_for_bit_the_arithmetic():
    """to_tensor looks values up in a table; it must equal (v * rescale - mean) / std in float32 exactly."""
    from mmsearch.preprocess import to_tensor

    spec = ImageSpec(size=(64, 64), resize="exact", resize_size=(64, 64), interpolation="bicubic", crop=None,
                     rescale_factor=1 / 255, mean=CLIP_MEAN, std=CLIP_STD)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pixels[0, :, :] = np.arange(64)[:, None] * 4 + np.array([0, 1, 3])  # every level shows up somewhere
    pixels[1, :, 0] = 255
    expected = (pixels.astype(np.float32) * np.float32(1 / 255) - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(
        CLIP_STD, np.float32)
    out = to_tensor(Image.fromarray(pixels, "RGB"), spec)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"] and out.shape == (3, 64, 64)
    assert np.array_equal(out, expected.transpose(2, 0, 1))
