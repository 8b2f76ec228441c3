"""Videos, decoded with PyAV (FFmpeg's libraries, bundled in its wheel): what the container says (duration,
capture time, rotation) and the frames that stand for the video's moments.

A video is read in parts of PART_S seconds. In each part only keyframes are decoded (the packets marked
as keyframes are the only ones handed to the decoder: a keyframe needs no other), each scaled by FFmpeg
to a size a little over what the image tower needs, and a frame is kept when it differs enough from the
last one kept (scene change: the mean absolute difference of 32x32 grey thumbnails), at least one every
MAX_GAP_S seconds and never two within MIN_GAP_S. A part whose keyframes are further apart than MAX_GAP_S
(a screen recording, a long GOP) is decoded whole instead, a candidate frame each CANDIDATE_S seconds.

Each part starts afresh (a seek to its start, no frame of the part before to compare with): a run that
resumes a video at part k keeps exactly the frames a run that read it from the start keeps there."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

import numpy as np
from PIL import Image

from .errors import MmsearchError

PART_S = 30.0  # seconds of video committed in one transaction: what a killed run may have to redo
MIN_GAP_S = 1.0  # never two frames kept closer than this
MAX_GAP_S = 10.0  # at least one frame kept this often (where the video's keyframes allow)
CANDIDATE_S = 1.0  # a part decoded whole: one candidate frame this often
REORDER_S = 1.0  # how far a frame's time may run ahead of the packets before it (B-frames)
SCENE_CHANGE = 12.0  # mean absolute difference (0-255) of two 32x32 grey thumbnails that is a new scene
_THUMB = 32


class VideoError(MmsearchError):
    """A video that cannot be read; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float  # 0.0 where the container does not say
    width: int  # upright, rotation applied
    height: int
    rotation: int  # degrees the picture is turned counterclockwise to stand upright (0, 90, 180, 270)
    taken_at: datetime | None  # the container's creation time (aware), where it records a plausible one
    codec: str


@dataclass(frozen=True)
class Frame:
    time_s: float  # seconds from the start of the video
    picture: Image.Image  # upright RGB, scaled down (the short side at least `short_side` where given)


def _av() -> Any:
    import av  # imported when a video is read: an index of photos never loads FFmpeg

    return av


def _reason(e: BaseException) -> str:
    av = _av()
    if isinstance(e, FileNotFoundError):
        return "vanished before it could be read"
    if isinstance(e, PermissionError):
        return "cannot read (permission denied)"
    if isinstance(e, av.FFmpegError):
        text = getattr(e, "strerror", None) or str(e)
        return f"not a video FFmpeg can read ({text})"
    if isinstance(e, OSError):
        return f"cannot read ({e.strerror or e})"
    if isinstance(e, MemoryError):
        return "not enough memory to decode"
    return f"cannot be decoded ({e})"


