"""The Python API: `FaceSearch(index_dir).index(...)`, `.query(...)`, `.describe(...)`.

A thin facade: it composes the pipeline (pipeline.describer), the index (index.store,
index.spaces, index.indexer, index.lock) and the query planner (search.planner); the work is
done there.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.index.indexer import Indexer, IndexReport, reconcile
from facesearch.index.lock import IndexLock
from facesearch.index.spaces import FAISS_FILENAME, Spaces, VectorSpace, space_signatures
from facesearch.index.store import Store, database_exists, database_url, redacted
from facesearch.pipeline.describer import Describer
from facesearch.pipeline.faces import Face
from facesearch.pipeline.sources import find_images, photo_key
from facesearch.search.filters import Filter, parse_filter
from facesearch.search.hits import Hit, Hits
from facesearch.search.planner import Request, StoreCatalog, rank
from facesearch.search.ranking import region_weights
from facesearch.search.text import parse
from facesearch.settings import Settings
from facesearch.spec import REGIONS, VECTOR_DIM, region_similarities


class FaceSearch:
    """A face index in a folder: SQL metadata, a FAISS index of master vectors, the model.

    >>> fs = FaceSearch("indexes/default")
    >>> fs.index(["./photos"])
    >>> fs.query(text="black hair, smiling", k=5)

    `index_dir` and `db_url` default to `settings` (itself `Settings.from_env()` by default:
    FACESEARCH_INDEX, FACESEARCH_DB_URL, ...). Use as a context manager, or call `close()`.
    """

    def __init__(self, index_dir: str | os.PathLike | None = None, db_url: str | None = None,
                 *, settings: Settings | None = None):
        settings = settings if settings is not None else Settings.from_env()
        self.settings = settings.replace(index_dir=index_dir, db_url=db_url)
        self.index_dir = self.settings.index_dir
        self.db_url = self.settings.db_url

    def __enter__(self) -> FaceSearch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- opening --------------------------------------------------------------------------------
    def _exists(self) -> bool:
        """Whether an index was made here (its FAISS file, and its database)."""
        return (self.index_dir / FAISS_FILENAME).exists() and database_exists(self.index_dir, self.db_url)

    def _require_index(self) -> None:
        if not self._exists():
            raise FaceSearchError(f"no index at {self.index_dir} (run `facesearch index FOLDER` first)")

    @cached_property
    def store(self) -> Store:
        """The SQL metadata (opened, and migrated to the newest schema, on first use)."""
        return Store.for_index_dir(self.index_dir, self.db_url)

    @cached_property
    def spaces(self) -> Spaces:
        """Every vector space of the index as last read from disk (`refresh()` reads them again)."""
        self._signature = space_signatures(self.index_dir)
        return Spaces.open(self.index_dir, self.settings.compression, self.settings.ivf_threshold)

    @property
    def vectors(self) -> VectorSpace:
        """The master vectors (the space queries rank), as last read from disk."""
        return self.spaces.master

    @cached_property
    def describer(self) -> Describer:
        """Photos -> faces (pipeline.describer), with this index's settings."""
        return Describer(self.settings)

    @property
    def _model(self):
        return self.describer.model

    def refresh(self) -> bool:
        """Pick up what another process committed since the vectors were read (an `index` or
        `remove` run): re-read the vector spaces if one of their FAISS files changed. Returns
        whether it did. Queries call it, so a long-lived FaceSearch (a server) stays fresh; SQL
        reads are always fresh."""
        if "spaces" not in self.__dict__:
            return False
        if space_signatures(self.index_dir) == self._signature:
            return False
        self.__dict__.pop("spaces")
        return True

    def _open_existing(self) -> None:
        self._require_index()
        self.refresh()
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
        prepared on Settings.describe_threads threads while the network describes the faces of
        Settings.describe_batch photos at a time. A bad photo raises (FaceSearchError)."""
        for result in self.describer.stream(images):
            if isinstance(result, Exception):
                raise result
            yield result[1]  # (original size, faces)

    # --- indexing -------------------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike], progress: bool = False,
              on_problem=None) -> IndexReport:
        """Index every image under `paths`: new and changed photos are described, vanished ones
        dropped, unchanged ones skipped. Bad files are recorded and reported, not fatal. One
        index or remove run at a time: another one holding the index raises IndexBusyError."""
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        problems: list[tuple[str, str]] = []
        files = find_images(paths, on_error=lambda folder, reason: problems.append((folder, reason)))
        # bad paths failed above, before an index folder is made
        with IndexLock(self.index_dir, "index"):
            self.__dict__.pop("spaces", None)  # what is on disk now, not what we read before
            reconcile(self.store, self.spaces)
            self.store.set_meta("dims", str(VECTOR_DIM))
            self.store.set_meta("index_type", self.vectors.index_type)
            indexer = Indexer(self.store, self.spaces, self.describer.stream, self._model.version,
                              commit_every=self.settings.commit_every,
                              checkpoint_seconds=self.settings.checkpoint_seconds)
            report = indexer.run(paths, files, progress=progress, on_problem=on_problem,
                                 problems=problems)
            self._record_model()  # photos outside `paths` may still be another model's
            return report

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Take photos (their faces and vectors) out of the index for good; returns how many.
        Vectors go first; with SQLite the deleted rows are overwritten, not just unlinked."""
        self._require_index()
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        with IndexLock(self.index_dir, "remove"):
            self.__dict__.pop("spaces", None)
            reconcile(self.store, self.spaces)  # vectors a crashed run left behind go too
            known = {photo.path for photo in self.store.photos()}
            removed = sorted({key for key in map(photo_key, map(Path, paths)) if key in known})
            if not removed:
                return 0
            with self.store.erasing() as session:
                self.spaces.remove(self.store.delete_photos(removed, session))
                self.spaces.save()  # vectors first: a kill now leaves rows that reconcile drops
            return len(removed)

    # --- querying -------------------------------------------------------------------------------
    def query(self, image: str | os.PathLike | np.ndarray | None = None, text: str | None = None,
              k: int | None = None, face: int = 0, *, weights: Mapping[str, float] | None = None,
              region: str | None = None, where: str | Filter | None = None) -> Hits:
        """The k stored faces (default Settings.k) most like a photo's face (`face`-th largest),
        a description, or a photo's face changed as the description says; best first.

        `weights` scales regions in the score (`{"hair": 2, "background": 0}`; unnamed regions
        keep 1) and `region="hair"` ranks by one region alone; each hit's `regions` still holds
        the plain per-region similarities. `where` keeps only the faces that meet a filter
        (facesearch.search.filters), e.g. "male < 0.5 and smiling > 0.5" or "path ~ '*/2019/*'";
        k hits come back whenever k faces match. Ranked by search.planner.rank, the one query
        path. Raises FaceSearchError (one line) for anything a user can get wrong."""
        k = self.settings.k if k is None else k
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
        query_face = None
        if image is not None:
            faces = self.describe(image)
            if not faces:
                raise FaceSearchError(f"no face found in {image if not isinstance(image, np.ndarray) else 'the image'}")
            if not 0 <= face < len(faces):
                raise FaceSearchError(f"--face {face} is out of range: the image has {len(faces)} face(s)")
            query_face = faces[face].vector
        catalog = StoreCatalog(self.store)
        request = Request(k=k, face=query_face, terms=understood.terms if understood else (),
                          block_weights=block_weights, where=restriction)
        ranked = rank(request, self._model.centres, self.vectors, catalog)
        ids = [i for _, i in ranked.candidates]
        stored = self.vectors.reconstruct(ids) if ids else np.zeros((0, VECTOR_DIM), np.float32)
        hits = Hits()
        hits.understood = understood
        for rank_, ((score, vector_id), similarity) in enumerate(
                zip(ranked.candidates, region_similarities(ranked.vector, stored)), start=1):
            row, photo = catalog.rows[vector_id]
            hits.append(Hit(rank=rank_, score=round(score, 4), path=photo.path, face_id=row.id,
                            bbox=[round(v, 1) for v in (row.x0, row.y0, row.x1, row.y1)],
                            regions=dict(zip(REGIONS, (round(float(v), 4) for v in similarity))),
                            attributes=row.attributes))
        return hits

    # --- information ----------------------------------------------------------------------------
    def info(self) -> dict:
        """What is in the index: photos, faces, failures, model, the vector index (type,
        compression, lists and nprobe, recall@10 measured when it was built, estimated memory,
        search device), every vector space ({name: dim, vectors, model_version, index_type}),
        database, size on disk."""
        self._require_index()
        self.refresh()
        photos, faces = self.store.counts()
        size = sum(_size_if_present(f) for f in self.index_dir.iterdir())
        vectors = self.vectors.stats()
        return {"index": str(self.index_dir), "photos": photos, "faces": faces,
                "vectors": len(self.vectors),
                "failed": [(p.path, p.error) for p in self.store.failed_photos()],
                "model_version": self.store.get_meta("model_version"),
                "dims": self.store.get_meta("dims"), "index_type": vectors["index_type"],
                "compression": vectors["compression"], "nlist": vectors["nlist"],
                "nprobe": vectors["nprobe"], "recall_at_10": vectors["recall_at_10"],
                "index_memory_bytes": vectors["memory_bytes"],
                "search_device": vectors["search_device"],
                "spaces": {name: {"dim": space.dim, "vectors": len(space),
                                  "model_version": space.model_version,
                                  "index_type": space.index_type}
                           for name, space in self.spaces.items()},
                "database": redacted(database_url(self.index_dir, self.db_url)),
                "size_bytes": size}

    def close(self) -> None:
        """Let go of the database connection and the preparing threads (their models)."""
        if "store" in self.__dict__:
            self.__dict__.pop("store").close()
        if "describer" in self.__dict__:
            self.__dict__.pop("describer").close()


def _size_if_present(path: Path) -> int:
    """A file's size, 0 for folders and for files gone since listed (an indexer's temp file)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0
