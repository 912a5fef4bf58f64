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
drops vectors without rows in every space, and puts back from SQL (which holds every vector,
see repair.py) any vector a space lacks (a FAISS file lost or restored from an older copy); a
photo whose vector is in neither is dropped, to be described again. Queries never change SQL:
they over-fetch by the number of vectors without rows and skip them (and a FAISS file they find
missing or damaged is rebuilt from SQL, saved only when no writer holds the lock).

Photos are known by content as well as by path: see `Indexer.run` for moves, copies (aliases)
and re-encoded copies (TWIN_SCORE; never a truncated file), and `_drop_vanished` for missing
files. Faces described before a newer stored number existed (expressions, pixel attributes,
quality: `refresh_keys`) get it by their photo being described again, written into their rows
in place (ids, vectors and persons kept). Vector
ids are reserved in SQL before they reach FAISS and never reused, so a vector id never names
another face. No single file stops a run: hostile files (empty, truncated, not images, links to
nowhere or in loops, FIFOs, names that are not UTF-8, decompression bombs) are recorded as failed
with a one-line reason, and tried again on the next run.

Videos go the same way (the describer gives one face per track, pipeline.tracking): a video is
one row of `photos` (media "video") whose faces carry their track's times, written at a
checkpoint like a photo's, so a changed video's tracks are replaced, a deleted one's dropped, and
a run killed during a video describes it again next time. A video that cannot be decoded
(video.VideoError: empty, truncated, audio only, unsupported codec) is recorded as failed with
its one-line reason.
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

from facesearch.errors import counted, first_line
from facesearch.settings import DEFAULTS
from facesearch.pipeline.images import ImageError, truncated_at_end
from facesearch.pipeline.sources import content_hash, media_kind, photo_key, printable
from facesearch.pipeline.video import VideoError, probe
from facesearch.pipeline.faces import Face
from facesearch.index.people import PeopleUpdate
from facesearch.index.repair import restore_from_sql
from facesearch.index.store import PhotoAlias, PhotoStatus, Store
from facesearch.index.spaces import MASTER, Spaces
from facesearch.spec import IDENTITY