def _open(source: str | IO[bytes]) -> Any:
    try:
        return _av().open(source, "r")
    except Exception as e:
        raise VideoError(_reason(e)) from None


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise VideoError("holds no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        raise VideoError("its video codec is not one FFmpeg decodes")
    stream.thread_type = "AUTO"  # FFmpeg's own threads: a keyframe of a 4K video is a large decode
    return stream


@contextmanager
def _reading(source: str | IO[bytes]) -> Iterator[tuple[Any, Any]]:
    """A video's container and its first video stream, closed after; whatever FFmpeg raises inside is a
    VideoError with its reason."""
    container = _open(source)
    try:
        yield container, _video_stream(container)
    except VideoError:
        raise
    except Exception as e:  # (MemoryError too)
        raise VideoError(_reason(e)) from None
    finally:
        container.close()


def probe(source: str | IO[bytes]) -> VideoInfo:
    """What the container says of a video; raises VideoError with the reason."""
    with _reading(source) as (container, stream):
        return _info(container, stream, _first_frame(container, stream))


def _first_frame(container: Any, stream: Any) -> Any:
    """The first keyframe, decoded: the rotation FFmpeg hands with frames, and proof the video decodes."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        if packet.size and not packet.is_keyframe:
            continue
        for frame in codec.decode(packet):
            return frame
        if not packet.size:
            break
    raise VideoError("no picture in it could be decoded")


def _duration(container: Any, stream: Any) -> float:
    """The container's duration in seconds (0.0 where it does not say)."""
    if container.duration:
        return float(container.duration / 1_000_000)  # AV_TIME_BASE
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def _info(container: Any, stream: Any, first: Any) -> VideoInfo:
    duration = _duration(container, stream)
    rotation = _rotation(stream, first)
    w, h = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(round(duration, 3), w, h, rotation, _creation_time(container, stream), stream.codec_context.name)


def _rotation(stream: Any, frame: Any) -> int:
    """Counterclockwise degrees to stand the picture upright: the display matrix FFmpeg hands with each
    frame, else the `rotate` tag older muxers wrote (clockwise)."""
    degrees = 0
    if frame is not None:
        degrees = int(getattr(frame, "rotation", 0) or 0)
    if not degrees:
        tag = (stream.metadata or {}).get("rotate")
        try:
            degrees = -int(float(tag)) if tag else 0
        except ValueError:
            degrees = 0
    return int(round(degrees / 90.0)) * 90 % 360


def _creation_time(container: Any, stream: Any) -> datetime | None:
    """The capture time: Apple's creation date (which keeps the offset) where present, else the
    container's creation_time (UTC). 1904 and 1970, the zeros of QuickTime and of Unix, are no time."""
    tags = {**(stream.metadata or {}), **(container.metadata or {})}
    for key in ("com.apple.quicktime.creationdate", "creation_time"):
        text = tags.get(key)
        if not text:
            continue
        text = text.strip().replace("Z", "+00:00")
        if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # "+0200" -> "+02:00"
            text = text[:-2] + ":" + text[-2:]
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if when.year > 1971:
            return when
    return None


def frames(source: str | IO[bytes], *, start_s: float = 0.0, end_s: float | None = None,
           after_s: float | None = None, short_side: int = 448) -> Iterator[Frame]:
    """The frames kept in [start_s, end_s) of a video (see the module's docstring). `after_s`: the time
    of the last frame kept before start_s (none is kept within MIN_GAP_S of it). `short_side`: frames are
    scaled down (never up) so their short side is about this. Raises VideoError with the reason."""
    with _reading(source) as (container, stream):
        times = _keyframe_times(container, stream, start_s, end_s)
        stop = end_s if end_s is not None else max([start_s, *times, _duration(container, stream)])
        # Decoded whole where its keyframes leave a gap longer than MAX_GAP_S (from the last frame kept
        # before it), or where it has none of its own.
        edges = [after_s if after_s is not None else start_s, *times, stop]
        whole = not times or any(b - a > MAX_GAP_S for a, b in zip(edges, edges[1:]))
        # The frame kept last, before this part, decoded again: what the first of this part is compared with.
        reference = _thumb(_frame_at(container, stream, after_s)) if after_s is not None else None
        yield from _kept(_decoded(container, stream, start_s, end_s, keyframes_only=not whole),
                         start_s, after_s, reference, short_side, candidates=whole)


def _seek(container: Any, stream: Any, start_s: float) -> None:
    """To the keyframe at or before start_s."""
    if stream.time_base:
        container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)


def _packet_time(packet: Any, stream: Any) -> float | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    return None if ts is None or not stream.time_base else float(ts * stream.time_base)


def _keyframe_times(container: Any, stream: Any, start_s: float, end_s: float | None) -> list[float]:
    """The keyframes' times in the part, from the packets alone (nothing decoded)."""
    _seek(container, stream, start_s)
    out = []
    for packet in container.demux(stream):
        t = _packet_time(packet, stream)
        if packet.size == 0 or t is None:
            continue
        if end_s is not None and t >= end_s + REORDER_S:  # (packets come in decoding order)
            break
        if packet.is_keyframe and start_s <= t and (end_s is None or t < end_s):
            out.append(t)
    return out


def _decoded(container: Any, stream: Any, start_s: float, end_s: float | None,
             keyframes_only: bool) -> Iterator[tuple[float, Any]]:
    """(time, frame) of the part, in order: its keyframes, or every frame."""
    _seek(container, stream, start_s)
    codec = stream.codec_context
    codec.flush_buffers()
    fed: deque[float] = deque()  # keyframes: the times of those fed and not out yet (they come out in order)

    def timed(frames: Any) -> Iterator[tuple[float, Any]]:
        for frame in frames:
            ft = frame.time
            if ft is None or math.isnan(ft):  # (frames drained at a part's end come without their time)
                ft = fed.popleft() if fed else None
            else:
                while fed and fed[0] <= ft + 1e-6:
                    fed.popleft()
            if ft is not None:
                yield ft, frame

    for packet in container.demux(stream):
        if not packet.size:  # the end of the file: this packet drains the decoder
            yield from ((t, f) for t, f in timed(codec.decode(packet)) if t >= start_s - 1e-6)
            return
        t = _packet_time(packet, stream)
        if keyframes_only:
            if not packet.is_keyframe:
                continue
            if end_s is not None and t is not None and t >= end_s:
                break
            if t is not None:
                fed.append(t)
        past = False
        for ft, frame in timed(codec.decode(packet)):
            if end_s is not None and ft >= end_s:
                past = True  # every frame: they come out in display order, so the part is complete
            elif ft >= start_s - 1e-6:
                yield ft, frame
        if past:
            return
    if keyframes_only:
        # The frames the decoder's threads still hold.
        yield from ((t, f) for t, f in timed(codec.decode(None)) if t >= start_s - 1e-6)


