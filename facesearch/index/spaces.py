"""Vector spaces: one FAISS index per named space, keyed by the faces' vector ids; each grows with
the collection.

A space has a name, a dimension and the model version whose vectors it holds (`SpaceSpec`,
`SPACES`). Today there is one, `master` (364-d, file `vectors.faiss`); any other space `<name>`
lives in `<name>.faiss` beside it. `Spaces` opens, changes and saves all the spaces of an index
folder together; `VectorSpace` is one space. The SQL store records which face has which vector id
in which space (store.FaceVector).

Scores are inner products: a master vector is 7 unit-norm region blocks, so a score is the sum of
the 7 per-region cosines, in [-7, 7].

- Up to IVF_THRESHOLD faces search is exact: `IndexIDMap2(IndexFlatIP)`.
- Past it the index becomes an inverted file (`IndexIVFFlat`; `IndexIVFScalarQuantizer` 8-bit or
  `IndexIVFPQ` with one 8-bit code per 4 dimensions, 91x8 for master, with compression) trained on the stored vectors, with a hash-table direct map
  so that every vector stays reconstructable by id (per-region scores) and removable. It is
  retrained once the collection has grown IVF_RETRAIN_GROWTH times since its training, and rebuilt
  when Settings.compression asks for another compression. With `defer_rebuild` (an indexing
  run) that retraining waits for `rebuild_if_due()` at the end of the run instead of stalling it.
- Lists: ~IVF_LISTS_PER_SQRT * sqrt(n) (16,384 at 1M faces), so a query scans few vectors. From
  HNSW_QUANTIZER_LISTS lists on, the lists to probe are found through an HNSW graph over the
  centroids (`IVF<n>_HNSW32`) rather than by comparing the query with every centroid, and the
  centroids are trained by two-level k-means (faiss.contrib.clustering) on a sample of
  _TRAIN_PER_LIST_TWO_LEVEL vectors a list (flat k-means over 16,384 centroids would compare
  every sample with every centroid at every iteration).
- Compressed codes (sq8, pq) are re-ranked: when the space has `exact` vectors at hand (the SQL
  store's float16 copies, attached by repair.open_spaces), a search fetches RERANK_FACTOR x k
  candidates from the codes and orders them by their exact inner products, and `reconstruct`
  returns the exact vectors; the codes alone stay in memory.
- At every build nprobe is chosen as the smallest power of two whose recall@10 against exact
  search reaches TARGET_RECALL, measured on RECALL_QUERIES stored vectors (their own vector left
  out of both lists). The measurement is kept with the index (`meta`).
- A search can be restricted to a set of ids (FAISS IDSelector), for filtered queries.
- When FAISS sees GPUs (the faiss-gpu build), unrestricted searches run on a GPU copy of the index,
  sharded over all GPUs; the CPU index is the one changed and saved.

Each file is written atomically (temp file, fsync, rename, fsync folder). The metadata, as JSON
(the space's name, dim and model version, and how the index was built), trails the FAISS bytes in
the same file, so both change together (faiss.read_index ignores it).
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
import time
import warnings
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.clustering import two_level_clustering

from facesearch.settings import COMPRESSIONS, DEFAULTS
from facesearch.spec import IDENTITY, IDENTITY_DIM, MASTER, VECTOR_DIM

#: The FAISS file of the master vectors, in the index folder (other spaces: "<name>.faiss").
FAISS_FILENAME = "vectors.faiss"
#: An IVF index is retrained (new centroids, new nprobe) once the collection has grown this
#: many times since its last training.
IVF_RETRAIN_GROWTH = 4.0
#: IVF lists ~ IVF_LISTS_PER_SQRT * sqrt(faces), rounded to a power of two.
IVF_LISTS_PER_SQRT = 16.0
#: From this many lists on, an IVF index finds its lists through an HNSW graph (HNSW_LINKS links
#: a node) over the centroids, trained by two-level k-means; below, a flat quantizer and k-means.
HNSW_QUANTIZER_LISTS = 4096
HNSW_LINKS = 32
#: A compressed (sq8, pq) space with exact vectors at hand re-ranks RERANK_FACTOR x k candidates
#: by exact inner products (bench/search_scale.py, 1M faces: IVF16384_HNSW32,PQ91 recall@10
#: 0.748 from the codes alone, 0.953 re-ranked).
RERANK_FACTOR = 10
#: recall@10 against exact search that nprobe is chosen to hold, measured at build time on
#: RECALL_QUERIES stored vectors (each one's own vector left out of both result lists).
#: RECALL_MARGIN covers the sample's error: tuning aims at TARGET_RECALL + RECALL_MARGIN.
TARGET_RECALL = 0.95
RECALL_MARGIN = 0.005
RECALL_QUERIES = 256
#: PQ codes are 8 bits, one per PQ_DIMS_PER_CODE dimensions (master: 91 codes, 13 per region block).
PQ_DIMS_PER_CODE = 4
PQ_SUBQUANTIZERS = VECTOR_DIM // PQ_DIMS_PER_CODE
#: PQ trains 256 centroids per code: below this many vectors it cannot (FAISS aborts under 256
#: training points) or learns little, so "pq" falls back to "sq8" until the collection has them.
PQ_MIN_VECTORS = 1024

#: Largest k (and nprobe) that FAISS GPU indexes accept; bigger searches run on the CPU index.
_GPU_MAX_K = 2048
#: Restricted searches over at most this many ids are exact (reconstruct + matrix product).
_EXACT_RESTRICTED = 8192
#: Tail of a saved file: JSON metadata, its length (uint64 LE), then this magic.
_META_MAGIC = b"FSMETA01"
#: Bytes per entry of FAISS's id hash tables (std::unordered_map), for memory estimates.
_HASH_ENTRY_BYTES = 40
#: Training points per IVF list (FAISS wants at least 39), and k-means iterations.
_TRAIN_PER_LIST = 48
#: Training points per list for two-level k-means (HNSW quantizer): its second level clusters
#: each first-level cluster's ~sqrt(nlist) sub-centroids, so fewer points a list suffice.
_TRAIN_PER_LIST_TWO_LEVEL = 16
#: HNSW efSearch of the quantizer: nprobe, and at least this. At 1M faces (IVF16384, nprobe 64)
#: a larger efSearch found no more neighbours (recall@10 0.954 at 64, 0.953 at 128) and cost
#: 0.91 vs 1.09 ms CPU a query (bench/search_scale.py's cached 1M index, efSearch set by hand).
_HNSW_EF_MIN = 32
_TRAIN_ITERATIONS = 10
#: Vectors handled per chunk when adding or reconstructing many at once.
_CHUNK = 65_536
_RECALL_K = 10


@dataclass(frozen=True)
class SpaceSpec:
    """A named vector space: its name (a short identifier) and its vectors' dimension."""

    name: str
    dim: int

    @property
    def filename(self) -> str:
        """Its FAISS file in an index folder: FAISS_FILENAME for master, else "<name>.faiss"."""
        return FAISS_FILENAME if self.name == MASTER else f"{self.name}.faiss"