@dataclass
class IndexReport:
    """What an indexing run did."""

    photos: int = 0        # image and video files found
    videos: int = 0        # of them, videos (each face of a video is a track: pipeline.tracking)
    video_seconds: float = 0.0  # length of the videos described
    video_work: float = 0.0  # wall seconds spent describing them (Indexer._describe), photos' time not in it
    indexed: int = 0       # new or changed photos described
    unchanged: int = 0
    removed: int = 0       # photos gone from disk, dropped from the index
    faces: int = 0         # faces added
    moved: int = 0         # indexed content found at a new path (the old one gone): path updated
    duplicates: int = 0    # files whose content is an indexed photo's: recorded as its other paths
    committed: int = 0     # photos (rows) written by this run
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    missing: list[str] = field(default_factory=list)  # indexed photos gone, outside the roots
    partial: list[str] = field(default_factory=list)  # truncated photos read as far as they go
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): media not read
    seconds: float = 0.0
    people: PeopleUpdate | None = None  # what the people update after the run did (index.people)
    refreshed: int = 0     # unchanged photos described again to fill in newer numbers (Indexer)

    def summary(self) -> str:
        """One line (two when indexed photos are missing from disk elsewhere)."""
        rate = self.faces / self.seconds if self.seconds else 0.0
        with_faces = self.indexed - len(self.no_face)  # `indexed` counts every photo described
        found = (counted(self.photos, "photo") if not self.videos else
                 f"{counted(self.photos - self.videos, 'photo')} and {counted(self.videos, 'video')}")
        failed = f"{len(self.failed)} failed" + (" (`facesearch info` lists why)" if self.failed else "")
        line = (f"{found}: {with_faces} indexed ({counted(self.faces, 'face')}, "
                f"{rate:.1f} faces/s), {self.unchanged} unchanged, {self.removed} removed, "
                f"{len(self.no_face)} without a face, {failed}")
        if self.video_seconds:
            line += (f", {self.video_seconds:.0f} s of video "
                     f"({self.video_seconds / max(self.video_work, 1e-9):.1f}x real time)")
        if self.moved or self.duplicates:
            line += (f", {self.moved} moved, "
                     f"{counted(self.duplicates, 'copy of an indexed photo', 'copies of indexed photos')}")
        if self.people is not None and (self.people.assigned or self.people.created):
            line += (f", {counted(self.people.assigned, 'face')} joined known people, "
                     f"{self.people.created} new {'person' if self.people.created == 1 else 'people'}")
        if self.refreshed:
            line += (f", {counted(self.refreshed, 'photo')} described again to add expressions, "
                     "pixel attributes and quality")
        if self.skipped:
            line += f", {len(self.skipped)} not read ({self.skipped[0][1]}, e.g. {self.skipped[0][0]})"
        if self.missing:
            line += (f"\n{counted(len(self.missing), 'indexed photo')} elsewhere "
                     f"{'is' if len(self.missing) == 1 else 'are'} missing from disk, e.g. "
                     f"{self.missing[0]}: `facesearch index --prune` drops them, `facesearch relocate "
                     f"OLD NEW` if their folder moved")
        return line


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C during indexing, after what was described was written; the message says how
    much was saved and how to resume."""


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
    partial: bool = False  # truncated: read as far as it goes
    twin_of: str | None = None  # a re-encoded copy of the photo stored at this path
    twin_unwritten: bool = False  # ... described earlier in this run, not yet written
    media: str = "photo"  # or "video": its faces are tracks (Face.track)
    duration: float | None = None  # a video's length, seconds
    elapsed: float = 0.0  # a video's: wall seconds its describing took (Indexer._describe)
    #: An indexed, unchanged photo described again only to fill in its faces' newer stored
    #: numbers (Indexer refresh_keys): nothing of it is replaced; `updates` are the merged
    #: attributes by face id, written in place at the checkpoint.
    refresh: bool = False
    updates: dict[int, dict] = field(default_factory=dict)


#: Meta key of the refresh keys (Indexer refresh_keys, comma-joined) photos were last looked
#: through for: set by the run that described every photo found lacking them again, so a face
#: the describer no longer finds in its photo is not described again on every run (photos
#: under folders a run was not given are found by the next run that looks).
REFRESHED_KEYS = "refreshed_keys"

#: Meta key of the smallest vector id never handed out: ids are not reused, even after a crash
#: or a removal, so a reader holding an older FAISS file never pairs a vector with a new row.
NEXT_VECTOR_ID = "next_vector_id"

#: How a described face gives its vector in each vector space (spaces.SPACES): space name ->
#: Face -> vector (dim,). A face has the same vector id in every space (one id counter).
FACE_VECTORS: dict[str, Callable[[Face], np.ndarray]] = {MASTER: lambda face: face.vector,
                                                         IDENTITY: lambda face: face.identity}

#: A newly described photo is a re-encoded copy (another file of an indexed photo: resaved,
#: recompressed, resized) when it has as many faces as that photo, each matching one of its faces
#: with a score of at least TWIN_SCORE (of 7; re-encodes of CelebA photos measured 6.64-7.0,
#: different photos at most 3.5) at the same place (boxes within TWIN_BOX of the photo's size),
#: and the same aspect ratio (within TWIN_ASPECT). It is then recorded as that photo's other path.
TWIN_SCORE = 6.5
TWIN_BOX = 0.03
TWIN_ASPECT = 0.01

#: The clock checkpoints are timed with (seconds; tests replace it).
_clock: Callable[[], float] = time.monotonic


class Indexer:
    """One indexing run over a store and the vector spaces of an index."""

    def __init__(self, store: Store, spaces: Spaces,
                 describe: Callable[[list[Path]], Iterable[tuple[tuple[int, int] | None, list[Face]] | Exception]],
                 model_version: str, commit_every: int = DEFAULTS.commit_every,
                 checkpoint_seconds: float = DEFAULTS.checkpoint_seconds,
                 refresh_keys: Iterable[str] = ()):
        """`describe` maps photo paths to (original size, faces) or the exception each raised,
        in order (pipeline.describer.Describer.stream: several photos are described at once), with the
        model `model_version`; photos another model described are described again.
        `refresh_keys` are stored numbers every face `describe` gives carries
        (describer.DESCRIBED_KEYS): an indexed photo with a face that lacks one (described before
        it existed) is described again and its faces' attributes filled in, in place (see
        `run`); a describer that promises none (a test's) refreshes nothing. Photos are
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
        self.refresh_keys = tuple(sorted(refresh_keys))
        reserved = store.get_meta(NEXT_VECTOR_ID)
        self.next_id = max(store.next_vector_id(),
                           *(int(space.ids().max(initial=-1)) + 1 for space in spaces.values()),
                           int(reserved) if reserved and reserved.isdigit() else 0)

    def run(self, roots: list[str | os.PathLike], files: list[Path], progress: bool = True,
            on_problem: Callable[[str], None] | None = None,
            problems: Iterable[tuple[str, str]] = (), prune: bool = False) -> IndexReport:
        """Index `files` (the images found under `roots`, as the user named them: links are
        followed but recorded under these paths); photos under the roots that vanished from
        disk are dropped, and with `prune` those anywhere else too (else they are counted in
        `report.missing`). A file whose content is already indexed is a move (its stored path
        is gone: the photo keeps its faces, under the new path) or another path of that photo
        (an alias), never described again, unless it is due anyway (another model, a vector
        space it lacks: then at its new path, in this run). An unchanged photo whose faces lack
        a refresh key is described again and only their attributes filled in (report.refreshed).
        `problems` are (folder, reason) found while listing the roots. No single file stops
        the run: each bad one is recorded with its reason. Ctrl-C writes what was described and
        raises IndexInterrupted."""
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
                keyed.setdefault(key, path)
        report.photos = len(keyed) + len(loops)
        report.videos = sum(media_kind(path) == "video" for path in keyed.values())
        known = {photo.path: photo for photo in self.store.photos()}
        # photos indexed before one of the spaces existed are described again to fill it
        self._lacking = set().union(*(self.store.photos_lacking_space(name)
                                      for name in self.spaces if name != MASTER))
        # photos whose faces lack a newer stored number (emotions, pixel attributes, quality):
        # described again and filled in, in place; looked for once per set of keys
        refreshed = ",".join(self.refresh_keys)
        self._stale = (self.store.photos_lacking_keys(self.refresh_keys)
                       if self.store.get_meta(REFRESHED_KEYS) != refreshed else set())
        self._stale_seen: set[str] = set()  # of them, those this run described again
        self._moved_from: dict[str, str] = {}  # new path -> stored path, of photos moved this run
        self._aliases = self.store.aliases()
        self._new_hashes: dict[str, str] = {}   # content hash -> key, of photos described this run
        self._deferred_aliases: list[tuple[str, str, int, float]] = []
        self._unwritten: list[_Pending] = []  # photos described since the last write (twins)
        work = [(path, key) for key, path in keyed.items()] + [(path, None) for path in loops]
        # files before links to them, so that of two paths to one content the file's is the
        # photo's path and the link's its other path
        work.sort(key=lambda item: (item[0].is_symlink(), str(item[0])))
        pending: list[_Pending] = []  # settled, waiting to be written
        to_describe: list[tuple[_Pending, Path]] = []

        def settle(items: Iterable[_Pending]) -> None:
            for item in items:
                if item.twin_of is not None:  # another file of an indexed photo
                    if item.twin_unwritten:  # recorded once its photo is written, at the end
                        self._deferred_aliases.append((str(item.path), item.twin_of, item.size, item.mtime))
                    else:
                        self.store.add_alias(item.path, item.twin_of, item.size, item.mtime)
                    report.duplicates += 1
                    continue
                pending.append(item)
                if item.status is PhotoStatus.ERROR:
                    report.failed.append((printable(item.path), item.error or "error"))
                    if on_problem:
                        on_problem(f"skipped {item.error}")
                elif item.status is PhotoStatus.NO_FACE:
                    report.no_face.append(str(item.path))
                    if on_problem:
                        on_problem(f"no face found in {item.path}")
                elif item.refresh:  # filled in; not counted as indexed
                    report.refreshed += bool(item.updates)
                    continue
                elif item.partial:
                    report.partial.append(str(item.path))
                    if on_problem:
                        on_problem(f"{item.path} is truncated: read as far as it goes (recorded as partial)")
                report.faces += len(item.faces)
                report.indexed += item.status is not PhotoStatus.ERROR
                report.video_seconds += item.duration or 0.0
                report.video_work += item.elapsed

        # The bar moves as each photo is done: examined and left as it is, or described (a
        # photo to describe waits for its batch, so examining alone would reach 100% first).
        bar = tqdm(total=len(work), desc="indexing", unit="photo", disable=not progress)

        def described(items: Iterable[_Pending]) -> Iterator[_Pending]:
            for item in items:
                bar.set_postfix(faces=report.faces, refresh=False)
                bar.update(1)
                yield item

        last_checkpoint = _clock()
        try:
            for path, key in work:
                item = self._examine(path, key, known, report)
                if item is not None and item.status is PhotoStatus.INDEXED:
                    to_describe.append((item, path))
                else:
                    bar.update(1)
                    if item is not None:
                        settle([item])
                if len(to_describe) >= self.commit_every:
                    settle(described(self._describe(to_describe)))
                    to_describe = []
                if (len(pending) >= self.commit_every
                        and _clock() - last_checkpoint >= self.checkpoint_seconds):
                    batch, pending = pending, []
                    self._write(batch)
                    self._unwritten = []  # every photo described so far is in the index now
                    report.committed += sum(item.record for item in batch)
                    last_checkpoint = _clock()
            settle(described(self._describe(to_describe)))
            bar.set_postfix(faces=report.faces)
            bar.close()
        except KeyboardInterrupt:
            self._write(pending)  # keep what was described; the rest is done by the next run
            report.committed += sum(item.record for item in pending)
            raise IndexInterrupted(
                f"interrupted: {report.committed} photo(s) described in this run are saved in the "
                f"index; run the same `facesearch index` again to do the rest") from None
        report.removed = self._drop_vanished(set(keyed), roots, prune, report)
        self._write(pending, final=True)
        report.committed += sum(item.record for item in pending)
        if self.store.get_meta(REFRESHED_KEYS) != refreshed and self._stale <= self._stale_seen:
            self.store.set_meta(REFRESHED_KEYS, refreshed)  # every one done: not looked for again
        for alias in self._deferred_aliases:  # copies found beside a photo described this run
            self.store.add_alias(*alias)
        report.seconds = time.time() - started
        return report

    def _examine(self, path: Path, key: str | None, known: dict, report: IndexReport) -> _Pending | None:
        """A new or changed photo to describe (status INDEXED), one that cannot be read (ERROR),
        or None if nothing is to be described: it is unchanged, it moved (its content is stored
        under a path that is gone), or it is another path of an indexed photo. Files that failed
        before are tried again (the cause, a permission say, may be gone), and photos another
        model described are described again, and so are photos whose faces lack a vector in a
        space (indexes made before the identity space), moved or not; an unchanged photo whose
        faces lack a refresh key is described again to fill it in (`refresh`)."""
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
            existing.status == PhotoStatus.INDEXED and (existing.model_version != self.model_version
                                                        or key in self._lacking)))
        if existing and not retry and existing.size == info.st_size and existing.mtime == info.st_mtime:
            report.unchanged += 1
            return self._refresh(key, existing, info)
        alias = self._aliases.get(key) if existing is None else None
        if alias is not None and alias.size == info.st_size and alias.mtime == info.st_mtime:
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
            return self._refresh(key, existing, info)
        if existing is None and self._known_content(key, digest, info, known, report):
            moved = known.get(key)
            old = self._moved_from.get(key)
            if moved is None or old is None:  # another path of a photo still at its own
                return None
            if old not in self._lacking and moved.model_version == self.model_version:
                return self._refresh(key, moved, info, old)
            existing = moved  # moved here, and due to be described again (a vector space it
            #                   lacks, another model): now, not on the next run
        if digest in self._new_hashes and existing is None:
            self._deferred_aliases.append((key, self._new_hashes[digest], info.st_size, info.st_mtime))
            report.duplicates += 1
            return None
        self._new_hashes.setdefault(digest, key)
        return _Pending(Path(key), digest, info.st_size, info.st_mtime, existing is not None,
                        PhotoStatus.INDEXED)

    def _known_content(self, key: str, digest: str, info: os.stat_result, known: dict,
                       report: IndexReport) -> bool:
        """Whether a file not stored at `key` holds content already indexed: moved there from a
        path that is gone (the photo's path becomes `key`), or another path of a photo that
        is still at its own (recorded as an alias). Aliases of other content at `key` go."""
        if key in self._aliases:
            self.store.delete_aliases([key])  # it was another photo's copy; now it is not
            self._aliases.pop(key)
        candidates = [photo for photo in self.store.photos_with_hash(digest)
                      if photo.status != PhotoStatus.ERROR and photo.path != key]
        if not candidates:
            return False
        gone = [photo for photo in candidates if not os.path.lexists(photo.path)]
        if gone:
            self.store.move_photo(gone[0].path, key, info.st_size, info.st_mtime)
            known.pop(gone[0].path, None)
            known[key] = gone[0]
            self._moved_from[key] = gone[0].path
            report.moved += 1
            return True
        self.store.add_alias(key, candidates[0].path, info.st_size, info.st_mtime)
        report.duplicates += 1
        return True

    def _refresh(self, key: str, photo, info: os.stat_result, stored_as: str | None = None
                 ) -> _Pending | None:
        """An unchanged indexed photo (at `key`; stored as `stored_as` when the run found it
        moved there) to describe again because a face of it lacks a newer stored number
        (refresh_keys), else None."""
        if (stored_as or key) not in self._stale or photo.status != PhotoStatus.INDEXED:
            return None
        self._stale_seen.add(stored_as or key)
        return _Pending(Path(key), photo.content_hash, info.st_size, info.st_mtime, False,
                        PhotoStatus.INDEXED, refresh=True)

    def _twin_of(self, item: _Pending) -> str | None:
        """The stored path of the indexed photo `item` (just described) is a re-encoded copy
        of (see TWIN_SCORE), or None. Only photos already written are compared."""
        vectors = np.stack([face.vector for face in item.faces])
        scores, ids = self.spaces.master.search(vectors, 1)
        if ids.shape[1] == 0 or (scores[:, 0] < TWIN_SCORE).any() or item.size_px is None:
            return None
        found = self.store.faces_by_vector_ids(ids[:, 0].tolist())
        if len(found) != len(set(ids[:, 0].tolist())) or len(found) != len(item.faces):
            return None
        photos = {photo.path: photo for _, photo in found.values()}
        if len(photos) != 1:
            return None
        photo = next(iter(photos.values()))
        stored = self.store.photo_by_path(photo.path)
        if stored is None or len(stored.faces) != len(item.faces):
            return None
        rows = [found[vector_id][0] for vector_id in ids[:, 0].tolist()]
        if not _same_framing(item.size_px, [face.bbox for face in item.faces],
                             (photo.width, photo.height), [(r.x0, r.y0, r.x1, r.y1) for r in rows]):
            return None
        return photo.path

    def _describe(self, items: list[tuple[_Pending, Path]]) -> Iterator[_Pending]:
        """Describe photos examined as new or changed, yielding each as soon as it is (so an
        interrupted run keeps what was done); a photo that fails is marked, not fatal. A
        video's `elapsed` is the wall time the describer took to give it (the wait for its
        result): Describer.stream describes a video alone, after the photos before it are
        given, so that is the video's own decoding, detection, tracking and describing
        (the first item also loads the models; over Ray, chunks are described in parallel and
        it is only the wait)."""
        results = _timed(iter(self.describe([path for _, path in items]) if items else ()))
        for (item, path), (waited, result) in zip(items, results):
            if item.refresh:  # only its faces' attributes change; a failure changes nothing
                if not isinstance(result, Exception):
                    item.updates = self._filled_in(str(item.path), result[1])
                yield item
                continue
            if isinstance(result, (ImageError, VideoError)):
                item.status, item.error = PhotoStatus.ERROR, printable(str(result))
            elif isinstance(result, Exception):
                item.status = PhotoStatus.ERROR
                item.error = f"{printable(path)}: could not be described ({printable(first_line(result, with_type=True))})"
            else:
                item.size_px = result[0]
                item.faces = [dataclasses.replace(face, crop=_DROPPED, masks=_DROPPED)
                              for face in result[1]]
                if media_kind(path) == "video":  # faces are tracks; never a photo's copy
                    item.media, item.duration, item.elapsed = "video", _duration(path), waited
                else:
                    item.partial = truncated_at_end(path)
                # a truncated file is never a copy: its top may match an indexed photo (the
                # faces there, the size in its header), the rest is missing
                if item.faces and not item.replaces and item.media == "photo" and not item.partial:
                    item.twin_of = self._twin_of(item)
                    if item.twin_of is None:
                        twin = next((other for other in self._unwritten if _twins(item, other)), None)
                        if twin is not None:
                            item.twin_of, item.twin_unwritten = str(twin.path), True
                        elif not item.refresh:
                            self._unwritten.append(item)
                if not item.faces and item.partial:
                    item.status = PhotoStatus.ERROR
                    item.error = (f"{printable(path)}: truncated file (the part that is there "
                                  "shows no face)")
                elif not item.faces:
                    item.status = PhotoStatus.NO_FACE
            yield item

    def _filled_in(self, key: str, faces: list[Face]) -> dict[int, dict]:
        """{face id: attributes} of the stored faces of the photo at `key` that lack a
        refresh key, each filled in from the newly described face at the same place (box IoU
        at least REFRESH_IOU, the best): stored values are kept, only missing numbers added.
        Faces found nowhere now stay as they are."""
        stored = self.store.photo_by_path(key)
        if stored is None or not faces:
            return {}
        boxes = np.array([face.bbox for face in faces], np.float64)
        updates = {}
        for row in stored.faces:
            if all(name in row.attributes for name in self.refresh_keys):
                continue
            overlap = _iou(np.array([row.x0, row.y0, row.x1, row.y1], np.float64), boxes)
            best = int(np.argmax(overlap))
            if overlap[best] >= REFRESH_IOU:
                updates[row.id] = faces[best].attributes | row.attributes
        return updates

    def _drop_vanished(self, on_disk: set[str], roots: list, prune: bool,
                       report: IndexReport) -> int:
        """Drop stored photos under `roots` (and, with `prune`, anywhere) whose files are gone;
        a gone photo with another path still on disk moves there instead, and other paths
        (aliases) that are gone are forgotten. Other gone photos are listed in
        report.missing. Returns how many photos were dropped."""
        prefixes = [os.path.abspath(root) for root in roots]

        def under_roots(path: str) -> bool:
            return any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)

        aliases = self.store.aliases()  # a gone alias is forgotten wherever it was: the photo stays
        gone_aliases = [path for path in aliases if not os.path.lexists(path)]
        self.store.delete_aliases(gone_aliases)
        live_alias: dict[int, PhotoAlias] = {}
        for path, alias in aliases.items():
            if path not in gone_aliases:
                live_alias.setdefault(alias.photo_id, alias)
        gone: list[str] = []
        for photo in self.store.photos():
            if photo.path in on_disk or os.path.lexists(photo.path):
                continue
            if photo.id in live_alias:  # another path of it is still there: it lives on there
                alias = live_alias.pop(photo.id)
                self.store.move_photo(photo.path, alias.path, alias.size, alias.mtime)
            elif prune or under_roots(photo.path):
                # (one elsewhere is kept, also when it lacks a vector space: a drive that is not
                # mounted is no reason to forget it; the match modes skip its faces meanwhile)
                gone.append(photo.path)
            else:
                report.missing.append(photo.path)
        if gone:  # their vectors leave the files at the next checkpoint; queries skip them meanwhile
            self.spaces.remove(self.store.delete_photos(gone))
        return len(gone)

    def _write(self, pending: list[_Pending], final: bool = False) -> None:
        """Write a checkpoint: reserve the vector ids of these photos' faces, add their vectors
        to every space and save the changed spaces (atomically, each file), then commit all
        their SQL rows (a row per face and space in face_vectors) in one transaction. A kill
        between the steps leaves vectors without rows, which `reconcile` drops. A space due
        for (re)training (Flat past the IVF threshold, IVF grown 4x) is rebuilt only at the
        `final` checkpoint of a run, so checkpoints never stall on training."""
        updates = {face_id: attributes for item in pending if item.refresh
                   for face_id, attributes in item.updates.items()}
        pending = [item for item in pending if item.record and not item.refresh]
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
                              "vectors": {name: self.next_id for name in self.spaces},
                              "embeddings": {name: FACE_VECTORS[name](face) for name in self.spaces},
                              **_track_columns(face)})
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
                    space.defer_rebuild = True  # retrained at the end of the run (final)
                    space.add(np.array(ids, dtype=np.int64),
                              np.stack([FACE_VECTORS[name](face) for face in described]))
                    space.defer_rebuild = False
                    space.model_version = self.model_version
            if final:
                for space in self.spaces.values():
                    space.rebuild_if_due()
            self.spaces.save()
            self.store.update_attributes(session, updates)  # faces filled in, in place
            for item, faces in rows:
                width, height = item.size_px or (None, None)
                self.store.add_photo(session, path=item.path, content_hash=item.digest,
                                     size=item.size, mtime=item.mtime, status=item.status,
                                     error=item.error, width=width, height=height,
                                     model_version=self.model_version, partial=item.partial,
                                     faces=faces, media=item.media, duration=item.duration)


