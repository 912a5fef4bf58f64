"""The Python API: `FaceSearch(index_dir).index(...)`, `.query(...)`, `.describe(...)`."""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from . import query as queries
from .config import (DEFAULT_K, DESCRIBE_BATCH, DESCRIBE_THREADS, FAISS_FILENAME, REGIONS, VECTOR_DIM,
                     default_index_dir)
from .errors import FaceSearchError
from .filters import Filter, parse_filter, region_weights, search_filtered, weighted
from .images import load_image
from .indexing import Indexer, IndexReport, find_images, reconcile
from .results import Face, Hit, region_similarities
from .store import Store, database_url
from .text import TextQuery, parse
from .vector_index import VectorIndex


class Hits(list):
    """Search hits, best first, plus what a text query was understood as (`understood`)."""

    understood: TextQuery | None = None

    def to_dicts(self) -> list[dict]:
        """JSON-ready hits; for a text or mixed query each also says what the text was
        understood as (`query`) and how well this face fits each understood class (`fits`)."""
        if self.understood is None:
            return [hit.to_dict() for hit in self]
        query = self.understood.as_dict()
        return [hit.to_dict() | {"query": query, "fits": self.understood.explain(hit.attributes)}
                for hit in self]


class FaceSearch:
    """A face index in a folder: SQL metadata, a FAISS index of master vectors, the model.

    >>> fs = FaceSearch("indexes/default")
    >>> fs.index(["./photos"])
    >>> fs.query(text="black hair, smiling", k=5)
    """

    def __init__(self, index_dir: str | os.PathLike | None = None, db_url: str | None = None):
        self.index_dir = Path(index_dir) if index_dir is not None else default_index_dir()
        self.db_url = db_url

    # --- opening --------------------------------------------------------------------------------
    def _exists(self) -> bool:
        """Whether an index was made here (its FAISS file, and its SQLite file if SQLite)."""
        url = sa.make_url(database_url(self.index_dir, self.db_url))
        sqlite_file = url.database if url.get_backend_name() == "sqlite" else None
        return (self.index_dir / FAISS_FILENAME).exists() and (
            not sqlite_file or Path(sqlite_file).exists())

    @cached_property
    def store(self) -> Store:
        return Store.for_index_dir(self.index_dir, self.db_url)

    @cached_property
    def vectors(self) -> VectorIndex:
        return VectorIndex.open(self.index_dir / FAISS_FILENAME)

    @cached_property
    def _model(self):
        from .model import shipped_model

        return shipped_model()

    def _open_existing(self) -> None:
        if not self._exists():
            raise FaceSearchError(f"no index at {self.index_dir} (run `facesearch index FOLDER` first)")
        if len(self.vectors) == 0:
            raise FaceSearchError(f"the index at {self.index_dir} is empty (no faces indexed yet)")
        if self.store.get_meta("model_version") != self._model.version:
            problem = self._record_model()
            if problem:  # vectors of two models do not compare
                raise FaceSearchError(problem)

    def _record_model(self) -> str | None:
        """Record this model as the index's when it described every indexed photo; otherwise say
        which photos another model described (after an upgrade `index` describes them again)."""
        count, example = self.store.photos_of_other_models(self._model.version)
        if count:
            return (f"{count} indexed photo(s), e.g. {example.path}, were described by model "
                    f"{example.model_version or 'unknown'}, not by this facesearch's {self._model.version}: "
                    f"run `facesearch index` on their folders again to re-describe them")
        self.store.set_meta("model_version", self._model.version)
        return None

    # --- describing -----------------------------------------------------------------------------
    def describe(self, image: str | os.PathLike | np.ndarray) -> list[Face]:
        """Every face in a photo (path or RGB array), largest first, with its master vector."""
        return next(self.describe_many([image]))

    def describe_many(self, images: Iterable[str | os.PathLike | np.ndarray]) -> Iterator[list[Face]]:
        """describe() over many photos, yielding each photo's faces in order, faster: photos are
        decoded and prepared (detection, mesh, masks) on DESCRIBE_THREADS threads while the
        network describes the faces of DESCRIBE_BATCH photos at a time. A bad photo raises."""
        for result in self._describe_stream(images):
            if isinstance(result, Exception):
                raise result
            yield result[1]  # (original size, faces)

    @cached_property
    def _prepare_threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=DESCRIBE_THREADS, thread_name_prefix="facesearch-prepare")

    def _prepare_one(self, image) -> tuple[tuple[int, int] | None, list] | Exception:
        """(original size, prepared faces) of one photo on a preparing thread, or its error."""
        try:
            preprocessor = getattr(self._thread_state, "preprocessor", None)
            if preprocessor is None:  # mediapipe graphs are not shared between threads
                from .preprocess import FacePreprocessor
                preprocessor = self._thread_state.preprocessor = FacePreprocessor()
            if isinstance(image, np.ndarray):
                return None, preprocessor.prepare(image, 1.0)
            photo = load_image(image)
            return photo.original_size, preprocessor.prepare(photo.pixels, photo.scale)
        except Exception as error:  # noqa: BLE001 - handed to the caller, photo by photo
            return error

    @cached_property
    def _thread_state(self) -> threading.local:
        return threading.local()

    def _describe_stream(self, images: Iterable) -> Iterator[tuple[tuple[int, int] | None, list[Face]] | Exception]:
        """Per image, in order: (original size, faces), or the exception describing it raised."""
        pending: deque = deque()

        def finish(count: int) -> Iterator:
            results = [_outcome(pending.popleft()) for _ in range(count)]
            prepared = [result[1] for result in results if not isinstance(result, Exception)]
            try:
                described = iter(self._describe_prepared(prepared))
            except Exception as error:  # noqa: BLE001 - the batch fails, each photo says why
                described = iter([error] * len(prepared))
            for result in results:
                if isinstance(result, Exception):
                    yield result
                else:
                    faces = next(described)
                    yield faces if isinstance(faces, Exception) else (result[0], faces)

        for image in images:
            pending.append(self._prepare_threads.submit(self._prepare_one, image))
            if len(pending) >= 2 * DESCRIBE_BATCH:  # the next batch is prepared meanwhile
                yield from finish(DESCRIBE_BATCH)
        while pending:
            yield from finish(min(DESCRIBE_BATCH, len(pending)))

    def _describe_prepared(self, photos: list[list]) -> list[list[Face]]:
        """The network over the prepared faces of several photos in one batch; faces per photo."""
        prepared = [face for faces in photos for face in faces]
        if not prepared:
            return [[] for _ in photos]
        described = self._model.describe(np.stack([p.crop for p in prepared]),
                                         np.stack([p.grid_masks for p in prepared]))
        faces = [Face(vector=described.vectors[i], bbox=[round(float(v), 1) for v in p.bbox],
                      landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in p.landmarks],
                      attributes=described.attributes(i), score=round(p.score, 4),
                      crop=p.crop, masks=p.masks)
                 for i, p in enumerate(prepared)]
        ends = np.cumsum([len(photo) for photo in photos])
        return [faces[end - len(photo):end] for photo, end in zip(photos, ends)]

    # --- indexing -------------------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike], progress: bool = False,
              on_problem=None) -> IndexReport:
        """Index every image under `paths`: new and changed photos are described, vanished ones
        dropped, unchanged ones skipped. Bad files are recorded and reported, not fatal. One
        index or remove run at a time: another one holding the index raises IndexBusyError."""
        from .lock import IndexLock

        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        problems: list[tuple[str, str]] = []
        files = find_images(paths, on_error=lambda folder, reason: problems.append((folder, reason)))
        # bad paths failed above, before an index folder is made
        with IndexLock(self.index_dir, "index"):
            self.__dict__.pop("vectors", None)  # what is on disk now, not what we read before
            reconcile(self.store, self.vectors)
            self.store.set_meta("dims", str(VECTOR_DIM))
            self.store.set_meta("index_type", self.vectors.index_type)
            report = Indexer(self.store, self.vectors, self._describe_stream, self._model.version).run(
                paths, files, progress=progress, on_problem=on_problem, problems=problems)
            self._record_model()  # photos outside `paths` may still be another model's
            return report

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Take photos (their faces and vectors) out of the index for good; returns how many.
        Vectors go first; with SQLite the deleted rows are overwritten, not just unlinked."""
        if not self._exists():
            raise FaceSearchError(f"no index at {self.index_dir} (run `facesearch index FOLDER` first)")
        from .indexing import photo_key
        from .lock import IndexLock

        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        with IndexLock(self.index_dir, "remove"):
            self.__dict__.pop("vectors", None)
            reconcile(self.store, self.vectors)  # vectors a crashed run left behind go too
            known = {photo.path for photo in self.store.photos()}
            removed = sorted({key for key in map(photo_key, map(Path, paths)) if key in known})
            if not removed:
                return 0
            sqlite = self.store.engine.dialect.name == "sqlite"
            with self.store.session() as session:
                if sqlite:  # zero the deleted rows' bytes instead of leaving them in free pages
                    session.execute(sa.text("PRAGMA secure_delete=ON"))
                self.vectors.remove(self.store.delete_photos(removed, session))
                self.vectors.save()  # vectors first: a kill now leaves rows that reconcile drops
            if sqlite:  # and no older copy of those pages in the write-ahead log
                with self.store.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return len(removed)

    # --- querying -------------------------------------------------------------------------------
    def query(self, image: str | os.PathLike | np.ndarray | None = None, text: str | None = None,
              k: int = DEFAULT_K, face: int = 0, *, weights: Mapping[str, float] | None = None,
              region: str | None = None, where: str | Filter | None = None) -> Hits:
        """The k stored faces most like a photo's face (`face`-th largest), a description, or a
        photo's face changed as the description says; best first.

        `weights` scales regions in the score (`{"hair": 2, "background": 0}`; unnamed regions
        keep 1) and `region="hair"` ranks by one region alone; each hit's `regions` still holds
        the plain per-region similarities. `where` keeps only the faces that meet a filter
        (facesearch.filters), e.g. "male < 0.5 and smiling > 0.5" or "path ~ '*/2019/*'"; k hits
        come back whenever k faces match."""
        if image is None and text is None:
            raise FaceSearchError("give an image, a text, or both to query")
        if k < 1:
            raise FaceSearchError(f"k must be at least 1 (got {k})")
        block_weights = region_weights(weights, region)
        restriction = parse_filter(where) if isinstance(where, str) else where
        understood = None
        if text is not None:
            if not text.strip():
                raise FaceSearchError("the text query is empty")
            understood = parse(text)
            if not understood.terms:
                raise FaceSearchError(f"nothing face-related was understood in {text!r}")
        self._open_existing()
        centres = self._model.centres
        if image is not None:
            faces = self.describe(image)
            if not faces:
                raise FaceSearchError(f"no face found in {image if not isinstance(image, np.ndarray) else 'the image'}")
            if not 0 <= face < len(faces):
                raise FaceSearchError(f"--face {face} is out of range: the image has {len(faces)} face(s)")
            vector = faces[face].vector
            if understood is not None:
                vector = queries.mixed_vector(vector, understood.terms, centres)
        else:
            vector = queries.text_vector(understood.terms, centres)
        text_only = image is None
        pool = queries.pool_size(k) if understood is not None else k
        searched = weighted(vector.astype(np.float32), block_weights)
        if restriction is None:
            # vectors left without rows by an interrupted run take places in FAISS's top k
            orphans = max(0, len(self.vectors) - self.store.counts()[1])
            scores, ids = self.vectors.search(searched[None], pool + orphans)
            scores, ids = scores[0], ids[0]
        else:
            found = search_filtered(self.store, self.vectors, searched, pool, restriction)
            scores, ids = found.scores, found.ids
        rows = self.store.faces_by_vector_ids(ids.tolist())
        candidates = [(float(s), int(i)) for s, i in zip(scores, ids) if int(i) in rows]
        if understood is not None:  # the same re-ranking as facesearch.text_eval measures
            candidates = queries.rerank(understood.terms, candidates,
                                        [rows[i][0].attributes for _, i in candidates],
                                        mixed=not text_only)
        candidates = candidates[:k]
        stored = self.vectors.reconstruct([i for _, i in candidates]) if candidates else np.zeros((0, VECTOR_DIM))
        per_region = region_similarities(vector, stored)
        hits = Hits()
        hits.understood = understood
        for rank, ((score, vector_id), similarity) in enumerate(zip(candidates, per_region), start=1):
            row, photo = rows[vector_id]
            hits.append(Hit(rank=rank, score=round(score, 4), path=photo.path, face_id=row.id,
                            bbox=[round(v, 1) for v in (row.x0, row.y0, row.x1, row.y1)],
                            regions=dict(zip(REGIONS, (round(float(v), 4) for v in similarity))),
                            attributes=row.attributes))
        return hits

    # --- information ----------------------------------------------------------------------------
    def info(self) -> dict:
        """What is in the index: photos, faces, failures, model, the vector index (type,
        compression, lists and nprobe, recall@10 measured when it was built, estimated memory,
        search device), database, size on disk."""
        if not self._exists():
            raise FaceSearchError(f"no index at {self.index_dir} (run `facesearch index FOLDER` first)")
        photos, faces = self.store.counts()
        size = sum(_size_if_present(f) for f in self.index_dir.iterdir())
        vectors = self.vectors.describe()
        return {"index": str(self.index_dir), "photos": photos, "faces": faces,
                "vectors": len(self.vectors),
                "failed": [(p.path, p.error) for p in self.store.failed_photos()],
                "model_version": self.store.get_meta("model_version"),
                "dims": self.store.get_meta("dims"), "index_type": vectors["index_type"],
                "compression": vectors["compression"], "nlist": vectors["nlist"],
                "nprobe": vectors["nprobe"], "recall_at_10": vectors["recall_at_10"],
                "index_memory_bytes": vectors["memory_bytes"],
                "search_device": vectors["search_device"],
                "database": _redacted(database_url(self.index_dir, self.db_url)),
                "size_bytes": size}

    def close(self) -> None:
        """Let go of the database connection and the preparing threads (their models)."""
        if "store" in self.__dict__:
            self.store.close()
        if "_prepare_threads" in self.__dict__:
            self.__dict__.pop("_prepare_threads").shutdown(wait=True)
            self.__dict__.pop("_thread_state", None)


def _redacted(url) -> str:
    """A database URL without its password."""
    return sa.make_url(url).render_as_string(hide_password=True)


def _size_if_present(path: Path) -> int:
    """A file's size, 0 for folders and for files gone since listed (an indexer's temp file)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0


def _outcome(future: Future):
    """A future's result, or the exception it raised (KeyboardInterrupt still goes up)."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - handed to the caller, photo by photo
        return error