#: The spaces every index has, master first: the master vectors (364-d, region similarities)
#: and the identity vectors (512-d ArcFace, `identity.faiss`: same person or not).
SPACES: tuple[SpaceSpec, ...] = (SpaceSpec(MASTER, VECTOR_DIM), SpaceSpec(IDENTITY, IDENTITY_DIM))


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of a saved index file, None if there is none: a new value
    means another process saved it since (files are replaced, never written in place)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _num_gpus() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    if not isinstance(ids, np.ndarray):
        ids = np.fromiter(ids, dtype=np.int64)
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


def _as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {vectors.shape}")
    return vectors


def applicable_compression(wanted: str, n: int) -> str:
    """The compression an IVF index of n vectors gets when `wanted` is asked for: "pq" falls back
    to "sq8" below PQ_MIN_VECTORS; the others always apply."""
    return "sq8" if wanted == "pq" and n < PQ_MIN_VECTORS else wanted


@contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native code writes to stdout/stderr (file descriptors 1 and 2) for the
    block: FAISS prints clustering warnings there, which must not reach the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def ivf_lists(n: int) -> int:
    """IVF lists for n vectors: ~IVF_LISTS_PER_SQRT * sqrt(n) as a power of two, with at least
    _TRAIN_PER_LIST / 2 vectors a list."""
    wanted = max(1.0, IVF_LISTS_PER_SQRT * math.sqrt(max(n, 1)))
    lists = 2 ** round(math.log2(wanted))
    while lists > 1 and lists * _TRAIN_PER_LIST // 2 > n:
        lists //= 2
    return int(min(max(lists, 1), 65_536))


def _new_quantizer(nlist: int, dim: int) -> faiss.Index:
    """The coarse quantizer of an IVF index of nlist lists: flat below HNSW_QUANTIZER_LISTS,
    else an HNSW graph (its centroids are added when trained, see _train_ivf)."""
    if nlist >= HNSW_QUANTIZER_LISTS:
        quantizer = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efConstruction = 80
        return quantizer
    return faiss.IndexFlatIP(dim)