#: A refreshed photo's stored face takes the attributes of the newly described face whose box
#: overlaps it most, at this IoU or more (the same model finds the same boxes: IoU ~1).
REFRESH_IOU = 0.5


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) intersection over union of one [x0, y0, x1, y1] box with each of boxes (n, 4)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _track_columns(face: Face) -> dict:
    """A video face's track columns (store.FaceRow: track_id, track_start, track_end, frame_time,
    track_frames); {} for a photo's face."""
    if face.track is None:
        return {}
    return {"track_id": face.track.track_id, "track_start": face.track.start,
            "track_end": face.track.end, "frame_time": face.track.time,
            "track_frames": face.track.frames}


def _timed(results: Iterator) -> Iterator[tuple[float, object]]:
    """(wall seconds `next` took, item) for each item of `results`: the time spent producing
    it, not the time the consumer spent between items."""
    while True:
        began = time.perf_counter()
        try:
            result = next(results)
        except StopIteration:
            return
        yield time.perf_counter() - began, result


def _duration(path: Path) -> float | None:
    """A video's length in seconds (video.probe), None if it cannot be read now."""
    try:
        return round(probe(path).duration, 3)
    except VideoError:
        return None


def reconcile(store: Store, spaces: Spaces) -> tuple[int, int]:
    """Make SQL and FAISS agree after an interrupted run, space by space: drop vectors without
    rows; put back from SQL the vectors a space lacks (SQL is the source of truth, see
    repair.py), and drop the photos whose vector neither holds (they are described again by
    the next run, as new photos); then save the spaces that changed. Call it under the index
    lock. Returns (vectors, photos) dropped."""
    dropped_vectors = 0
    photos: set[str] = set()
    restored = 0
    for name, space in spaces.items():
        stored = store.all_vector_ids(name)
        dropped_vectors += space.sync_ids(stored)
        put_back, lost = restore_from_sql(store, space, stored)
        restored += put_back
        photos.update(store.photos_of_vectors(name, lost.tolist()))
    if photos:
        spaces.remove(store.delete_photos(photos))
    if dropped_vectors or photos or restored:
        spaces.save()
    return dropped_vectors, len(photos)


