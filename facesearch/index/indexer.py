"""Indexing a folder: find photos, skip the unchanged ones, describe every face, store at checkpoints.

Photos are described `commit_every` at a time and kept in memory until a checkpoint, which
writes them: first every vector space that changed (one atomic FAISS file each, see spaces.py),
then all their SQL rows in one transaction. A checkpoint is written at the first batch boundary
once `checkpoint_seconds` have passed since the last one (or since the run started), at the end
of the run, and on Ctrl-C (KeyboardInterrupt) before it is re-raised; so a long run rewrites the
FAISS files about once per `checkpoint_seconds`, not once per batch.

Crash safety: SQL rows are committed only after the vectors they name are on disk, so a kill at
any moment leaves at worst vectors without rows (never a row without its vector), and loses at
most the photos described since the last checkpoint (about `checkpoint_seconds` of work plus a
batch): they have no row, so the next run describes them again. `reconcile` repairs any
disagreement when the next index or remove run starts (under the index lock, see lock.py): it
drops vectors without rows in every space, and photos with a row whose vector is missing from a
space (a FAISS file lost or restored from an older copy) so that they are described again.
Queries never write: they over-fetch by the number of vectors without rows and skip them. Vector
ids are reserved in SQL before they reach FAISS and never reused, so a vector id never names
another face. No single file stops a run: hostile files (empty, truncated, not images, links to
nowhere or in loops, FIFOs, names that are not UTF-8, decompression bombs) are recorded as failed
with a one-line reason, and tried again on the next run.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesearch.settings import DEFAULTS
from facesearch.pipeline.images import ImageError
from facesearch.pipeline.sources import content_hash, photo_key, printable
from facesearch.pipeline.faces import Face
from facesearch.index.store import PhotoStatus, Store
from facesearch.index.spaces import MASTER, Spaces


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


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


#: Stands in for the crop and masks of faces waiting for a checkpoint: they are not stored, and
#: would hold ~0.1-0.3 MB a face for up to checkpoint_seconds (a waiting face keeps ~2 KB).
_DROPPED = np.empty(0, np.uint8)


@dataclass
class _Pending:
    """A photo described but not yet written (or one that failed, with its reason); its faces
    are kept without their crops and masks."""

    path: Path
    digest: str
    size: int
    mtime: float
    replaces: bool
    status: PhotoStatus
    error: str | None = None
    faces: list[Face] = field(default_factory=list)
    size_px: tuple[int, int] | None = None
    record: bool = True  # False: reported only, no row can be stored (a link loop)


#: Meta key of the smallest vector id never handed out: ids are not reused, even after a crash
#: or a removal, so a reader holding an older FAISS file never pairs a vector with a new row.
NEXT_VECTOR_ID = "next_vector_id"

#: How a described face gives its vector in each vector space (spaces.SPACES): space name ->
#: Face -> vector (dim,). A face has the same vector id in every space (one id counter).
FACE_VECTORS: dict[str, Callable[[Face], np.ndarray]] = {MASTER: lambda face: face.vector}

#: The clock checkpoints are timed with (seconds; tests replace it).
_clock: Callable[[], float] = time.monotonic


class Indexer:
    """One indexing run over a store and the vector spaces of an index."""

    def __init__(self, store: Store, spaces: Spaces,
                 describe: Callable[[list[Path]], Iterable[tuple[tuple[int, int] | None, list[Face]] | Exception]],
                 model_version: str, commit_every: int = DEFAULTS.commit_every,
                 checkpoint_seconds: float = DEFAULTS.checkpoint_seconds):
        """`describe` maps photo paths to (original size, faces) or the exception each raised,
        in order (pipeline.describer.Describer.stream: several photos are described at once), with the
        model `model_version`; photos another model described are described again. Photos are
        described `commit_every` at a time (Settings.commit_every); checkpoints (vector files,
        then SQL rows) are written at batch boundaries at most every `checkpoint_seconds`
        (Settings.checkpoint_seconds; 0: after every batch) and at the end (see the module's
        docstring). ValueError if a space has no FACE_VECTORS entry."""
        unknown = [name for name in spaces if name not in FACE_VECTORS]
        if unknown:
            raise ValueError(f"no way to get a face's vector in space(s) {', '.join(unknown)}")
        self.store = store
        self.model_version = model_version
        self.spaces = spaces
        self.describe = describe
        self.commit_every = commit_every
        self.checkpoint_seconds = checkpoint_seconds
        reserved = store.get_meta(NEXT_VECTOR_ID)
        self.next_id = max(store.next_vector_id(),
                           *(int(space.ids().max(initial=-1)) + 1 for space in spaces.values()),
                           int(reserved) if reserved and reserved.isdigit() else 0)

    def run(self, roots: list[str | os.PathLike], files: list[Path], progress: bool = True,
            on_problem: Callable[[str], None] | None = None,
            problems: Iterable[tuple[str, str]] = ()) -> IndexReport:
        """Index `files` (the images found under `roots`); photos under the roots that vanished
        from disk are dropped. `problems` are (folder, reason) found while listing the roots.
        No single file stops the run: each bad one is recorded with its reason."""
        started = time.time()
        report = IndexReport()
        for folder, reason in problems:
            report.failed.append((folder, reason))
            if on_problem:
                on_problem(f"skipped {folder}: {reason}")
        keyed: dict[str, Path] = {}
        loops: list[Path] = []
        for path in files:
            key = photo_key(path)
            if key is None:
                loops.append(path)
            else:
                keyed.setdefault(key, path)  # two paths to one file: indexed once
        report.photos = len(keyed) + len(loops)
        known = {photo.path: photo for photo in self.store.photos()}
        report.removed = self._remove_vanished(known, set(keyed), roots)
        work = [(path, key) for key, path in keyed.items()] + [(path, None) for path in loops]
        work.sort(key=lambda item: str(item[0]))
        pending: list[_Pending] = []  # settled, waiting to be written
        to_describe: list[tuple[_Pending, Path]] = []

        def settle(items: Iterable[_Pending]) -> None:
            for item in items:
                pending.append(item)
                if item.status is PhotoStatus.ERROR:
                    report.failed.append((printable(item.path), item.error or "error"))
                    if on_problem:
                        on_problem(f"skipped {item.error}")
                elif item.status is PhotoStatus.NO_FACE:
                    report.no_face.append(str(item.path))
                    if on_problem:
                        on_problem(f"no face found in {item.path}")
                report.faces += len(item.faces)
                report.indexed += item.status is not PhotoStatus.ERROR

        bar = tqdm(work, desc="indexing", unit="photo", disable=not progress)
        last_checkpoint = _clock()
        try:
            for path, key in bar:
                item = self._examine(path, key, known, report)
                if item is not None and item.status is PhotoStatus.INDEXED:
                    to_describe.append((item, path))
                elif item is not None:
                    settle([item])
                if len(to_describe) >= self.commit_every:
                    settle(self._describe(to_describe))
                    to_describe = []
                    bar.set_postfix(faces=report.faces)
                if (len(pending) >= self.commit_every
                        and _clock() - last_checkpoint >= self.checkpoint_seconds):
                    batch, pending = pending, []
                    self._write(batch)
                    last_checkpoint = _clock()
            settle(self._describe(to_describe))
        except KeyboardInterrupt:
            self._write(pending)  # keep what was described; the rest is done by the next run
            raise
        self._write(pending)
        report.seconds = time.time() - started
        return report

    def _examine(self, path: Path, key: str | None, known: dict, report: IndexReport) -> _Pending | None:
        """A new or changed photo to describe (status INDEXED), one that cannot be read (ERROR),
        or None if it is unchanged. Files that failed before are tried again (the cause, a
        permission say, may be gone), and photos another model described are described again."""
        shown = printable(path)
        if key is None:
            return _Pending(path, "", 0, 0.0, False, PhotoStatus.ERROR,
                            f"{shown}: symbolic link loop", record=False)
        existing = known.get(key)

        def failed(reason: str, size: int = 0, mtime: float = 0.0) -> _Pending:
            return _Pending(Path(key), "", size, mtime, existing is not None, PhotoStatus.ERROR,
                            f"{shown}: {reason}")

        try:
            info = path.stat()
        except OSError as error:
            if path.is_symlink() and error.errno == errno.ENOENT:
                return failed(f"broken symbolic link (to {printable(os.readlink(path))})")
            return failed(error.strerror or "cannot be read")
        if not stat.S_ISREG(info.st_mode):
            return failed("not a regular file", info.st_size, info.st_mtime)
        if printable(str(path)) != str(path):
            return failed("file name is not valid UTF-8 (rename the file to index it)",
                          info.st_size, info.st_mtime)
        retry = existing is not None and (existing.status == PhotoStatus.ERROR or (
            existing.status == PhotoStatus.INDEXED and existing.model_version != self.model_version))
        if existing and not retry and existing.size == info.st_size and existing.mtime == info.st_mtime:
            report.unchanged += 1
            return None
        try:
            digest = content_hash(path)
        except OSError as error:
            return failed(error.strerror or "cannot be read", info.st_size, info.st_mtime)
        if existing and not retry and existing.content_hash == digest:
            with self.store.session() as session:
                self.store.update_file_stat(session, key, info.st_size, info.st_mtime)
            report.unchanged += 1
            return None
        return _Pending(Path(key), digest, info.st_size, info.st_mtime, existing is not None,
                        PhotoStatus.INDEXED)

    def _describe(self, items: list[tuple[_Pending, Path]]) -> Iterator[_Pending]:
        """Describe photos examined as new or changed, yielding each as soon as it is (so an
        interrupted run keeps what was done); a photo that fails is marked, not fatal."""
        results = self.describe([path for _, path in items]) if items else ()
        for (item, path), result in zip(items, results):
            if isinstance(result, ImageError):
                item.status, item.error = PhotoStatus.ERROR, printable(str(result))
            elif isinstance(result, Exception):
                item.status = PhotoStatus.ERROR
                item.error = f"{printable(path)}: could not be described ({printable(_first_line(result))})"
            else:
                item.size_px = result[0]
                item.faces = [dataclasses.replace(face, crop=_DROPPED, masks=_DROPPED)
                              for face in result[1]]
                if not item.faces:
                    item.status = PhotoStatus.NO_FACE
            yield item

    def _remove_vanished(self, known: dict, on_disk: set[str], roots: list) -> int:
        """Drop stored photos under `roots` whose files are gone."""
        prefixes = [str(Path(root).resolve()) for root in roots]
        gone = [path for path in known if path not in on_disk and not Path(path).exists()
                and any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)]
        if gone:  # their vectors leave the files at the next checkpoint; queries skip them meanwhile
            self.spaces.remove(self.store.delete_photos(gone))
        return len(gone)

    def _write(self, pending: list[_Pending]) -> None:
        """Write a checkpoint: reserve the vector ids of these photos' faces, add their vectors
        to every space and save the changed spaces (atomically, each file), then commit all
        their SQL rows (a row per face and space in face_vectors) in one transaction. A kill
        between the steps leaves vectors without rows, which `reconcile` drops."""
        pending = [item for item in pending if item.record]
        ids: list[int] = []
        rows = []
        for item in pending:
            faces = []
            for face in item.faces:
                ids.append(self.next_id)
                faces.append({"x0": face.bbox[0], "y0": face.bbox[1], "x1": face.bbox[2],
                              "y1": face.bbox[3], "landmarks": face.landmarks,
                              "det_score": face.score, "attributes": face.attributes,
                              "vector_id": self.next_id,
                              "vectors": {name: self.next_id for name in self.spaces}})
                self.next_id += 1
            rows.append((item, faces))
        if ids:
            self.store.set_meta(NEXT_VECTOR_ID, str(self.next_id))
        replaced = [str(item.path) for item in pending if item.replaces]
        described = [face for item in pending for face in item.faces]
        with self.store.session() as session:
            self.spaces.remove(self.store.delete_photos(replaced, session) if replaced else {})
            if ids:
                for name, space in self.spaces.items():
                    space.add(np.array(ids, dtype=np.int64),
                              np.stack([FACE_VECTORS[name](face) for face in described]))
                    space.model_version = self.model_version
            self.spaces.save()
            for item, faces in rows:
                width, height = item.size_px or (None, None)
                self.store.add_photo(session, path=item.path, content_hash=item.digest,
                                     size=item.size, mtime=item.mtime, status=item.status,
                                     error=item.error, width=width, height=height,
                                     model_version=self.model_version, faces=faces)


def reconcile(store: Store, spaces: Spaces) -> tuple[int, int]:
    """Make SQL and FAISS agree after an interrupted run, space by space: drop vectors without
    rows, and photos with a face whose vector is missing from a space (they are described again
    by the next run, as new photos); then save the spaces that changed. Call it under the index
    lock. Returns (vectors, photos) dropped."""
    dropped_vectors = 0
    photos: set[str] = set()
    for name, space in spaces.items():
        stored = store.all_vector_ids(name)
        dropped_vectors += space.sync_ids(stored)
        missing = np.setdiff1d(np.asarray(stored, dtype=np.int64), space.ids())
        photos.update(store.photos_of_vectors(name, missing.tolist()))
    if photos:
        spaces.remove(store.delete_photos(photos))
    if dropped_vectors or photos:
        spaces.save()
    return dropped_vectors, len(photos)
