"""THE query path: from what was asked (a face's vector, understood classes, region weights, a
filter) to the k best (score, vector id) pairs, best first.

`FaceSearch.query` (FAISS + SQL), `facesearch eval-text` (the validation gallery, in memory) and
the benchmarks all call `rank`, so what is measured is what users run. The steps:

1. The query vector (search/ranking.py): a face's master vector; for a text the class-centre
   shifts of the understood classes (`text_vector`); for both, the face's blocks moved toward
   the classes (`mixed_vector`).
2. Region weights scale its blocks (`weighted`): the inner product becomes the weighted sum of
   the seven region similarities.
3. Nearest neighbours in the vector space: k, or a pool of `pool_size(k)` for a text (re-ranked
   below). Unfiltered, the pool grows by the number of vectors that have no row yet (an
   interrupted run's, skipped). Filtered (`where`), `search_filtered` picks over-fetching or a
   search restricted to the matching ids, by the share of faces that match.
4. The candidates' stored class probabilities (`Catalog.probabilities`) re-rank the pool by how
   well each face fits the text (`rerank`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import sqlalchemy as sa

from facesearch.search.filters import Filter
from facesearch.search.ranking import (DEFAULT, RankingSettings, mixed_vector, pool_size, rerank,
                                       text_vector, weighted)
from facesearch.search.terms import ClassTerm, needed_columns, probability_matrix

if TYPE_CHECKING:
    from facesearch.index.spaces import VectorSpace
    from facesearch.index.store import FaceRow, PhotoRow, Store

#: Filtered search: restricted to the matching ids (FAISS IDSelector) when fewer than this
#: share of the faces match (estimated on a sample), else the k/share best are fetched and
#: filtered.
OVERFETCH_MIN_SHARE = 0.2
#: Collections up to this many faces always read every matching id (no sampling).
SMALL_COLLECTION = 20_000
#: Rows sampled to estimate a filter's share of the faces.
SHARE_SAMPLE = 1_000


class Space(Protocol):
    """The vector space a query searches (index.spaces.VectorSpace is one)."""

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]: ...


class Catalog(Protocol):
    """What the planner reads about stored faces: how many have rows, and their class
    probabilities (StoreCatalog over SQL; the evaluation's gallery in memory)."""

    def count(self) -> int:
        """Faces with a row (vectors beyond it are an interrupted run's, skipped)."""
        ...

    def probabilities(self, ids: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(known, matrix): a bool mask of the ids that have a row, and for those, in order, a
        probability matrix in terms.COLUMNS order with at least the columns `names` filled."""
        ...


@dataclass(frozen=True)
class Request:
    """What a query asks, after parsing: a face's vector and/or understood classes."""

    k: int
    face: np.ndarray | None = None             # (364,) master vector of the query face
    terms: Sequence[ClassTerm] = ()            # classes understood in the text
    block_weights: np.ndarray | None = None    # (7,) region weights, None for the plain sum
    where: Filter | None = None                # --where restriction (SQL catalogs only)
    ranking: RankingSettings = field(default=DEFAULT)

    @property
    def browsing(self) -> bool:
        """No face and no classes: every face (meeting `where`) is a hit, in index order."""
        return self.face is None and not self.terms


@dataclass
class Ranked:
    """A query's answer: the query vector (before region weights) and the k best (score, id)."""

    vector: np.ndarray
    candidates: list[tuple[float, int]]
    strategy: str = "plain"  # "plain", or a filtered search's "overfetch" / "restricted"


def query_vector(request: Request, centres: np.ndarray) -> np.ndarray:
    """Step 1: the (364,) float32 query vector of a request (centres: (n classes, 364)); zeros
    when browsing."""
    if request.browsing:
        return np.zeros(centres.shape[1], np.float32)
    if request.face is None:
        return text_vector(request.terms, centres, request.ranking)
    if request.terms:
        return mixed_vector(request.face, request.terms, centres, request.ranking)
    return np.asarray(request.face, dtype=np.float32)


def rank(request: Request, centres: np.ndarray, space: Space, catalog: Catalog) -> Ranked:
    """The k best stored faces for a request, best first (the module's docstring: steps 1-4).
    Browsing (no face, no classes: `Request.browsing`) lists the first k faces meeting `where`
    (all faces without it) in index order, score 1; the catalog must then be a StoreCatalog."""
    vector = query_vector(request, centres)
    if request.browsing:
        clause = request.where.clause(catalog.dialect) if request.where is not None else sa.true()
        ids = np.sort(np.asarray(catalog.vector_ids_where(clause), np.int64))[:request.k]
        known, _ = catalog.probabilities(ids, ())
        return Ranked(vector, [(1.0, int(i)) for i in ids[known]], "browse")
    searched = weighted(vector, request.block_weights)
    pool = pool_size(request.k, request.ranking) if request.terms else request.k
    strategy = "plain"
    if request.where is None:
        orphans = max(0, len(space) - catalog.count())
        scores, ids = space.search(searched[None], pool + orphans)
        scores, ids = scores[0], ids[0]
    else:
        found = search_filtered(catalog, space, searched, pool, request.where)
        scores, ids, strategy = found.scores, found.ids, found.strategy
    ids = np.asarray(ids, np.int64)
    known, probabilities = catalog.probabilities(ids, needed_columns(request.terms))
    candidates = [(float(s), int(i)) for s, i in zip(np.asarray(scores)[known], ids[known])]
    ranked = rerank(request.terms, candidates, probabilities, mixed=request.face is not None,
                    settings=request.ranking)
    return Ranked(vector, ranked[:request.k], strategy)


# --- SQL ----------------------------------------------------------------------------------------
class StoreCatalog:
    """The SQL store as a Catalog; it keeps the rows it read, so hits are built without a second
    round trip (`rows`)."""

    def __init__(self, store: Store):
        self.store = store
        self.rows: dict[int, tuple[FaceRow, PhotoRow]] = {}

    def count(self) -> int:
        return self.store.counts()[1]

    def probabilities(self, ids: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self.rows.update(self.store.faces_by_vector_ids(ids.tolist()))
        known = np.array([int(i) in self.rows for i in ids], dtype=bool)
        matrix = probability_matrix([self.rows[int(i)][0].attributes for i in ids[known]], names)
        return known, matrix

    # the filtered search reads these
    @property
    def dialect(self) -> str:
        return self.store.dialect

    def estimate_share(self, clause, sample: int) -> float | None:
        return self.store.estimate_share(clause, sample)

    def vector_ids_where(self, clause, among: np.ndarray | None = None) -> np.ndarray:
        return self.store.vector_ids_where(clause, among=among)


@dataclass
class FilteredSearch:
    """A filtered search's best (score, vector id) pairs and how they were found."""

    scores: np.ndarray
    ids: np.ndarray
    strategy: str          # "overfetch" or "restricted"
    share: float | None    # estimated (sample) or counted share of faces that match


def search_filtered(catalog: StoreCatalog | Store, vectors: VectorSpace, query: np.ndarray, k: int,
                    where: Filter) -> FilteredSearch:
    """The k best faces for one query vector (364,) among those matching `where` (fewer only when
    fewer match): a common filter (share >= OVERFETCH_MIN_SHARE, estimated on SHARE_SAMPLE rows)
    fetches k / share x 1.5 + 16 best faces and keeps the matching ones; a selective one (or one
    whose over-fetch fell short) reads every matching vector id from SQL and searches among those
    only. Raises FilterError for a filter the catalog cannot run."""
    query = np.asarray(query, np.float32).reshape(1, -1)
    clause = where.clause(catalog.dialect)
    share = catalog.estimate_share(clause, SHARE_SAMPLE) if len(vectors) > SMALL_COLLECTION else None
    if share is not None and share >= OVERFETCH_MIN_SHARE:
        fetch = min(len(vectors), math.ceil(k / share * 1.5) + 16)
        scores, ids = vectors.search(query, fetch)
        matching = catalog.vector_ids_where(clause, among=ids[0])
        keep = np.isin(ids[0], matching)
        if keep.sum() >= k or fetch >= len(vectors):
            return FilteredSearch(scores[0][keep][:k], ids[0][keep][:k], "overfetch", share)
    allowed = catalog.vector_ids_where(clause)
    if share is None:
        share = len(allowed) / max(len(vectors), 1)
    if len(allowed) == 0:
        return FilteredSearch(np.empty(0, np.float32), np.empty(0, np.int64), "restricted", share)
    scores, ids = vectors.search(query, k, restrict=allowed)
    return FilteredSearch(scores[0], ids[0], "restricted", share)