def _hnsw_of(index: faiss.IndexIVF) -> faiss.IndexHNSW | None:
    """The IVF index's quantizer if it is an HNSW graph, else None."""
    quantizer = faiss.downcast_index(index.quantizer)
    return quantizer if isinstance(quantizer, faiss.IndexHNSW) else None


def _set_nprobe(index: faiss.IndexIVF, nprobe: int) -> None:
    """Set nprobe, and an HNSW quantizer's efSearch to match (max(_HNSW_EF_MIN, nprobe))."""
    index.nprobe = nprobe
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.hnsw.efSearch = max(_HNSW_EF_MIN, nprobe)


def ivf_params(index: faiss.IndexIVF, nprobe: int, selector: faiss.IDSelector | None = None
               ) -> faiss.SearchParametersIVF:
    """Search parameters probing `nprobe` lists (among `selector`'s ids if given), with an
    HNSW quantizer's efSearch raised to match."""
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    if selector is not None:
        params.sel = selector
    if _hnsw_of(index) is not None:
        quantizer_params = faiss.SearchParametersHNSW(efSearch=max(_HNSW_EF_MIN, nprobe))
        params.quantizer_params = quantizer_params
        params.referenced_objects = [quantizer_params]  # kept alive beside the params
    return params


def _train_ivf(index: faiss.IndexIVF, sample: np.ndarray) -> None:
    """Train an IVF index on `sample` (m, dim): an HNSW quantizer gets centroids from two-level
    k-means (faiss.contrib.clustering; ~sqrt(nlist) first-level clusters), then the codes (if
    any) are trained; a flat quantizer trains by plain k-means inside index.train."""
    hnsw = _hnsw_of(index)
    with quiet_native_output():  # FAISS's k-means warnings are printed by C++ to fd 2
        if hnsw is not None:
            centroids, _ = two_level_clustering(sample, int(math.sqrt(index.nlist)), index.nlist,
                                                clustering_niter=_TRAIN_ITERATIONS)
            hnsw.add(np.ascontiguousarray(centroids, dtype=np.float32))
        index.train(sample)


def _new_ivf(nlist: int, compression: str, dim: int) -> faiss.IndexIVF:
    """An untrained IVF/IP index of `dim` dimensions; ValueError for an unknown compression, or
    for "pq" when dim is not a multiple of PQ_DIMS_PER_CODE."""
    quantizer = _new_quantizer(nlist, dim)
    ip = faiss.METRIC_INNER_PRODUCT
    if compression == "none":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    elif compression == "sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit, ip)
    elif compression == "pq":
        if dim % PQ_DIMS_PER_CODE:
            raise ValueError(f"pq compression needs a dimension divisible by {PQ_DIMS_PER_CODE} (got {dim})")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, dim // PQ_DIMS_PER_CODE, 8, ip)
        # k-means in 4 dimensions is slow in FAISS: 91 codebooks of 256 on 16k points, 10 rounds
        index.pq.cp.niter = _TRAIN_ITERATIONS
        index.pq.cp.max_points_per_centroid = 64
    else:
        raise ValueError(f"unknown compression {compression!r}")
    return index  # faiss's Python wrapper keeps the quantizer alive beside the index


def _compression_of(index: faiss.IndexIVF) -> str:
    if isinstance(index, faiss.IndexIVFPQ):
        return "pq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "sq8"
    return "none"


def _recall(found: np.ndarray, exact: np.ndarray, own: np.ndarray, k: int = _RECALL_K) -> float:
    """Mean share of the exact k nearest (own id left out) that `found` (own id left out) has."""
    hits = 0
    for row_found, row_exact, self_id in zip(found, exact, own):
        a = [i for i in row_found if i != self_id and i >= 0][:k]
        b = [i for i in row_exact if i != self_id and i >= 0][:k]
        hits += len(set(a) & set(b)) / max(len(b), 1)
    return hits / max(len(own), 1)


def _read_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata trailing a saved index, or {} if there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size < 16:
                return {}
            handle.seek(size - 16)
            length, magic = struct.unpack("<Q8s", handle.read(16))
            if magic != _META_MAGIC or length > size - 16:
                return {}
            handle.seek(size - 16 - length)
            return json.loads(handle.read(length))
    except (OSError, ValueError):
        return {}