def _thumb(frame: Any) -> np.ndarray | None:
    """What scene detection compares: the frame as 32x32 grey."""
    if frame is None:
        return None
    return frame.reformat(width=_THUMB, height=_THUMB, format="gray").to_ndarray().astype(np.float32)


def _kept(decoded: Iterator[tuple[float, Any]], start_s: float, after_s: float | None,
          reference: np.ndarray | None, short_side: int, candidates: bool) -> Iterator[Frame]:
    last_t = after_s
    last_thumb = reference
    next_candidate = start_s
    for t, frame in decoded:
        if candidates:  # a part decoded whole: one frame a CANDIDATE_S at most is looked at
            if t < next_candidate:
                continue
            next_candidate = t + CANDIDATE_S
        if last_t is not None and t - last_t < MIN_GAP_S:
            continue
        thumb = _thumb(frame)
        new_scene = last_thumb is None or float(np.abs(thumb - last_thumb).mean()) >= SCENE_CHANGE
        if not (new_scene or last_t is None or t - last_t >= MAX_GAP_S):
            continue
        last_t, last_thumb = t, thumb
        yield Frame(round(t, 3), _picture(frame, short_side))


def _picture(frame: Any, short_side: int) -> Image.Image:
    """The frame as an upright RGB picture, scaled by FFmpeg (cheaper than Pillow on a 4K frame) to about
    `short_side` on its short side where it is larger."""
    w, h = frame.width, frame.height
    scale = min(1.0, short_side / max(1, min(w, h)))
    tw, th = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    picture = frame.reformat(width=tw, height=th, format="rgb24", interpolation="BILINEAR").to_image()
    rotation = _rotation_of(frame)
    if rotation:
        picture = picture.rotate(rotation, expand=True)
    return picture


def _rotation_of(frame: Any) -> int:
    degrees = int(getattr(frame, "rotation", 0) or 0)
    return int(round(degrees / 90.0)) * 90 % 360


def frame_at(source: str | IO[bytes], time_s: float, fit: int) -> Image.Image:
    """The picture of a video at `time_s` (the first frame there or after), upright, its long side about
    `fit` pixels at most: a kept frame's thumbnail. Raises VideoError."""
    with _reading(source) as (container, stream):
        frame = _frame_at(container, stream, time_s)
        if frame is None:
            raise VideoError(f"has no frame at {time_s:.1f} s")
        w, h = frame.width, frame.height
        scale = min(1.0, fit / max(1, w, h))
        tw, th = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
        picture = frame.reformat(width=tw, height=th, format="rgb24").to_image()
        rotation = _rotation_of(frame) or _rotation(stream, None)
        return picture.rotate(rotation, expand=True) if rotation else picture


def _frame_at(container: Any, stream: Any, time_s: float) -> Any:
    """The first frame at `time_s` or after (decoded from the keyframe before it); None: none."""
    _seek(container, stream, time_s)
    codec = stream.codec_context
    codec.flush_buffers()
    for packet in container.demux(stream):
        for frame in codec.decode(packet):
            if frame.time is None or frame.time >= time_s - 1e-3:
                return frame
    return None


def describe() -> dict[str, Any]:
    """The decoder, for `mmsearch doctor`: PyAV's and FFmpeg's versions, and which of the codecs phones
    and cameras write it decodes."""
    try:
        av = _av()
    except ImportError as e:
        return {"installed": False, "error": str(e)}
    from av.codec import Codec

    decodes = []
    for name, shown in (("h264", "H.264"), ("hevc", "HEVC"), ("vp9", "VP9"), ("av1", "AV1"), ("mpeg4", "MPEG-4")):
        try:
            Codec(name, "r")
            decodes.append(shown)
        except Exception:
            pass
    return {"installed": True, "pyav": av.__version__, "ffmpeg": getattr(av, "ffmpeg_version_info", None),
            "decodes": decodes}


def parts(duration_s: float) -> int:
    """How many parts a video of this duration is read in (at least one: a duration not recorded reads
    as one part to the end)."""
    return max(1, int(np.ceil(duration_s / PART_S - 1e-9))) if duration_s > 0 else 1


def part_span(k: int, count: int) -> tuple[float, float | None]:
    """[start, end) of part k of `count` (the last is open: a container's duration can be short)."""
    return k * PART_S, (None if k == count - 1 else (k + 1) * PART_S)

