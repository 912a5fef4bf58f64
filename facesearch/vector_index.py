"""The FAISS index of master vectors, keyed by the faces' vector ids.

Exact inner-product search: a master vector is 7 unit-norm region blocks, so a score is the sum
of the 7 per-region cosines, in [-7, 7]. The CPU index is the one saved; when FAISS sees GPUs,
searches run on a GPU copy that is rebuilt after every change.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from facesearch.config import VECTOR_DIM

#: Largest k that FAISS GPU indexes accept; bigger searches run on the CPU index.
_GPU_MAX_K = 2048


def _num_gpus() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    if not isinstance(ids, np.ndarray):
        ids = np.fromiter(ids, dtype=np.int64)
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


def _as_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != VECTOR_DIM:
        raise ValueError(f"expected vectors of shape (n, {VECTOR_DIM}), got {vectors.shape}")
    return vectors


class VectorIndex:
    """Master vectors in a `faiss.IndexIDMap2(faiss.IndexFlatIP(VECTOR_DIM))`, saved at `path`."""

    index_type = "Flat/IP"

    def __init__(self, index: faiss.IndexIDMap2, path: Path) -> None:
        self.path = Path(path)
        self._index = index
        self._gpu_index: faiss.Index | None = None

    @classmethod
    def open(cls, path: Path) -> VectorIndex:
        """Load the index saved at `path`, or start an empty one if there is no file yet."""
        path = Path(path)
        if not path.exists():
            return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(VECTOR_DIM)), path)
        index = faiss.read_index(str(path))
        if not (
            isinstance(index, faiss.IndexIDMap2)
            and isinstance(faiss.downcast_index(index.index), faiss.IndexFlatIP)
            and index.d == VECTOR_DIM
        ):
            raise ValueError(f"{path} is not an IDMap2 Flat/IP index of {VECTOR_DIM} dimensions")
        return cls(index, path)

    def __len__(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        """Every stored id (int64), in insertion order."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` (n, VECTOR_DIM) under `ids` (n,); an id may be stored only once."""
        ids, vectors = _as_ids(ids), _as_vectors(vectors)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("vector ids must be new and distinct")
        self._index.add_with_ids(vectors, ids)
        self._gpu_index = None

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove these ids (unknown ones are ignored); returns how many were removed."""
        ids = _as_ids(ids)
        if len(ids) == 0:
            return 0
        removed = self._index.remove_ids(ids)
        self._gpu_index = None
        return int(removed)

    def sync_ids(self, keep: Iterable[int]) -> int:
        """Remove every id not in `keep` (e.g. faces missing from SQL after a crash)."""
        ids = self.ids()
        return self.remove(ids[~np.isin(ids, _as_ids(keep))])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids), each (n, min(k, len(self))), best first; no -1 padding."""
        queries = _as_vectors(queries)
        k = min(k, len(self))
        if k <= 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        searcher = self._index if k > _GPU_MAX_K else self._searcher()
        return searcher.search(queries, k)

    def reconstruct(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """The stored vectors (n, VECTOR_DIM) of these ids; KeyError if one is unknown."""
        ids = _as_ids(ids)
        missing = ids[~np.isin(ids, self.ids())]
        if len(missing):
            raise KeyError(f"unknown vector ids: {missing[:10].tolist()}")
        if len(ids) == 0:
            return np.empty((0, VECTOR_DIM), np.float32)
        return self._index.reconstruct_batch(ids)

    def save(self) -> None:
        """Write the index atomically: temp file in the same folder, fsync, rename, fsync dir."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(self._index, str(temp))
            with open(temp, "rb+") as written:
                os.fsync(written.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if os.name == "posix":
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def _searcher(self) -> faiss.Index:
        """The GPU copy of the index when there are GPUs (made on demand), else the index."""
        if _num_gpus() == 0:
            return self._index
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_index