class VectorSpace:
    """One vector space: vectors of `dim` dimensions under int64 ids in a FAISS index that is
    Flat while small, IVF past `ivf_threshold` faces; saved at `path` (see the module's docstring).

    `name` and `model_version` (the descriptor model whose vectors it holds, the one that added
    vectors last; None while unknown) are saved in its metadata. `unsaved` says whether it
    changed since it was opened or last saved.

    `exact`: where the exact vectors of compressed codes come from, None if nowhere: a function
    of int64 ids (n,) returning (the found ids (m,) ascending, their vectors (m, dim) float32), e.g.
    Store.stored_vectors; ids it lacks fall back to the decoded codes. `defer_rebuild`: when
    True, `add` never retrains; `rebuild_if_due` does it (an indexing run, at its end)."""

    def __init__(self, index: faiss.Index, path: Path, meta: dict[str, Any] | None = None,
                 compression: str | None = None, ivf_threshold: int | None = None,
                 name: str = MASTER) -> None:
        self.path = Path(path)
        self._index = index
        meta = dict(meta or {})
        self.name: str = str(meta.pop("space", name))
        self.dim: int = int(index.d)
        self.model_version: str | None = meta.pop("model_version", None)
        for derived in ("dim", "index_type", "ntotal"):  # written by save, read from the index
            meta.pop(derived, None)
        self.meta: dict[str, Any] = meta
        self.unsaved = False
        self._wanted_compression = compression
        self.ivf_threshold = DEFAULTS.ivf_threshold if ivf_threshold is None else ivf_threshold
        self._gpu_index: faiss.Index | None = None
        self._gpu_failed = False
        self._ids_cache: np.ndarray | None = None
        self.exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
        self.defer_rebuild = False
        if self.is_ivf:
            self.meta.setdefault("nprobe", int(index.nprobe))
            self.meta.setdefault("trained_on", int(index.ntotal))
            self.meta["compression"] = _compression_of(index)

    @classmethod
    def empty(cls, path: Path, compression: str | None = None, ivf_threshold: int | None = None,
              *, name: str = MASTER, dim: int = VECTOR_DIM) -> VectorSpace:
        """A new, empty space `name` of `dim` dimensions to be saved at `path` (whatever is
        there now); arguments as for `open`."""
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), Path(path), None, compression,
                   ivf_threshold, name)

    @classmethod
    def open(cls, path: Path, compression: str | None = None, ivf_threshold: int | None = None,
             *, name: str = MASTER, dim: int = VECTOR_DIM) -> VectorSpace:
        """Load the space `name` of `dim` dimensions saved at `path`, or start an empty one if
        there is no file yet.

        `compression` ("none", "sq8", "pq"; Settings.compression, None: the index's own)
        applies whenever an IVF index is built; an IVF index of another compression is rebuilt
        at the next `add`. `ivf_threshold`: Settings.ivf_threshold (None: the default).
        ValueError if the file is not a Flat/IP or IVF/IP index of `dim` dimensions of space
        `name` (files saved before spaces had names are taken as `name`'s).
        """
        path = Path(path)
        if compression is not None and compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        if not path.exists():
            return cls.empty(path, compression, ivf_threshold, name=name, dim=dim)
        index = faiss.read_index(str(path))
        flat = isinstance(index, faiss.IndexIDMap2) and isinstance(
            faiss.downcast_index(index.index), faiss.IndexFlatIP)
        ivf = isinstance(index, faiss.IndexIVF) and index.metric_type == faiss.METRIC_INNER_PRODUCT
        if not (flat or ivf) or index.d != dim:
            raise ValueError(f"{path} is not an IDMap2 Flat/IP or IVF/IP index of {dim} dimensions")
        meta = _read_meta(path)
        if meta.get("space", name) != name:
            raise ValueError(f"{path} holds the vector space {meta['space']!r}, not {name!r}")
        if ivf and index.direct_map.type != faiss.DirectMap.Hashtable:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if ivf:
            _set_nprobe(index, int(index.nprobe))  # the quantizer's efSearch as this version sets it
        return cls(index, path, meta, compression, ivf_threshold, name)

    # --- what it is -----------------------------------------------------------------------------
    @property
    def is_ivf(self) -> bool:
        return isinstance(self._index, faiss.IndexIVF)

    @property
    def faiss_index(self) -> faiss.Index:
        """The FAISS index itself (read it, do not change it: e.g. to split it into shards)."""
        return self._index

    @property
    def reranks(self) -> bool:
        """Whether searches re-rank candidates by exact vectors (compressed codes, `exact` set)."""
        return self.exact is not None and self.compression != "none"

    @property
    def compression(self) -> str:
        """How vectors are stored: "none" (exactly) for Flat and IVF-Flat, else "sq8" or "pq"."""
        return _compression_of(self._index) if self.is_ivf else "none"

    @property
    def index_type(self) -> str:
        """"Flat/IP" or e.g. "IVF1024,Flat/IP", "IVF16384_HNSW32,SQ8/IP", "IVF1024,PQ91/IP"."""
        if not self.is_ivf:
            return "Flat/IP"
        codes = {"none": "Flat", "sq8": "SQ8", "pq": f"PQ{self.dim // PQ_DIMS_PER_CODE}"}[self.compression]
        hnsw = _hnsw_of(self._index)
        quantizer = f"_HNSW{hnsw.hnsw.nb_neighbors(1)}" if hnsw is not None else ""
        return f"IVF{self._index.nlist}{quantizer},{codes}/IP"

    @property
    def nprobe(self) -> int | None:
        return int(self._index.nprobe) if self.is_ivf else None

    def memory_bytes(self) -> int:
        """Estimated memory the index holds: vectors or codes, ids, id hash table, centroids
        (and an HNSW quantizer's links). Exact vectors kept elsewhere (SQL) are not counted."""
        n = len(self)
        if not self.is_ivf:
            return n * (self.dim * 4 + 8 + _HASH_ENTRY_BYTES)
        index = self._index
        fixed = index.nlist * self.dim * 4
        if _hnsw_of(index) is not None:
            fixed += index.nlist * 2 * HNSW_LINKS * 4  # level-0 links, about 2 x HNSW_LINKS a node
        if isinstance(index, faiss.IndexIVFPQ):
            fixed += index.pq.M * index.pq.ksub * index.pq.dsub * 4
        elif isinstance(index, faiss.IndexIVFScalarQuantizer):
            fixed += 2 * self.dim * 4
        return n * (index.code_size + 8 + _HASH_ENTRY_BYTES) + fixed

    def stats(self) -> dict[str, Any]:
        """Space name, dim and model version; index type, compression, lists, nprobe, measured
        recall@10, memory, search device."""
        gpus = _num_gpus()
        return {
            "space": self.name,
            "dim": self.dim,
            "model_version": self.model_version,
            "index_type": self.index_type,
            "compression": self.compression,
            "nlist": int(self._index.nlist) if self.is_ivf else None,
            "nprobe": self.nprobe,
            "recall_at_10": self.meta.get("recall_at_10") if self.is_ivf else 1.0,
            "rerank": RERANK_FACTOR if self.reranks else None,
            "trained_on": self.meta.get("trained_on") if self.is_ivf else None,
            "built_at": self.meta.get("built_at"),
            "ivf_threshold": self.ivf_threshold,
            "memory_bytes": self.memory_bytes(),
            "search_device": f"{gpus} GPU(s)" if gpus else "cpu",
            "compression_notice": self.meta.get("compression_notice") if self.is_ivf else None,
        }

    def __len__(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        """Every stored id (int64): in insertion order for Flat, by list for IVF."""
        if self._ids_cache is None:
            if self.is_ivf:
                lists = self._index.invlists
                parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                         for i in range(lists.nlist) if lists.list_size(i)]
                self._ids_cache = np.concatenate(parts) if parts else np.empty(0, np.int64)
            else:
                self._ids_cache = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        return self._ids_cache

    def _changed(self) -> None:
        self._gpu_index = None
        self._ids_cache = None
        self.unsaved = True

    # --- changing -------------------------------------------------------------------------------
    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` (n, dim) under `ids` (n,); an id may be stored only once (ValueError).
        May grow the index into IVF, or retrain it (see the module's docstring)."""
        ids, vectors = _as_ids(ids), _as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("vector ids must be new and distinct")
        for start in range(0, len(ids), _CHUNK):
            self._index.add_with_ids(vectors[start:start + _CHUNK], ids[start:start + _CHUNK])
        self._changed()
        if not self.defer_rebuild and self._needs_rebuild():
            self.rebuild()

    def rebuild_if_due(self) -> bool:
        """Rebuild (see `add`) if the index is due for it: past the IVF threshold while Flat, grown
        IVF_RETRAIN_GROWTH times since training, or of another compression than wanted. Returns
        whether it rebuilt. An indexing run defers rebuilds (`defer_rebuild`) and calls this at
        its end."""
        if not self._needs_rebuild():
            return False
        self.rebuild()
        return True

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove these ids (unknown ones are ignored); returns how many were removed."""
        ids = _as_ids(ids)
        if len(ids) == 0:
            return 0
        removed = self._index.remove_ids(ids)
        if removed:
            self._changed()
        return int(removed)

    def sync_ids(self, keep: Iterable[int]) -> int:
        """Remove every id not in `keep` (e.g. faces missing from SQL after a crash)."""
        ids = self.ids()
        return self.remove(ids[~np.isin(ids, _as_ids(keep))])

    def _needs_rebuild(self) -> bool:
        n = len(self)
        if not self.is_ivf:
            return n >= self.ivf_threshold
        wanted = self._wanted_compression
        if wanted is not None and applicable_compression(wanted, n) != self.compression:
            return True
        return n >= IVF_RETRAIN_GROWTH * max(int(self.meta.get("trained_on") or 0), 1)

    def rebuild(self, compression: str | None = None) -> None:
        """Rebuild from the stored vectors: Flat below the IVF threshold, else a freshly trained IVF
        index (`compression`, default the wanted or current one) with nprobe tuned for recall."""
        compression = compression or self._wanted_compression or self.compression
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        ids, vectors = self._all_vectors()
        started = time.perf_counter()
        if len(ids) < self.ivf_threshold:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            index.add_with_ids(vectors, ids)
            meta: dict[str, Any] = {}
        else:
            applied = applicable_compression(compression, len(ids))
            index, meta = self._build_ivf(ids, vectors, applied)
            if applied != compression:
                meta["compression_notice"] = (
                    f"{compression} compression needs at least {PQ_MIN_VECTORS} vectors "
                    f"({len(ids)} now): {applied} is used until there are enough")
        meta["built_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        meta["build_seconds"] = round(time.perf_counter() - started, 2)
        self._index, self.meta = index, meta
        self._changed()

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything stored: exact where `exact` has them, else decoded
        (approximations for SQ8/PQ)."""
        ids = self.ids().copy()
        vectors = np.empty((len(ids), self.dim), np.float32)
        for start in range(0, len(ids), _CHUNK):
            vectors[start:start + _CHUNK] = self.reconstruct(ids[start:start + _CHUNK])
        return ids, vectors

    def _build_ivf(self, ids: np.ndarray, vectors: np.ndarray, compression: str
                   ) -> tuple[faiss.IndexIVF, dict[str, Any]]:
        n = len(ids)
        nlist = ivf_lists(n)
        index = _new_ivf(nlist, compression, self.dim)
        index.cp.niter = _TRAIN_ITERATIONS
        rng = np.random.default_rng(0)
        per_list = _TRAIN_PER_LIST_TWO_LEVEL if _hnsw_of(index) is not None else _TRAIN_PER_LIST
        sample = rng.choice(n, size=min(n, nlist * per_list), replace=False)
        started = time.perf_counter()
        _train_ivf(index, vectors[np.sort(sample)])
        trained = time.perf_counter() - started
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        for start in range(0, n, _CHUNK):
            index.add_with_ids(vectors[start:start + _CHUNK], ids[start:start + _CHUNK])
        rerank = RERANK_FACTOR if self.exact is not None and compression != "none" else 0
        nprobe, recall, curve = _tune_nprobe(index, ids, vectors, rng, lossless=compression == "none",
                                             rerank=rerank)
        _set_nprobe(index, nprobe)
        meta = {"trained_on": n, "nprobe": nprobe, "recall_at_10": round(recall, 4),
                "train_seconds": round(trained, 2), "train_points": len(sample), "rerank": rerank,
                "recall_queries": min(n, RECALL_QUERIES), "recall_curve": curve,
                "compression": compression}
        return index, meta

    # --- reading --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, restrict: Iterable[int] | np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids), each (n, min(k, candidates)), best first; no -1 padding.
        Compressed codes with exact vectors at hand (`reranks`) are re-ranked: RERANK_FACTOR x k
        candidates are fetched and ordered by exact inner products, which are the scores.

        `restrict`: search only among these ids (unknown ones are ignored)."""
        queries = _as_vectors(queries, self.dim)
        if restrict is not None:
            return self._search_among(queries, k, np.unique(_as_ids(restrict)))
        k = min(k, len(self))
        if k <= 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        fetch = min(k * RERANK_FACTOR, len(self)) if self.reranks else k
        searcher = self._index if fetch > _GPU_MAX_K else self._searcher()
        scores, found = searcher.search(queries, fetch)
        if self.is_ivf and (found < 0).any():  # the probed lists held fewer than k vectors
            rows = np.flatnonzero((found < 0).any(axis=1))
            params = ivf_params(self._index, int(self._index.nlist))
            scores[rows], found[rows] = self._index.search(queries[rows], fetch, params=params)
        if self.reranks:
            return self._rerank(queries, found, k)
        return scores, found

    def _rerank(self, queries: np.ndarray, found: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """The k best of the candidates `found` (n, m; -1 for none) by exact inner products with
        `queries` (n, dim): (scores, ids), each (n, min(k, m)), best first."""
        valid = found >= 0
        unique = np.unique(found[valid])
        if len(unique) == 0:
            return np.empty((len(found), 0), np.float32), np.empty((len(found), 0), np.int64)
        vectors = self.reconstruct(unique)
        rows = np.searchsorted(unique, np.where(valid, found, unique[0]))
        exact = np.einsum("nd,nmd->nm", queries, vectors[rows])
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return (np.take_along_axis(exact, order, axis=1).astype(np.float32),
                np.take_along_axis(found, order, axis=1))

    def _search_among(self, queries: np.ndarray, k: int, allowed: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Search restricted to `allowed` ids (sorted, unique): exact over their reconstructed
        vectors when few, else FAISS with an IDSelector (and, for IVF, more lists probed)."""
        if len(allowed) <= _EXACT_RESTRICTED:
            allowed = allowed[np.isin(allowed, self.ids())]
            k = min(k, len(allowed))
            if k <= 0:
                return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
            stored = self.reconstruct(allowed)
            scores = queries @ stored.T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            return (np.take_along_axis(top_scores, order, axis=1).astype(np.float32),
                    allowed[np.take_along_axis(top, order, axis=1)])
        selector = faiss.IDSelectorBatch(allowed)
        k = min(k, len(allowed), len(self))
        fetch = min(k * RERANK_FACTOR, len(allowed), len(self)) if self.reranks else k
        if self.is_ivf:
            share = len(allowed) / max(len(self), 1)
            nprobe = min(int(self._index.nlist), math.ceil(self._index.nprobe / max(share, 1e-9)))
            params = ivf_params(self._index, nprobe, selector)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, found = self._index.search(queries, fetch, params=params)
        if self.is_ivf and (found < 0).any():
            rows = np.flatnonzero((found < 0).any(axis=1))
            params = ivf_params(self._index, int(self._index.nlist), selector)
            scores[rows], found[rows] = self._index.search(queries[rows], fetch, params=params)
        if self.reranks:
            scores, found = self._rerank(queries, found, k)
        keep = (found >= 0).all(axis=0)  # ids unknown to the index can leave fewer than k
        return scores[:, keep], found[:, keep]

    def reconstruct(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """The stored vectors (n, dim) float32 of these ids: exact for Flat and IVF-Flat, and for
        SQ8/PQ where `exact` has them, else decoded (approximate); KeyError if one is unknown
        to both."""
        ids = _as_ids(ids)
        if len(ids) == 0:
            return np.empty((0, self.dim), np.float32)
        out: np.ndarray | None = None
        lacking = ids
        if self.exact is not None and self.compression != "none":
            known, vectors = self.exact(ids)
            out = np.empty((len(ids), self.dim), np.float32)
            where = np.searchsorted(known, ids) if len(known) else np.zeros(len(ids), np.int64)
            hit = where < len(known)
            hit[hit] = known[where[hit]] == ids[hit]
            out[hit] = vectors[where[hit]]
            if hit.all():
                return out
            lacking = ids[~hit]
        try:
            decoded = self._index.reconstruct_batch(lacking)
        except RuntimeError:
            missing = lacking[~np.isin(lacking, self.ids())]
            raise KeyError(f"unknown vector ids: {missing[:10].tolist()}") from None
        if out is None:
            return decoded
        out[~hit] = decoded
        return out

    # --- saving ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the index and its metadata atomically: temp file in the same folder, fsync,
        rename, fsync the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        meta = json.dumps({**self.meta, "space": self.name, "dim": self.dim,
                           "model_version": self.model_version, "index_type": self.index_type,
                           "ntotal": len(self)}).encode()
        try:
            faiss.write_index(self._index, str(temp))
            with open(temp, "ab") as written:
                written.write(meta + struct.pack("<Q8s", len(meta), _META_MAGIC))
                written.flush()
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
        self.unsaved = False

    # --- GPU ------------------------------------------------------------------------------------
    def _searcher(self) -> faiss.Index:
        """The GPU copy of the index when there are GPUs (made on demand, sharded over all of
        them), else the index. Index types a GPU cannot hold (PQ of 91 bytes) stay on the CPU."""
        if self._gpu_failed or _num_gpus() == 0:
            return self._index
        if self._gpu_index is None:
            try:
                options = faiss.GpuMultipleClonerOptions()
                options.shard = True
                gpu_index = faiss.index_cpu_to_all_gpus(self._index, co=options)
                if self.is_ivf:
                    faiss.GpuParameterSpace().set_index_parameter(
                        gpu_index, "nprobe", min(int(self._index.nprobe), _GPU_MAX_K))
                self._gpu_index = gpu_index
            except (RuntimeError, AttributeError) as error:
                warnings.warn(f"searching on the CPU: {self.index_type} cannot go to the GPU ({error})",
                              stacklevel=2)
                self._gpu_failed = True
                return self._index
        return self._gpu_index


def space_signatures(folder: Path, specs: Iterable[SpaceSpec] = SPACES) -> tuple:
    """`file_signature` of every space's file in an index folder, in `specs` order: a new value
    means another process saved one of them since."""
    return tuple(file_signature(Path(folder) / spec.filename) for spec in specs)


class Spaces(Mapping[str, VectorSpace]):
    """All the vector spaces of an index folder, by name (master first), opened and saved
    together. A read-only mapping name -> VectorSpace."""

    def __init__(self, folder: Path, spaces: Iterable[VectorSpace]) -> None:
        self.folder = Path(folder)
        self._spaces = {space.name: space for space in spaces}
        if MASTER not in self._spaces:
            raise ValueError(f"an index needs the {MASTER!r} vector space")

    @classmethod
    def open(cls, folder: Path, compression: str | None = None, ivf_threshold: int | None = None,
             specs: Iterable[SpaceSpec] = SPACES) -> Spaces:
        """Open every space of `specs` in `folder` (empty ones where there is no file yet);
        `compression` and `ivf_threshold` as for VectorSpace.open, which raises ValueError for
        a file that is not the space's."""
        folder = Path(folder)
        return cls(folder, (VectorSpace.open(folder / spec.filename, compression, ivf_threshold,
                                             name=spec.name, dim=spec.dim) for spec in specs))

    @property
    def master(self) -> VectorSpace:
        """The master vectors (spec.VECTOR_DIM dimensions), which queries rank."""
        return self._spaces[MASTER]

    def __getitem__(self, name: str) -> VectorSpace:
        return self._spaces[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spaces)

    def __len__(self) -> int:
        return len(self._spaces)

    def remove(self, ids: Mapping[str, Iterable[int]]) -> int:
        """Remove {space name: vector ids} (as Store.delete_photos returns them; spaces this
        folder lacks are ignored); returns how many vectors were removed in all."""
        return sum(self._spaces[name].remove(found) for name, found in ids.items()
                   if name in self._spaces)

    def save(self) -> int:
        """Save (atomically, each its own file) every space changed since it was opened or last
        saved, and any whose file does not exist yet; returns how many files were written."""
        written = 0
        for space in self._spaces.values():
            if space.unsaved or not space.path.exists():
                space.save()
                written += 1
        return written


def _nprobe_steps(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to nlist."""
    steps, power = [], 1
    while power < nlist:
        steps += [power] + ([power * 3 // 2] if power >= 2 else [])
        power *= 2
    return sorted({step for step in steps if step < nlist} | {nlist})


def _tune_nprobe(index: faiss.IndexIVF, ids: np.ndarray, vectors: np.ndarray,
                 rng: np.random.Generator, lossless: bool, rerank: int = 0
                 ) -> tuple[int, float, list[list[float]]]:
    """The smallest nprobe (of _nprobe_steps) whose recall@10 (own vector left out) against
    exact search reaches TARGET_RECALL + RECALL_MARGIN on a sample of stored vectors; for
    compressed codes (not `lossless`), which may never reach it, the one after which two more
    steps gain under half a point. `rerank` > 0: measured as searches run with re-ranking,
    rerank x the wanted candidates ordered by `vectors` (ids[i]'s exact vector is vectors[i]).
    Returns (nprobe, recall, [[nprobe, recall], ...])."""
    n = len(ids)
    picked = rng.choice(n, size=min(n, RECALL_QUERIES), replace=False)
    queries, own = vectors[picked], ids[picked]
    _, exact = faiss.knn(queries, vectors, _RECALL_K + 1, metric=faiss.METRIC_INNER_PRODUCT)
    exact = ids[exact]
    sorter = np.argsort(ids)
    curve: list[list[float]] = []
    for nprobe in _nprobe_steps(int(index.nlist)):
        _set_nprobe(index, nprobe)
        if rerank:
            _, candidates = index.search(queries, min(n, (_RECALL_K + 1) * rerank))
            valid = candidates >= 0
            rows = sorter[np.searchsorted(ids, np.where(valid, candidates, ids[0]), sorter=sorter)]
            scores = np.einsum("nd,nmd->nm", queries, vectors[rows])
            scores[~valid] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :_RECALL_K + 1]
            found = np.take_along_axis(candidates, order, axis=1)
        else:
            _, found = index.search(queries, _RECALL_K + 1)
        curve.append([nprobe, round(_recall(found, exact, own), 4)])
        if curve[-1][1] >= TARGET_RECALL + RECALL_MARGIN:
            break
        if not lossless and len(curve) > 2 and nprobe >= 8 and curve[-1][1] - curve[-3][1] < 0.005:
            curve_best = curve[-3]
            return int(curve_best[0]), float(curve_best[1]), curve
    return int(curve[-1][0]), float(curve[-1][1]), curve
