"""Describe speed: photo -> 364-d master vector with everything the index stores, on this machine's CPU.

    python bench/describe_speed.py [--photos 200] [--threads 2] [--folder aligned|wild]
    python bench/describe_speed.py --compare [--rounds 2] [--old-tree DIR]

Times, on N CelebA photos from ../shared/data (aligned crops by default; `--folder wild`: the
in-the-wild photos of the README's first command): the whole path users get from
`FaceSearch.describe` (decode, detection, face mesh, alignment, region masks, pixel attributes,
quality, both networks, emotions), one photo at a time and streamed through
`FaceSearch.describe_many`, then its two halves apart (preprocessing per photo; the network
over the aligned crops in batches of 1 and 64), and the identity vector (ArcFace on the 112x112
crops, batches of 1 and 64: the time it adds a face; target of the identity issue: at most 25
ms). Target: at least 30 faces/s streamed on a 2-core CPU. Baseline in the same run, when dlib
is installed (`pip install "facesearch[anchors]"`): dlib's 128-d ResNet descriptor on the same
photos, both with its HOG detector (face_recognition's pipeline) and given the face box
(descriptor + 5 landmarks only).

`--compare` times only the streamed path, in turns (so that the machine's load falls on each
alike): one person segmentation a face (the head crop's, warped into the aligned crop: the
default) against `--separate-segmentation` (the aligned crop segmented again, as before), and,
with `--old-tree DIR` (a checkout of an earlier commit, e.g. `git archive HEAD | tar -x -C DIR`),
that code run in a subprocess on the same photos. Each turn prints faces/s and the process's CPU
milliseconds a face (less sensitive to other processes' load than wall time), and the load
average.

`--stages` gives the CPU milliseconds a face of each stage (process CPU, helper threads
included, the stages run one at a time: decode and prepare photo by photo, then the networks
over the faces of `describe_batch` photos at a time, as describe_many batches them): detection
(scrfd; or both mediapipe detectors with the face mesh), the face mesh fitted for the pixel
attributes (scrfd gives none), the learned face parser, person segmentation, pixel attributes,
the rest of preparing (alignment, region masks, quality, crops), the descriptor network (with emotions)
and ArcFace; with `--old-tree DIR`, the same for that tree, in a subprocess of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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

TARGET_FACES_PER_SECOND = 30
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


def streamed(photos: list[Path], rounds: int = 1) -> tuple[int, float, float]:
    """(faces, wall seconds, process CPU seconds) of describe_many over `photos`, `rounds` times
    (models loaded beforehand)."""
    search = FaceSearch(Path("/nonexistent-facesearch-bench-index"))
    list(search.describe_many(photos[:8]))  # models loaded on every preparing thread
    wall, cpu = time.perf_counter(), time.process_time()
    faces = sum(len(found) for _ in range(rounds) for found in search.describe_many(photos))
    return faces, time.perf_counter() - wall, time.process_time() - cpu


def compare(photos: list[Path], rounds: int, old_tree: Path | None, threads: int, folder: str,
            count: int) -> None:
    """Streamed describe in turns: shared vs separate person segmentation (and an older tree)."""
    for turn in range(rounds):
        for label, shared in (("one segmentation a face (default)", True),
                              ("--separate-segmentation (as before)", False)):
            FacePreparer.share_person_mask = shared
            faces, wall, cpu = streamed(photos)
            print(f"turn {turn + 1} {label:36}: {rate(faces, wall)}  CPU {1000 * cpu / faces:5.1f} ms/face"
                  f"  load {os.getloadavg()[0]:.1f}", flush=True)
        if old_tree is not None:
            environment = dict(os.environ, PYTHONPATH=str(old_tree))
            output = subprocess.run([sys.executable, __file__, "--stream-only", "--photos", str(count),
                                     "--threads", str(threads), "--folder", folder],
                                    env=environment, capture_output=True, text=True, check=True).stdout
            print(f"turn {turn + 1} {'old tree ' + old_tree.name:36}: {output.strip()}  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    FacePreparer.share_person_mask = True


def stage_costs(photos: list[Path]) -> tuple[int, dict[str, float]]:
    """(faces, CPU ms a face by stage) of describing `photos`, the stages one at a time (see the
    module's note); each stage's time is taken around the method that runs it."""
    from facesearch.pipeline.describer import Describer
    from facesearch.pipeline.detect.mediapipe import MediapipeDetector
    from facesearch.pipeline.pixel_attributes import PixelMeasurer
    try:  # older trees (--old-tree) may lack these backends
        from facesearch.pipeline.detect.scrfd import ScrfdDetector
        from facesearch.pipeline.parse.learned import LearnedParser
    except ImportError:
        ScrfdDetector = LearnedParser = None

    spent: dict[str, float] = {}

    def timed(owner, name: str, label: str) -> None:
        method = getattr(owner, name, None) if owner is not None else None
        if method is None:  # an older tree without this stage
            return

        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
        setattr(owner, name, wrapper)

    describer = Describer()
    for owner, name, label in ((MediapipeDetector, "detect", "detection (2 detectors + mesh)"),
                               (ScrfdDetector, "detect", "detection (scrfd)"),
                               (MediapipeDetector, "face_mesh", "face mesh (in detection for mediapipe)"),
                               (LearnedParser, "head_parse", "face parser (learned)"),
                               (PixelMeasurer, "head", "person segmentation"),
                               (PixelMeasurer, "measure", "pixel attributes"),
                               (type(describer.model), "embed", "descriptor network + emotions"),
                               (type(describer.identity_model), "embed", "ArcFace identity")):
        timed(owner, name, label)
    describer.describe_prepared([describer.prepare_one(photo)[1] for photo in photos[:4]])  # warm
    spent.clear()
    start = time.process_time()
    prepared = [result[1] for result in map(describer.prepare_one, photos)
                if not isinstance(result, Exception)]
    preparing = time.process_time() - start
    start = time.process_time()
    batch = describer.settings.describe_batch
    for first in range(0, len(prepared), batch):
        describer.describe_prepared(prepared[first:first + batch])
    networks = time.process_time() - start
    faces = max(1, sum(map(len, prepared)))
    costs = {label: 1000 * seconds / faces for label, seconds in spent.items()}
    # the stages inside preparing (the face mesh inside mediapipe's detection is in its row)
    inside = sum(costs.get(label, 0.0) for label in (
        "detection (2 detectors + mesh)", "detection (scrfd)", "face parser (learned)",
        "person segmentation", "pixel attributes"))
    if "detection (scrfd)" in costs:
        inside += costs.get("face mesh (in detection for mediapipe)", 0.0)
    costs["decode + rest of preparing"] = 1000 * preparing / faces - inside
    costs["total"] = 1000 * (preparing + networks) / faces
    return faces, costs


def stages(photos: list[Path], old_tree: Path | None, threads: int, folder: str, count: int) -> None:
    """Print CPU ms a face by stage, this tree's beside `old_tree`'s (a subprocess, same photos)."""
    columns = {"this tree": stage_costs(photos)[1]}
    if old_tree is not None:
        environment = dict(os.environ, PYTHONPATH=str(old_tree))
        output = subprocess.run([sys.executable, __file__, "--stages-only", "--photos", str(count),
                                 "--threads", str(threads), "--folder", folder],
                                env=environment, capture_output=True, text=True, check=True).stdout
        columns[f"old tree {old_tree.name}"] = json.loads(output.strip().splitlines()[-1])
    print(f"CPU ms a face by stage, {len(photos)} {folder} CelebA photos, one stage at a time, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':34}" + "".join(f"{name:>22}" for name in columns))
    labels = list(dict.fromkeys(label for costs in columns.values() for label in costs))
    for label in sorted(labels, key=lambda label: label == "total"):
        print(f"{label:34}" + "".join(f"{costs.get(label, float('nan')):22.1f}"
                                      for costs in columns.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    parser.add_argument("--folder", default="aligned", choices=("aligned", "wild"))
    parser.add_argument("--separate-segmentation", action="store_true",
                        help="segment the aligned crop again, as before one segmentation a face")
    parser.add_argument("--compare", action="store_true", help="streamed only, in turns (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of --compare")
    parser.add_argument("--old-tree", type=Path, help="with --compare: an older checkout to time too")
    parser.add_argument("--stages", action="store_true",
                        help="CPU ms a face by stage (see above), beside --old-tree's")
    parser.add_argument("--stream-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stages-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = sorted((data_dir() / f"celeba/{args.folder}").glob("*.jpg"))[:args.photos]
    if args.stream_only:  # one streamed figure (what --compare runs in an older tree)
        faces, wall, cpu = streamed(photos)
        print(f"{rate(faces, wall)}  CPU {1000 * cpu / faces:5.1f} ms/face")
        return
    if args.stages_only:  # what --stages runs in an older tree: one JSON line
        print(json.dumps(stage_costs(photos)[1]))
        return
    if args.stages:
        stages(photos, args.old_tree, args.threads, args.folder, args.photos)
        return
    if args.compare:
        compare(photos, args.rounds, args.old_tree, args.threads, args.folder, args.photos)
        return
    FacePreparer.share_person_mask = not args.separate_segmentation
    search = FaceSearch(Path("/nonexistent-facesearch-bench-index"))  # describe needs no index
    search.describe(photos[0])  # load detector, mesh, segmenter and network once
    list(search.describe_many(photos[:8]))  # ... and on every preparing thread

    start = time.perf_counter()
    faces = sum(len(search.describe(photo)) for photo in photos)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    many = sum(len(found) for found in search.describe_many(photos))
    streamed_seconds = time.perf_counter() - start
    print(f"{len(photos)} {args.folder} CelebA photos, {args.threads} torch threads, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"describe, one photo at a time             : {rate(faces, whole)}")
    print(f"describe_many (photos prepared on {DEFAULTS.describe_threads} threads,")
    print(f"  faces batched for the network)          : {rate(many, streamed_seconds)}  "
          f"[target >= {TARGET_FACES_PER_SECOND}: "
          f"{'met' if many / streamed_seconds >= TARGET_FACES_PER_SECOND else 'NOT met'}]")

    preprocessor = FacePreparer()
    start = time.perf_counter()
    prepared = [face for photo in photos for face in preprocessor.prepare(load_image(photo).pixels)[:1]]
    print(f"  preprocessing (detect, mesh, align, masks, pixel attributes): "
          f"{rate(len(prepared), time.perf_counter() - start)}")
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
