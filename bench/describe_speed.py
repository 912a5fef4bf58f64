"""Describe speed on aligned faces: photo -> 364-d master vector, on this machine's CPU.

    python bench/describe_speed.py [--photos 200] [--threads 2]

Times, on N aligned CelebA photos from ../shared/data: the whole path users get from
`FaceSearch.describe` (decode, detection, face mesh, alignment, region masks, network), one photo
at a time and streamed through `FaceSearch.describe_many`, then its two halves apart (preprocessing per photo; the network over the aligned crops in batches of 1 and
64), and the identity vector (ArcFace on the 112x112 crops, batches of 1 and 64: the time it adds a face;
target of the identity issue: at most 25 ms). Target of the descriptor issue: at least 25 aligned faces/s on a 2-core CPU. Baseline in the
same run, when dlib is installed (`pip install "facesearch[anchors]"`): dlib's 128-d ResNet
descriptor on the same photos, both with its HOG detector (face_recognition's pipeline) and given
the face box (descriptor + 5 landmarks only).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from facesearch import FaceSearch
from facesearch.training import dlib_anchor
from facesearch.settings import DEFAULTS
from facesearch.training.data import data_dir
from facesearch.pipeline.images import load_image
from facesearch.models.arcface import IdentityModel
from facesearch.models.descriptor import shipped_model
from facesearch.pipeline.prepare import FacePreparer

TARGET_FACES_PER_SECOND = 25
#: The identity issue's target: the identity vector adds at most this many ms a face (batched).
IDENTITY_TARGET_MS = 25


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:7.1f} faces/s ({1000 * seconds / max(count, 1):6.1f} ms/face)"


def dlib_rates(photos: list[Path]) -> None:
    if not dlib_anchor.available():
        print("baseline: dlib not installed (pip install \"facesearch[anchors]\")")
        return
    import dlib

    detector, shapes, encoder = dlib_anchor.dlib_models()
    images = [load_image(photo).pixels for photo in photos]
    start, found = time.perf_counter(), 0
    boxes = []
    for pixels in images:
        faces = detector(pixels, 1)
        boxes.append(faces[0] if faces else dlib.rectangle(0, 0, pixels.shape[1] - 1, pixels.shape[0] - 1))
        for box in faces:
            encoder.compute_face_descriptor(pixels, shapes(pixels, box))
            found += 1
    print(f"baseline dlib, HOG + 128-d descriptor     : {rate(found, time.perf_counter() - start)}")
    start = time.perf_counter()
    for pixels, box in zip(images, boxes):
        encoder.compute_face_descriptor(pixels, shapes(pixels, box))
    print(f"baseline dlib, descriptor given the box   : {rate(len(images), time.perf_counter() - start)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = sorted((data_dir() / "celeba/aligned").glob("*.jpg"))[:args.photos]
    search = FaceSearch(Path("/nonexistent-facesearch-bench-index"))  # describe needs no index
    search.describe(photos[0])  # load detector, mesh, segmenter and network once

    start = time.perf_counter()
    faces = sum(len(search.describe(photo)) for photo in photos)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    many = sum(len(found) for found in search.describe_many(photos))
    streamed = time.perf_counter() - start
    print(f"{len(photos)} aligned CelebA photos, {args.threads} torch threads")
    print(f"describe, one photo at a time             : {rate(faces, whole)}")
    print(f"describe_many (photos prepared on {DEFAULTS.describe_threads} threads,")
    print(f"  faces batched for the network)          : {rate(many, streamed)}  "
          f"[target >= {TARGET_FACES_PER_SECOND}: {'met' if many / streamed >= TARGET_FACES_PER_SECOND else 'NOT met'}]")

    preprocessor = FacePreparer()
    start = time.perf_counter()
    prepared = [face for photo in photos for face in preprocessor.prepare(load_image(photo).pixels)[:1]]
    print(f"  preprocessing (detect, mesh, align, masks): {rate(len(prepared), time.perf_counter() - start)}")
    crops = np.stack([face.crop for face in prepared])
    masks = np.stack([face.grid_masks for face in prepared])
    model = shipped_model()
    for batch in (1, 64):
        start = time.perf_counter()
        for first in range(0, len(crops), batch):
            model.embed(crops[first:first + batch], masks[first:first + batch])
        print(f"  network alone, batches of {batch:<2}            : {rate(len(crops), time.perf_counter() - start)}")
    identity_crops = np.stack([face.identity_crop for face in prepared])
    identity = IdentityModel(threads=args.threads)
    identity.embed(identity_crops[:8])  # warm up
    for batch in (1, 64):
        start = time.perf_counter()
        for first in range(0, len(identity_crops), batch):
            identity.embed(identity_crops[first:first + batch])
        seconds = time.perf_counter() - start
        met = 1000 * seconds / len(identity_crops) <= IDENTITY_TARGET_MS
        print(f"  + identity vector (ArcFace), batches of {batch:<2}: {rate(len(identity_crops), seconds)}"
              f"  [target <= {IDENTITY_TARGET_MS} ms/face added: {'met' if met else 'NOT met'}]")
    dlib_rates(photos)


if __name__ == "__main__":
    main()
