"""Words in pictures: text detection, then recognition on the boxes found, with the PP-OCR models that
the optional `rapidocr` package ships in its wheel (`pip install 'mmsearch[ocr]'`), run on the
onnxruntime mmsearch already has, through `runtime.create_session` like the towers (CUDA where it
really works). Nothing is downloaded: the model files are read from the installed wheel.

From RapidOCR this uses the model files, the detector's post-processing (boxes from the probability
map) and its crop of a turned box; the rest is here: the glance that lets most pictures without words
stop at one small detector call, decoding at reduced scale, batching, and no code path that could
reach RapidOCR's model downloader.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MmsearchError

INSTALL_HINT = "pip install 'mmsearch[ocr]'"

# First a glance: the detector on the picture at this long side (5-13 ms on 2 cores, a tenth of a
# full look). Where it finds no box, even with looser thresholds than the full look's, the picture has
# no words and that is all it costs. Measured on the quality set (benchmarks/ocr.py): the glance passes
# 97% of the pictures with words (98% when any probability over 0.5 passed) and 25% of those without
# (36%); the detector lights up on texture at every scale, and only recognition tells it from words.
# The glance sees words whose letters stay ~6 px high at its scale (3% of the short side and up in the
# set); print on a page shrinks below that and is not seen (2 of 53 manual pages at 96 dpi read
# nothing behind it): so a picture with a large area of one flat colour, as screenshots, scans and
# pages have and camera photos do not, is read without the glance.
GATE_SIDE = 320
# GLANCE_CHECK: where the glance sees boxes, they are cut from the picture at reading size and only
# recognised (~30 ms, against ~160 ms for detection at DETECT_SIDE and recognition): a picture goes on
# to the full read when one of them reads as words (MIN_SCORE, two letters or digits). Measured on the
# quality set: of the 55 pictures without words that passed the glance (not flat), 54 stop here; of the
# 232 with words that passed it, 230 go on.
# Flat: this share of the glance's pixels in one colour (5 bits a channel). Measured: pages 0.75-0.98,
# drawn photos, gradients and noise 0.01-0.25 (one 0.80), 4000x3000 photos 0.02-0.04.
FLAT_SHARE = 0.4
# The check recognises only boxes that can be a line of words: none whose short side is more than this
# share of the picture's short side (the quality set's largest letters are 14% of it, their box about a
# fifth). Texture lights the detector up in blobs as large as the picture; recognised, they read as
# nothing and cost a recogniser call each.
LINE_SHARE = 0.4
CHECK_BOXES = 8  # and at most this many (the largest): one recogniser call
# The detector sees the picture with its long side at most this. Measured on 12 px text in a
# 1920x1080 screenshot: 100% of the words read at 960, 82% at 736; at 1920 it missed 18 px words
# altogether (letters too large for it). 130-170 ms a picture on 2 cores.
DETECT_SIDE = 960
# Recognition crops come from the picture decoded with its long side at most this: small words keep
# their strokes when the detector's boxes are scaled up to it.
READ_SIDE = 2000
# The glance and its check look at the picture as the image tower had it decoded where its long side
# holds this many pixels: CLIP's 224 px decodes a 4000x3000 JPEG at 1000x750, 1600x1200 at 800x600, so
# most photos are looked at without a second decode. A smaller decode (a model of smaller input) is
# done again at LOOK_SIDE. Measured on the quality set (benchmarks/ocr.py): the glance and its check
# pass 295 of the 300 pictures with words this way, 294 when it looked at a decode of its own at 320 px
# and checked at READ_SIDE; 292 at 800 px resampled bilinearly.
LOOK_MIN = 800
LOOK_SIDE = 960
MIN_SIDE = 16  # pictures smaller than this on either side hold no readable words
REC_HEIGHT = 48  # the recogniser's input height (its model's)
REC_BATCH = 8  # crops per recogniser call
# A crop keeps its shape up to this many times as wide as high (a line across a page is 50); past it,
# it is squeezed to this width, which bounds the recogniser's input (48 x 12,000 at most).
MAX_REC_RATIO = 250.0
# A line is kept when the recogniser is at least this sure of it (the mean of its characters'
# probabilities) and it holds two letters or digits: texture reads as one character ('O' 0.82,
# '中' 0.82, 'J' 0.98) or two unsure ones ('60' 0.61); rendered words read at 0.96 and more.
MIN_SCORE = 0.7
MAX_TEXT_CHARS = 20_000  # per picture or page: a screenshot of a long page stays one passage


class OcrError(MmsearchError):
    """OCR cannot run here (not installed, or its model files are missing)."""


@lru_cache(maxsize=1)
def installed() -> bool:
    """Whether the optional OCR engine is installed (looked up, not imported)."""
    return importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("cv2") is not None


def engine_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rapidocr")
    except PackageNotFoundError:
        return None


def model_files() -> tuple[Path, Path]:
    """The detection and recognition models inside the installed rapidocr wheel."""
    if not installed():
        raise OcrError(f"OCR is not installed; install it with: {INSTALL_HINT}")
    spec = importlib.util.find_spec("rapidocr")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent / "models"
    found = {}
    for task in ("det", "rec"):
        matches = sorted(folder.glob(f"*_{task}_*.onnx")) if folder.is_dir() else []
        if len(matches) != 1:
            raise OcrError(f"{folder}: expected one {task} model in the rapidocr package, found "
                           f"{len(matches)}; reinstall it: pip install --force-reinstall 'mmsearch[ocr]'")
        found[task] = matches[0]
    return found["det"], found["rec"]


@dataclass(frozen=True)
class Line:
    text: str
    score: float  # the recogniser's mean character probability
    box: np.ndarray  # 4 x 2 corners in the picture's pixels: top-left, top-right, bottom-right, bottom-left


def joined(lines: list[Line]) -> str:
    """Lines in reading order as one passage: boxes on one line side by side, lines one per row."""
    rows: list[list[Line]] = []
    for line in lines:
        cy, h = float(line.box[:, 1].mean()), _height(line.box)
        if rows and abs(float(rows[-1][-1].box[:, 1].mean()) - cy) < 0.5 * max(h, _height(rows[-1][-1].box)):
            rows[-1].append(line)
        else:
            rows.append([line])
    text = "\n".join(" ".join(ln.text for ln in sorted(row, key=lambda ln: float(ln.box[:, 0].min()))) for row in rows)
    return text[:MAX_TEXT_CHARS]


def _short_side(box: np.ndarray) -> float:
    return float(min(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])))


def _height(box: np.ndarray) -> float:
    return float(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))


class TextReader:
    """The detector and recogniser sessions, loaded once; `read` is safe to call from one thread at a
    time (the index run's OCR phase), sessions run their own threads."""

    def __init__(self, device: str = "auto", *, threads: int | None = None):
        if not installed():
            raise OcrError(f"OCR is not installed; install it with: {INSTALL_HINT}")
        from .runtime import create_session

        det_path, rec_path = model_files()
        # No spinning: decode threads share the cores with these sessions (as for the image tower).
        self._det, self.device = create_session(det_path, device, threads=threads, spinning=False)
        self._rec, _ = create_session(rec_path, self.device, threads=threads, spinning=False)
        self._det_input = self._det.get_inputs()[0].name
        self._rec_input = self._rec.get_inputs()[0].name
        meta = self._rec.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise OcrError(f"{rec_path}: the recognition model carries no character list")
        # CTC: index 0 is the blank, then the model's characters, then a space.
        self._chars = ["", *meta["character"].splitlines(), " "]
        from rapidocr.ch_ppocr_det.utils import DBPostProcess  # the same settings as RapidOCR's defaults

        self._post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                                   use_dilation=True, score_mode="fast")
        self._glance_post = DBPostProcess(thresh=0.2, box_thresh=0.3, max_candidates=100, unclip_ratio=1.6,
                                          use_dilation=True, score_mode="fast")
        self._glance_post.min_size = 2  # boxes 2 px across at the glance's scale
        self._lock = threading.Lock()

    # -- the picture -----------------------------------------------------------------------------

    def glance(self, small: np.ndarray) -> np.ndarray | None:
        """The picture shrunk to GATE_SIDE, looked at: the boxes where it may hold words (N x 4 x 2, at
        `small`'s scale; none: it has no words), or None for a flat picture (a screen or a page), which
        is read whole. Safe from any thread."""
        if min(small.shape[:2]) < MIN_SIDE:
            return np.zeros((0, 4, 2), np.float32)
        if looks_flat(small):
            return None
        boxes, _ = self._glance_post(self._probabilities(np.ascontiguousarray(small[..., ::-1]), GATE_SIDE),
                                     small.shape[:2])
        return np.asarray(boxes, np.float32).reshape(-1, 4, 2)

    def glance_reads_words(self, rgb: np.ndarray, small: np.ndarray, boxes: np.ndarray) -> bool:
        """Whether any of the glance's boxes, cut from the picture as decoded (`rgb`), reads as words:
        texture lights the detector up but reads as nothing (see GLANCE_CHECK). Safe from any thread."""
        lines = [box for box in boxes if _short_side(box) <= LINE_SHARE * min(small.shape[:2])]
        if not lines:
            return False
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        scale = np.float32(rgb.shape[1] / small.shape[1])
        # Words are mostly the large boxes: the largest are recognised first, and the first that reads as
        # words ends the look.
        largest_first = sorted(lines, key=lambda box: -_height(box) * float(np.linalg.norm(box[1] - box[0])))
        for lo in range(0, min(len(largest_first), CHECK_BOXES), REC_BATCH):
            crops = [_crop(bgr, box * scale) for box in largest_first[lo : lo + REC_BATCH]]
            if any(_worth_keeping(t, p) for t, p in self.recognise(crops)):
                return True
        return False

    def worth_reading(self, rgb: np.ndarray) -> bool:
        """False when the picture surely has no words: the glance saw no box, or none of its boxes reads
        as words. A flat picture is always worth reading."""
        small = shrunk(rgb, GATE_SIDE)
        boxes = self.glance(small)
        return boxes is None or self.glance_reads_words(rgb, small, boxes)

    def read_pixels(self, rgb: np.ndarray, *, cancelled: Callable[[], bool] | None = None) -> list[Line]:
        """`worth_reading`, then, where it is, `read`."""
        if not self.worth_reading(rgb):
            return []
        return self.read(rgb, cancelled=cancelled)

    def read(self, rgb: np.ndarray, *, cancelled: Callable[[], bool] | None = None) -> list[Line]:
        """The lines of text in an RGB picture (uint8 H x W x 3), in reading order; [] when it has none
        (then only the detector ran). Raises Cancelled when `cancelled()` turns true between batches."""
        h, w = rgb.shape[:2]
        if min(h, w) < MIN_SIDE:
            return []
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the PP-OCR models were trained on OpenCV's BGR
        with self._lock:
            boxes = self.detect(bgr)
            if not len(boxes):
                return []
            crops = [_crop(bgr, box) for box in boxes]
            texts = self.recognise(crops, cancelled=cancelled)
        return [Line(t, s, b) for (t, s), b in zip(texts, boxes) if _worth_keeping(t, s)]

    def _probabilities(self, bgr: np.ndarray, side: int) -> np.ndarray:
        """The detector's text probability map (1 x 1 x H x W) of the picture at `side` pixels at most."""
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, side / max(h, w))
        dh, dw = max(32, int(round(h * scale / 32)) * 32), max(32, int(round(w * scale / 32)) * 32)
        small = cv2.resize(bgr, (dw, dh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = (small.astype(np.float32) * np.float32(2 / 255) - np.float32(1)).transpose(2, 0, 1)[None]
        return self._det.run(None, {self._det_input: np.ascontiguousarray(x)})[0]

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """Text boxes (N x 4 x 2, float32, the picture's pixels) in reading order."""
        h, w = bgr.shape[:2]
        boxes, _ = self._post(self._probabilities(bgr, DETECT_SIDE), (h, w))
        if not len(boxes):
            return np.zeros((0, 4, 2), np.float32)
        boxes = np.asarray(boxes, np.float32)
        # Top to bottom, then left to right (ties within half a line's height).
        order = sorted(range(len(boxes)), key=lambda i: (float(boxes[i][:, 1].min()), float(boxes[i][:, 0].min())))
        return boxes[order]

    def recognise(self, crops: list[np.ndarray], *, cancelled: Callable[[], bool] | None = None
                  ) -> list[tuple[str, float]]:
        """(text, mean character probability) per crop (BGR, upright), batched by width."""
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(1, crops[i].shape[0]))
        for lo in range(0, len(order), REC_BATCH):
            if cancelled is not None and cancelled():
                raise Cancelled
            part = order[lo : lo + REC_BATCH]
            ratio = max(crops[i].shape[1] / max(1, crops[i].shape[0]) for i in part)
            width = int(math.ceil(REC_HEIGHT * min(max(ratio, 320 / REC_HEIGHT), MAX_REC_RATIO)))
            batch = np.zeros((len(part), 3, REC_HEIGHT, width), np.float32)
            for j, i in enumerate(part):
                batch[j] = _rec_input(crops[i], width)
            probs = self._rec.run(None, {self._rec_input: batch})[0]
            for j, i in enumerate(part):
                out[i] = self._decode(probs[j])
        return out

    def _decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best character per step, repeats merged, blanks dropped."""
        idx = probs.argmax(axis=1)
        best = probs.max(axis=1)
        keep = idx != 0
        keep[1:] &= idx[1:] != idx[:-1]
        chars = [self._chars[i] if i < len(self._chars) else "" for i in idx[keep]]
        if not chars:
            return "", 0.0
        return "".join(chars).strip(), float(best[keep].mean())


def _worth_keeping(text: str, score: float) -> bool:
    if score < MIN_SCORE:
        return False
    return sum(c.isalnum() for c in text) >= 2


class Cancelled(Exception):
    """A read stopped part-way by a cancel: nothing of the picture is kept."""


def decode(data: bytes, long_side: int) -> np.ndarray:
    """An image file's bytes as upright RGB pixels (uint8 H x W x 3) with the long side at most
    `long_side` (JPEGs decode at a reduced scale). Raises ImageDecodeError with the reason."""
    import io

    from .preprocess import open_image

    return _fitted(open_image(io.BytesIO(data), fit=long_side)[0], long_side)


def shrunk_for_reading(img: Any) -> np.ndarray:
    """A decoded picture (upright RGB PIL image) as `decode(data, READ_SIDE)` gives it."""
    return _fitted(img, READ_SIDE)


def look(img: Any, size: tuple[int, int], data: bytes) -> np.ndarray:
    """What the glance and its check look at (uint8 H x W x 3): the picture as the image tower had it
    decoded (`img`, upright RGB, at a draft scale the tower chose; `size`: the upright original's) where
    it holds LOOK_MIN pixels on its long side (or the whole picture), shrunk to READ_SIDE where larger;
    else the picture decoded again from the file's bytes at LOOK_SIDE. The same bytes and model give the
    same look, whichever step of a run takes it."""
    if max(img.size) >= min(LOOK_MIN, max(size)):
        return shrunk(np.asarray(img), READ_SIDE)
    import io

    from .preprocess import open_image

    return shrunk(np.asarray(open_image(io.BytesIO(data), fit=LOOK_SIDE)[0]), LOOK_SIDE)


def _fitted(img: Any, long_side: int) -> np.ndarray:
    from PIL import Image

    from .preprocess import ImageDecodeError

    try:
        if max(img.size) > long_side:
            scale = long_side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(img)
    except (OSError, ValueError) as e:
        raise ImageDecodeError(f"cannot decode the image ({e})") from None


def looks_flat(rgb: np.ndarray) -> bool:
    """Whether FLAT_SHARE of the pixels have one colour (to 5 bits a channel): a screen or a page."""
    q = ((rgb[..., 0].astype(np.int32) >> 3) << 10) | ((rgb[..., 1].astype(np.int32) >> 3) << 5) | (rgb[..., 2] >> 3)
    return int(np.bincount(q.ravel()).max()) >= FLAT_SHARE * q.size


def shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    """The picture with its long side at most `side` (area-averaged, as a glance wants)."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    scale = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _crop(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's pixels, straightened (a rotated box becomes an upright strip)."""
    from rapidocr.utils.process_img import get_rotate_crop_image

    return get_rotate_crop_image(bgr, box.astype(np.float32).copy())


def _rec_input(crop: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h, w = crop.shape[:2]
    new_w = min(width, max(1, int(math.ceil(REC_HEIGHT * w / max(1, h)))))
    resized = cv2.resize(crop, (new_w, REC_HEIGHT)).astype(np.float32)
    out = np.zeros((3, REC_HEIGHT, width), np.float32)
    out[:, :, :new_w] = (resized * np.float32(2 / 255) - np.float32(1)).transpose(2, 0, 1)
    return out


def describe() -> dict[str, Any]:
    """For `mmsearch doctor`: whether OCR is installed, its engine and model files."""
    if not installed():
        return {"installed": False, "install": INSTALL_HINT}
    try:
        det, rec = model_files()
    except OcrError as e:
        return {"installed": True, "engine": f"rapidocr {engine_version()}", "error": str(e)}
    return {"installed": True, "engine": f"rapidocr {engine_version()}", "models": [det.name, rec.name],
            "models_bytes": det.stat().st_size + rec.stat().st_size}
