"""Video decoding with PyAV (`av`, whose wheels ship FFmpeg): a video's facts, its frames sampled
at a set rate, and one frame at a given time.

    info = probe("clip.mp4")                       # VideoInfo: size, duration, frame rate, codec
    for frame in sampled_frames("clip.mp4", fps=2.0, max_side=2048):
        frame.index, frame.time, frame.pixels      # decoded frame number, seconds, (H, W, 3) RGB
    still = frame_at("clip.mp4", 3.5)              # images.DecodedImage of the frame shown at 3.5 s

Times are seconds from the video stream's first frame (its start_time), so they match what a
player shows. Every failure (an empty, truncated or damaged file, one without a video stream,
a codec FFmpeg cannot decode) is a VideoError with a one-line reason.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError, first_line
from facesearch.pipeline.images import DecodedImage

#: Sampling at most 1/SKIP_RATIO of a video's frame rate, its non-reference frames (B-frames no
#: other frame refers to) are not decoded at all: half the decoding time of the shared H.264
#: clips (crowd_walking.mp4: 0.72 s instead of 1.75 s), samples at most a frame or two off.
SKIP_RATIO = 4
#: A video whose decoded frames end more than this many seconds before the duration its
#: container claims is reported as truncated (a file cut short after its index).
TRUNCATED_SLACK = 1.0


class VideoError(FaceSearchError):
    """A file that cannot be read as a video; the message is one line naming the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream is: size as displayed, duration, frame rate and codec."""

    width: int          # pixels
    height: int
    duration: float     # seconds (the stream's, else the container's; 0.0 when neither says)
    fps: float          # average frames per second (0.0 when unknown)
    codec: str          # FFmpeg's decoder name, e.g. "h264"


@dataclass(frozen=True)
class VideoFrame:
    """One decoded (sampled) frame."""

    index: int            # number of the frame in decoding order, from 0
    time: float           # seconds from the stream's first frame
    pixels: np.ndarray    # (H, W, 3) uint8 RGB, reduced to at most max_side
    scale: float          # original pixels per decoded pixel (>= 1)


@contextmanager
def _opened(path: str | os.PathLike):
    """(container, its first video stream), with every FFmpeg failure turned into VideoError."""
    import av  # here, not at the top: PyAV costs ~0.3 s of every cold photo query that never decodes a video

    path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise VideoError(f"{path}: {error.strerror or 'cannot be read'}") from None
    if size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as error:
        raise VideoError(f"{path}: truncated or damaged video, cannot be opened "
                         f"({_reason(error)})") from None
    try:
        if not container.streams.video:
            kinds = "audio only" if container.streams.audio else "no video stream"
            raise VideoError(f"{path}: no video stream ({kinds})")
        stream = container.streams.video[0]
        if stream.codec_context is None or stream.codec_context.name in (None, "", "none"):
            raise VideoError(f"{path}: unsupported video codec (FFmpeg has no decoder for it)")
        stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads
        yield container, stream
    except av.FFmpegError as error:
        raise VideoError(f"{path}: damaged or unsupported video ({_reason(error)})") from None
    finally:
        container.close()


def _reason(error: Exception) -> str:
    """FFmpeg's message without PyAV's errno and file name decorations."""
    text = getattr(error, "strerror", None) or first_line(error)
    return str(text).rstrip(".")


def _info(container, stream) -> VideoInfo:
    import av

    duration = (float(stream.duration * stream.time_base) if stream.duration
                else max(0.0, container.duration / av.time_base - _start(stream)) if container.duration
                else 0.0)
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(width=stream.codec_context.width, height=stream.codec_context.height,
                     duration=float(duration), fps=float(rate) if rate else 0.0,
                     codec=stream.codec_context.name)


def probe(path: str | os.PathLike) -> VideoInfo:
    """The facts of a video's first video stream. Raises VideoError."""
    with _opened(path) as (container, stream):
        return _info(container, stream)


def _start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _rgb(frame, max_side: int) -> tuple[np.ndarray, float]:
    """A frame as (H, W, 3) uint8 RGB reduced (by FFmpeg's scaler) to at most max_side, and the
    scale back to its own pixels."""
    width, height = frame.width, frame.height
    scale = max(1.0, max(width, height) / max_side)
    if scale > 1.0:
        frame = frame.reformat(width=max(1, round(width / scale)), height=max(1, round(height / scale)),
                               format="rgb24")
    pixels = frame.to_ndarray(format="rgb24")
    return pixels, width / pixels.shape[1]


def sampled_frames(path: str | os.PathLike, fps: float, max_side: int) -> Iterator[VideoFrame]:
    """The frames of a video `fps` times a second (the first frame, then the first frame at or
    after each 1/fps step; every frame if the video has fewer; non-reference frames are skipped
    when `fps` is at most 1/SKIP_RATIO of the video's), decoded at most `max_side` on their
    longer side. Raises VideoError (one line) when the file cannot be decoded, when
    decoding fails part way, or when the frames end well before the container's duration
    (TRUNCATED_SLACK): a truncated file is reported, not half indexed."""
    import av

    if fps <= 0:
        raise ValueError(f"fps must be positive (got {fps})")
    step = 1.0 / fps
    with _opened(path) as (container, stream):
        info = _info(container, stream)
        if info.fps and fps * SKIP_RATIO <= info.fps:
            stream.codec_context.skip_frame = "NONREF"
        start = _start(stream)
        next_time, last = 0.0, None
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.time is None:
                    continue
                time = max(0.0, frame.time - start)
                last = time
                if time + 1e-6 < next_time:
                    continue
                pixels, scale = _rgb(frame, max_side)
                yield VideoFrame(index=index, time=round(time, 3), pixels=pixels, scale=scale)
                next_time = max(next_time + step, time + step / 2)
        except av.FFmpegError as error:
            where = f" at {last:.1f} s" if last is not None else ""
            raise VideoError(f"{path}: damaged or truncated video, decoding failed{where} "
                             f"({_reason(error)})") from None
        if last is None:
            raise VideoError(f"{path}: no frame could be decoded (truncated or damaged video)")
        frame_time = 1.0 / info.fps if info.fps else 0.0
        if info.duration and last + frame_time < info.duration - TRUNCATED_SLACK:
            raise VideoError(f"{path}: truncated video: frames end at {last:.1f} s of "
                             f"{info.duration:.1f} s")


def frame_at(path: str | os.PathLike, time: float, max_side: int = 2048) -> DecodedImage:
    """The frame shown at `time` seconds (from the stream's first frame): the last frame starting
    at or before it, decoded at most `max_side`. Raises VideoError."""
    with _opened(path) as (container, stream):
        start = _start(stream)
        target = start + max(0.0, float(time))
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        shown = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if shown is not None and frame.time > target + 1e-6:
                break
            shown = frame
        if shown is None:
            raise VideoError(f"{path}: no frame at {time:.2f} s")
        pixels, scale = _rgb(shown, max_side)
        return DecodedImage(pixels=pixels, scale=scale, original_size=(shown.width, shown.height))
