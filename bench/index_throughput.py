"""Indexing and query speed on real photos from ../shared/data (prints its figures).

    python bench/index_throughput.py [--photos 100]

Indexes N aligned CelebA crops and N in-the-wild CelebA scenes into temporary indexes and reports
photos/s and faces/s, then the warm latency of image and text queries. Baseline in the same run:
describing the same aligned faces without storage (the pipeline alone), to show what the index
and SQL bookkeeping cost.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from facesearch import FaceSearch
from facesearch.dataset import data_dir


def copy_sample(folder: Path, n: int, into: Path) -> list[Path]:
    into.mkdir(parents=True)
    files = sorted(folder.glob("*.jpg"))[:n]
    for file in files:
        shutil.copy(file, into / file.name)
    return [into / file.name for file in files]


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    root = data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = FaceSearch(tmp / "warm")
        warm.describe(next((root / "celeba/aligned").glob("*.jpg")))  # load models once
        for name, folder in (("aligned crops", "celeba/aligned"), ("in-the-wild", "celeba/wild")):
            photos = copy_sample(root / folder, args.photos, tmp / folder.replace("/", "_"))
            fs = FaceSearch(tmp / f"index_{folder.replace('/', '_')}")
            start = time.perf_counter()
            report = fs.index(photos)
            seconds = time.perf_counter() - start
            print(f"index {name:14s}: {len(photos)} photos, {report.faces} faces in {seconds:.1f} s "
                  f"-> {len(photos) / seconds:.1f} photos/s, {report.faces / seconds:.1f} faces/s")
            start = time.perf_counter()
            described = sum(len(warm.describe(photo)) for photo in photos)
            seconds = time.perf_counter() - start
            print(f"  baseline, describe only (no storage): {described / seconds:.1f} faces/s")
        image_ms = timed(lambda: fs.query(image=photos[0], k=10), 10)
        fs.query(text="black hair, smiling", k=10)  # loads the text encoder
        text_ms = timed(lambda: fs.query(text="black hair, smiling", k=10), 10)
        print(f"query latency (warm, {len(fs.vectors)} faces): image {statistics.median(image_ms):.1f} ms "
              f"(detection + description included), text {statistics.median(text_ms):.1f} ms (median of 10)")


if __name__ == "__main__":
    main()
