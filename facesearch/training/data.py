"""Labelled faces for training and evaluation: CelebA and UTKFace from the shared data folder.

`build_cache` runs every photo through our own detector, aligner and region parser once (the
backends named, by default the index's: Settings.detector, Settings.parser) and stores the
network inputs (aligned crops, grid masks) with their labels in one .npz per source, in a folder
of its own for each detector and parser (`prepared_dir`: cache/scrfd-learned/celeba_wild.npz),
since they decide the crops and masks the network learns from.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facesearch.spec import AGE_GROUPS, CELEBA_ATTRIBUTES, FEATURE_GRID, INPUT_SIZE, REGIONS
from facesearch.errors import FaceSearchError
from facesearch.settings import DEFAULTS, Settings

#: Data sources: name -> (folder under the data dir, label file or None for UTKFace names).
SOURCES: dict[str, tuple[str, str | None]] = {
    "celeba_aligned": ("celeba/aligned", "labels.csv"),
    "celeba_small": ("celeba/aligned_small", "labels.csv"),
    "celeba_wild": ("celeba/wild", "labels.csv"),
    "utkface": ("utkface", None),
}
UNKNOWN = -1
#: Aligned crops are cached as WebP at this quality: the cache of ~20k faces stays ~55 MB, small
#: enough to carry to a GPU machine, and CPU and GPU runs train on identical pixels.
CACHE_WEBP_QUALITY = 90


def data_dir(settings: Settings | None = None) -> Path:
    """The labelled data folder: `settings.data_dir` (default: Settings.from_env(), i.e.
    $FACESEARCH_DATA, else ../shared/data)."""
    return (settings or Settings.from_env()).data_dir


@dataclass(frozen=True)
class LabelledImage:
    """One photo and what is known about its main face (UNKNOWN where a source says nothing)."""

    path: Path
    identity: int = UNKNOWN
    celeba: tuple[int, ...] | None = None  # 40 attributes as 0/1
    gender: int = UNKNOWN                  # index into spec.GENDERS
    age: float = UNKNOWN
    ethnicity: int = UNKNOWN               # index into spec.ETHNICITIES


def labelled_images(source: str, root: Path | None = None) -> list[LabelledImage]:
    """The photos of one source with their labels, in file-name order."""
    folder_name, label_file = SOURCES[source]
    folder = (root or data_dir()) / folder_name
    if label_file is None:
        return [_utkface_image(path) for path in sorted(folder.glob("*.jpg"))]
    with open(folder / label_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = []
    for row in sorted(rows, key=lambda row: row["file"]):
        attributes = tuple(int(row[name]) for name in CELEBA_ATTRIBUTES)
        images.append(LabelledImage(
            path=folder / row["file"], identity=int(row["identity"]), celeba=attributes,
            gender=0 if attributes[CELEBA_ATTRIBUTES.index("Male")] else 1))
    return images


def _utkface_image(path: Path) -> LabelledImage:
    """UTKFace labels live in the name: age_gender_race_date.jpg.chip.jpg."""
    age, gender, race = path.name.split("_")[:3]
    return LabelledImage(path=path, age=float(age), gender=int(gender), ethnicity=int(race))


def age_group(age: float) -> int:
    """Index of the age group (spec.AGE_GROUPS) an age in years falls in."""
    for index, (_, first, last) in enumerate(AGE_GROUPS):
        if age <= last:
            return index
    return len(AGE_GROUPS) - 1


def prepared_dir(cache_dir: str | Path, detector: str, parser: str) -> Path:
    """Where the caches of photos prepared with `detector` and `parser` live: a folder of
    `cache_dir` named after them ("cache/scrfd-learned")."""
    return Path(cache_dir) / f"{detector}-{parser}"


_worker_preprocessor = None


def _start_worker(detector: str, parser: str) -> None:
    """Each worker process prepares photos with the named backends (models load on first use)."""
    global _worker_preprocessor
    from facesearch.pipeline.prepare import FacePreparer
    _worker_preprocessor = FacePreparer(Settings(detector=detector, parser=parser))


def _prepare(path: Path):
    if _worker_preprocessor is None:
        _start_worker(DEFAULTS.detector, DEFAULTS.parser)
    from facesearch.pipeline.images import ImageError, load_image
    try:
        faces = _worker_preprocessor.prepare(load_image(path).pixels)
    except ImageError:
        return None
    if not faces:
        return None
    face = faces[0]
    mesh = face.mesh.astype(np.float32) if face.mesh_found else None  # only found meshes are averaged
    return face.crop, face.grid_masks.astype(np.float16), mesh, face.mesh_found


def encode_crops(crops) -> tuple[np.ndarray, np.ndarray]:
    """RGB crops -> (all WebP bytes concatenated, start offsets with the end appended)."""
    blobs = [cv2.imencode(".webp", np.ascontiguousarray(crop[:, :, ::-1]),
                          [cv2.IMWRITE_WEBP_QUALITY, CACHE_WEBP_QUALITY])[1].tobytes()
             for crop in crops]
    offsets = np.cumsum([0] + [len(blob) for blob in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def decode_crops(encoded: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of encode_crops: (N, 112, 96, 3) uint8 RGB."""
    crops = np.empty((len(offsets) - 1, *INPUT_SIZE, 3), dtype=np.uint8)
    for i in range(len(crops)):
        crops[i] = cv2.imdecode(encoded[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)[:, :, ::-1]
    return crops


def build_cache(source: str, cache_dir: Path, root: Path | None = None,
                limit: int | None = None, workers: int = 2, detector: str = DEFAULTS.detector,
                parser: str = DEFAULTS.parser) -> Path:
    """Preprocess one source into cache_dir/<source>.npz with the `detector` and `parser`
    backends (skipped if it exists); returns its path. FaceSearchError when the file there was
    prepared with other backends (its `preparation`; a file without one is mediapipe+mesh's)."""
    out = cache_dir / f"{source}.npz"
    preparation = f"{detector}+{parser}"
    if out.exists():
        with np.load(out) as cached:
            found = str(cached["preparation"]) if "preparation" in cached else "mediapipe+mesh"
        if found != preparation:
            raise FaceSearchError(f"{out} holds faces prepared with {found}, not {preparation}: "
                                  f"use another cache folder")
        return out
    images = labelled_images(source, root)[:limit]
    crops, masks, meshes, kept = [], [], [], []
    with multiprocessing.get_context("spawn").Pool(workers, _start_worker, (detector, parser)) as pool:
        results = pool.imap(_prepare, [image.path for image in images], chunksize=16)
        for image, result in tqdm(zip(images, results), total=len(images), desc=source,
                                  unit="photo"):
            if result is None:
                continue
            crop, grid, mesh, mesh_found = result
            crops.append(crop)
            masks.append(grid)
            if mesh_found:
                meshes.append(mesh)
            kept.append(image)
    cache_dir.mkdir(parents=True, exist_ok=True)
    no_celeba = (UNKNOWN,) * len(CELEBA_ATTRIBUTES)
    temporary = out.with_suffix(".tmp.npz")
    encoded, offsets = encode_crops(crops)
    np.savez_compressed(
        temporary,
        crops_webp=encoded,
        crop_offsets=offsets,
        masks=np.asarray(masks, dtype=np.float16).reshape(-1, len(REGIONS), *FEATURE_GRID),
        mesh_sum=np.sum(meshes, axis=0) if meshes else np.zeros((0, 2)),
        mesh_count=len(meshes),
        files=np.array([image.path.name for image in kept]),
        identity=np.array([image.identity for image in kept], dtype=np.int64),
        celeba=np.array([image.celeba or no_celeba for image in kept], dtype=np.int8),
        gender=np.array([image.gender for image in kept], dtype=np.int8),
        age=np.array([image.age for image in kept], dtype=np.float32),
        ethnicity=np.array([image.ethnicity for image in kept], dtype=np.int8),
        n_photos=len(images),
        preparation=np.array(preparation),
    )
    os.replace(temporary, out)
    return out