def _twins(item: _Pending, other: _Pending) -> bool:
    """Whether two photos described in this run are re-encoded copies of one photo, by the rules
    `Indexer._twin_of` applies to stored ones: as many faces, each at least TWIN_SCORE (the sum
    of its 7 region cosines) with the face at its place (box within TWIN_BOX of the photo's
    sides), and the same aspect ratio within TWIN_ASPECT."""
    if (len(item.faces) != len(other.faces) or item.size_px is None or other.size_px is None
            or other.media != "photo"):
        return False
    if any(float(np.dot(mine.vector, theirs.vector)) < TWIN_SCORE  # both largest first
           for mine, theirs in zip(item.faces, other.faces)):
        return False
    return _same_framing(item.size_px, [face.bbox for face in item.faces],
                         other.size_px, [face.bbox for face in other.faces])


def _same_framing(size: tuple, boxes: list, other_size: tuple, other_boxes: list) -> bool:
    """Whether two photos (width, height) in pixels have the same aspect ratio within
    TWIN_ASPECT and their faces' boxes (x0, y0, x1, y1, pair by pair) lie at the same places
    within TWIN_BOX of the photo's sides: the framing part of the twin rules."""
    (width, height), (w, h) = size, other_size
    if not (width and height and w and h) or abs(width / height - w / h) > TWIN_ASPECT * width / height:
        return False
    return all(np.abs(np.asarray(a, np.float64) / [width, height, width, height]
                      - np.asarray(b, np.float64) / [w, h, w, h]).max() <= TWIN_BOX
               for a, b in zip(boxes, other_boxes))
