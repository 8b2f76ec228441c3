"""The videos step: each new or changed video hashed, probed (duration, capture time, rotation) and read a
part at a time (video.py: PART_S seconds, keyframes kept by scene change); each part's frames are encoded
by the image tower as photos are, and committed as one record in one transaction before the next part is
decoded. A run stopped or killed inside a video leaves its row 'indexing', its frames so far searchable;
the next run goes on from the first part not committed (a part starts afresh, so the frames kept are those
a run from the start keeps). A cancel is honoured between parts and between encoder calls."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..preprocess import draft_size, preprocess_image
from ..scanner import hash_file
from .. import video
from .context import Run, Work
from .records import ENCODE_SLICE, Batch, Record, Task


def batches(run: Run, work: Work) -> Generator[Batch, None, None]:
    """The videos of the plan, each a record per part (see the module's docstring)."""
    if not work.videos:
        return
    spec = run.image_spec
    short_side = min(draft_size(spec, 1000, 1000))  # the frames scaled by FFmpeg to what the tower needs, twice over
    for task in work.videos:
        if run.cancelled():
            return
        yield from _one(run, task, short_side)
        run.tick(task[1].path)


def _failed(r: Record, reason: str) -> Batch:
    r.status, r.error, r.resumes, r.vectors, r.times = "error", reason, False, None, None
    return [r]


def _one(run: Run, task: Task, short_side: int) -> Generator[Batch, None, None]:
    r = Record.of(task)
    old = task[2]
    r.new_file = old is None or old.status == "indexing"
    try:
        r.digest = hash_file(r.path)
    except OSError as e:
        yield _failed(r, f"cannot read ({e.strerror or e})")
        return
    if r.digest is None:
        yield _failed(r, "vanished before it could be read")
        return
    if r.unchanged_content:
        r.status = "touched"  # the same bytes as indexed: its frames stay
        yield [r]
        return
    try:
        info = video.probe(r.path)
    except video.VideoError as e:
        yield _failed(r, str(e))
        return
    r.width, r.height, r.duration_s = info.width, info.height, info.duration_s
    r.taken_at = info.taken_at.isoformat() if info.taken_at else None
    count = video.parts(info.duration_s)
    first, after = 0, None
    if old is not None and old.status == "indexing" and old.content_hash == r.digest:
        done_s, last = run.catalog.video_progress(old.id)
        if done_s is not None:  # committed in part by a run that stopped: go on from there
            first, after, r.resumes = min(count - 1, int(round(done_s / video.PART_S))), last, True
    kept = 0
    for k in range(first, count):
        start, end = video.part_span(k, count)
        try:
            pixels, times = [], []
            for frame in video.frames(r.path, start_s=start, end_s=end, after_s=after, short_side=short_side):
                pixels.append(preprocess_image(frame.picture, run.image_spec))
                times.append(frame.time_s)
                if run.cancelled():
                    return
        except video.VideoError as e:
            yield _failed(r, str(e))
            return
        if end is None and not times and not kept and not r.resumes:
            yield _failed(r, "no picture in it could be decoded")
            return
        vectors = _encoded(run, pixels)
        if vectors is None:
            return  # cancelled: this part is left to the next run
        r.vectors, r.times = vectors, times
        r.done_s = end if k < count - 1 else None
        yield [r]
        if not r.committed:
            return  # the catalog moved on: the next scan judges the file
        kept += len(times)
        after = times[-1] if times else after
        if r.done_s is not None:
            run.within_video(r.path, r.done_s, info.duration_s)
        # The next part goes on from this one's row.
        r.planned, r.resumes = (r.size, r.mtime_ns, r.digest, "indexing"), True
        r.vectors, r.times, r.committed = None, None, False
        if run.cancelled():
            return


def _encoded(run: Run, pixels: list[np.ndarray]) -> np.ndarray | None:
    """The frames' vectors, ENCODE_SLICE at a time; None where the run is cancelled meanwhile."""
    if not pixels:
        return np.zeros((0, 0), np.float32)
    out = []
    for i in range(0, len(pixels), ENCODE_SLICE):
        if run.cancelled():
            return None
        run.observe("encode")
        out.append(run.encoders.image.encode(np.stack(pixels[i : i + ENCODE_SLICE])))
    return np.concatenate(out)
