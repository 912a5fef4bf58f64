"""Video indexing speed: seconds of video indexed per second of wall time (above 1: faster than
real time), beside decoding alone, on the shared clips (prints its figures).

    python bench/video_throughput.py [--fps 2] [--repeats 1]

Clips: crowd_walking.mp4 (1920x1080, 25 fps, 4.2 s, a crowd of 8-12 faces), the same clip
resized to 1280x720 here (H.264 with PyAV's libx264, into a temporary folder), and
short_hamilton_clip.mp4 (640x360, 9.2 s). For each: `decode` is pipeline.video.sampled_frames
alone (every frame decoded, the sampled ones converted to RGB: the floor any indexing pays), and
`index` is `FaceSearch.index` of the clip into a fresh index (decoding, detection, identity
vectors for tracking, tracking, the master vectors of each track's best frames, storage), at
`--fps` sampled frames a second (Settings.video_fps, default 2). Models and libraries are loaded
(a short clip indexed) before timing.
The load average is printed before and after, since the 2 cores may be shared.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from facesearch import FaceSearch
from facesearch.pipeline.video import probe, sampled_frames
from facesearch.settings import Settings
from facesearch.training.data import data_dir


def resized(source: Path, target: Path, width: int, height: int) -> Path:
    """`source` re-encoded at width x height (H.264, CRF 20, same frame rate)."""
    with av.open(str(source)) as given, av.open(str(target), "w") as out:
        stream_in = given.streams.video[0]
        rate = stream_in.average_rate or Fraction(25)
        stream = out.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        for number, frame in enumerate(given.decode(stream_in)):
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = number, 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, default=Settings().video_fps)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    clips = data_dir() / "video"
    settings = Settings(video_fps=args.fps)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crowd = clips / "crowd_walking.mp4"
        videos = [("1080p", crowd), ("720p", resized(crowd, tmp / "crowd_720p.mp4", 1280, 720)),
                  ("360p", clips / "short_hamilton_clip.mp4")]
        warm = FaceSearch(tmp / "warm", settings=settings)  # models and libraries loaded before timing
        (tmp / "warm-up").mkdir()
        shutil.copy(clips / "talking_d0.mp4", tmp / "warm-up" / "talking_d0.mp4")
        warm.index([tmp / "warm-up"])
        print(f"sampling {args.fps:g} frames/s; {os.cpu_count()} CPU cores; {load()}")
        print(f"{'clip':<34} {'seconds':>7}  {'decode alone':>14}  {'index':>14}  tracks")
        for label, path in videos:
            info = probe(path)
            decode, index, tracks = [], [], 0
            for repeat in range(args.repeats):
                started = time.perf_counter()
                for _ in sampled_frames(path, args.fps, settings.max_decode_side):
                    pass
                decode.append(time.perf_counter() - started)
                folder = tmp / f"clip-{label}-{repeat}"
                folder.mkdir()
                shutil.copy(path, folder / path.name)
                fs = FaceSearch(tmp / f"index-{label}-{repeat}", settings=settings)
                fs.__dict__["describer"] = warm.describer  # the loaded models
                started = time.perf_counter()
                report = fs.index([folder])
                index.append(time.perf_counter() - started)
                tracks = report.faces
            best_decode, best_index = min(decode), min(index)
            name = f"{path.stem[:14]} {label} {info.width}x{info.height}"
            print(f"{name:<34} {info.duration:>7.1f}  {info.duration / best_decode:>9.1f} x rt"
                  f"  {info.duration / best_index:>9.2f} x rt  {tracks}")
        print(f"(x rt: seconds of video per second of wall time; {load()})")
        warm.close()


if __name__ == "__main__":
    main()
