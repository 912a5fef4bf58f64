"""Indexing a folder: find photos, skip the unchanged ones, describe every face, store in batches.

Batches are written FAISS first (atomic file replace), SQL second (one transaction), so a kill at
any moment leaves at worst vectors without rows, which `reconcile` drops when the index reopens.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .config import COMMIT_EVERY
from .errors import FaceSearchError
from .images import ImageError, content_hash, is_image_path, load_image
from .results import Face
from .store import PhotoStatus, Store
from .vector_index import VectorIndex


@dataclass
class IndexReport:
    """What an indexing run did."""

    photos: int = 0        # image files found
    indexed: int = 0       # new or changed photos described
    unchanged: int = 0
    removed: int = 0       # photos gone from disk, dropped from the index
    faces: int = 0         # faces added
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.faces / self.seconds if self.seconds else 0.0
        return (f"{self.photos} photos: {self.indexed} indexed ({self.faces} faces, "
                f"{rate:.1f} faces/s), {self.unchanged} unchanged, {self.removed} removed, "
                f"{len(self.no_face)} without a face, {len(self.failed)} failed")


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every image file under the given files and folders (recursively), sorted, absolute."""
    found: set[Path] = set()
    for root in map(Path, paths):
        if root.is_file() or (root.is_symlink() and not root.exists()):
            found.add(root.absolute())
            continue
        if not root.is_dir():
            raise FaceSearchError(f"{root}: no such file or folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise FaceSearchError(f"{root}: folder cannot be read (permission denied)")
        for folder, _, files in os.walk(root, followlinks=True):
            found.update(Path(folder, name).absolute() for name in files
                         if is_image_path(Path(name)))
    return sorted(found)


@dataclass
class _Pending:
    """A photo described but not yet written."""

    path: Path
    digest: str
    size: int
    mtime: float
    replaces: bool
    status: PhotoStatus
    error: str | None = None
    faces: list[Face] = field(default_factory=list)
    size_px: tuple[int, int] | None = None


class Indexer:
    """One indexing run over a store and a vector index."""

    def __init__(self, store: Store, vectors: VectorIndex, describe: Callable[[np.ndarray, float], list[Face]]):
        self.store = store
        self.vectors = vectors
        self.describe = describe
        self.next_id = max(store.next_vector_id(), int(vectors.ids().max(initial=-1)) + 1)

    def run(self, roots: list[str | os.PathLike], files: list[Path], progress: bool = True,
            on_problem: Callable[[str], None] | None = None) -> IndexReport:
        """Index `files` (the images found under `roots`); photos under the roots that vanished
        from disk are dropped."""
        started = time.time()
        report = IndexReport(photos=len(files))
        known = {photo.path: photo for photo in self.store.photos()}
        on_disk = {str(path.resolve()) if path.exists() else str(path) for path in files}
        report.removed = self._remove_vanished(known, on_disk, roots)
        pending: list[_Pending] = []
        bar = tqdm(files, desc="indexing", unit="photo", disable=not progress)
        for path in bar:
            item = self._examine(path, known, report)
            if item is not None:
                pending.append(item)
                if item.status is PhotoStatus.ERROR:
                    report.failed.append((str(path), item.error or "error"))
                    if on_problem:
                        on_problem(f"skipped {item.error}")
                elif item.status is PhotoStatus.NO_FACE:
                    report.no_face.append(str(path))
                    if on_problem:
                        on_problem(f"no face found in {path}")
                report.faces += len(item.faces)
                report.indexed += item.status is not PhotoStatus.ERROR
            bar.set_postfix(faces=report.faces)
            if len(pending) >= COMMIT_EVERY:
                self._write(pending)
                pending = []
        self._write(pending)
        report.seconds = time.time() - started
        return report

    def _examine(self, path: Path, known: dict, report: IndexReport) -> _Pending | None:
        """Describe a new or changed photo; None if it is unchanged."""
        try:
            stat = path.stat()
            key = str(path.resolve())
        except OSError as error:
            return _Pending(path, "", 0, 0.0, str(path) in known, PhotoStatus.ERROR,
                            f"{path}: {error.strerror or 'cannot be read'}")
        existing = known.get(key)
        if existing and existing.size == stat.st_size and existing.mtime == stat.st_mtime:
            report.unchanged += 1
            return None
        try:
            digest = content_hash(path)
        except OSError as error:
            return _Pending(path, "", stat.st_size, stat.st_mtime, existing is not None,
                            PhotoStatus.ERROR, f"{path}: {error.strerror or 'cannot be read'}")
        if existing and existing.content_hash == digest:
            with self.store.session() as session:
                self.store.update_file_stat(session, key, stat.st_size, stat.st_mtime)
            report.unchanged += 1
            return None
        item = _Pending(Path(key), digest, stat.st_size, stat.st_mtime, existing is not None,
                        PhotoStatus.INDEXED)
        try:
            photo = load_image(path)
            item.faces = self.describe(photo.pixels, photo.scale)
            item.size_px = photo.original_size
        except ImageError as error:
            item.status, item.error = PhotoStatus.ERROR, str(error)
        if item.status is PhotoStatus.INDEXED and not item.faces:
            item.status = PhotoStatus.NO_FACE
        return item

    def _remove_vanished(self, known: dict, on_disk: set[str], roots: list) -> int:
        """Drop stored photos under `roots` whose files are gone."""
        prefixes = [str(Path(root).resolve()) for root in roots]
        gone = [path for path in known if path not in on_disk and not Path(path).exists()
                and any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)]
        if gone:
            removed_ids = self.store.delete_photos(gone)
            self.vectors.remove(removed_ids)
            self.vectors.save()
        return len(gone)

    def _write(self, pending: list[_Pending]) -> None:
        """Write a batch: vectors (atomically) first, then all SQL rows in one transaction."""
        if not pending:
            return
        ids, vectors, rows = [], [], []
        for item in pending:
            faces = []
            for face in item.faces:
                ids.append(self.next_id)
                vectors.append(face.vector)
                faces.append({"x0": face.bbox[0], "y0": face.bbox[1], "x1": face.bbox[2],
                              "y1": face.bbox[3], "landmarks": face.landmarks,
                              "det_score": face.score, "attributes": face.attributes,
                              "vector_id": self.next_id})
                self.next_id += 1
            rows.append((item, faces))
        replaced = [str(item.path) for item in pending if item.replaces]
        with self.store.session() as session:
            old_ids = self.store.delete_photos(replaced, session) if replaced else []
            self.vectors.remove(old_ids)
            if ids:
                self.vectors.add(np.array(ids, dtype=np.int64), np.stack(vectors))
            self.vectors.save()
            for item, faces in rows:
                width, height = item.size_px or (None, None)
                self.store.add_photo(session, path=item.path, content_hash=item.digest,
                                     size=item.size, mtime=item.mtime, status=item.status,
                                     error=item.error, width=width, height=height, faces=faces)


def reconcile(store: Store, vectors: VectorIndex) -> tuple[int, int]:
    """Make SQL and FAISS agree after an interrupted run: drop vectors without rows, and photos
    whose vectors are missing (they are re-indexed next time). Returns (vectors, photos) dropped."""
    stored = set(store.all_vector_ids())
    dropped_vectors = vectors.sync_ids(stored)
    missing = stored - set(vectors.ids().tolist())
    photos = []
    if missing:
        photos = sorted({photo.path for _, photo in store.faces_by_vector_ids(missing).values()})
        vectors.remove(store.delete_photos(photos))
    if dropped_vectors or photos:
        vectors.save()
    return dropped_vectors, len(photos)
