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

Match modes of an image query (`Request.match`, MATCHES; the identity space given to `rank`):
the identity space (512-d ArcFace) says who is the same person: a stored face is judged the
query's person when its calibrated same_person probability reaches 0.5 (models.arcface: the
identity cosine reaches the threshold, or the higher conflict_threshold when the two faces'
gender heads confidently disagree). `person` takes the k faces nearest by identity similarity,
ordered by that probability; `look-alike` ranks
by the (weighted) region similarities, plus the agreement of the stored attribute
probabilities with the query's, among the faces that are not the query's person: none at the
looser LOOKALIKE_EXCLUDE_PROBABILITY (so none judged so), none of its person (index.people),
and, with `Request.one_per_person`, one face per other person (`_one_per_person`); `default` puts the faces judged the query's person first (by identity similarity), then the
others by (weighted) region similarity (only the faces shown first left out). In every mode a
hit's score is the weighted sum of its region similarities (a look-alike's rank also weighs
attributes) and `Ranked.same_person` holds each hit's calibrated probability. A text or mixed
query, and an index whose identity space lacks faces (made before it; `facesearch index` fills
it in), rank by the master vector alone (`match` must then be "default").
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import sqlalchemy as sa

from facesearch.errors import FaceSearchError
from facesearch.index.people import vector_ids_of_persons
from facesearch.models.arcface import MALE, RELIABLE_FROM_AGE, calibration, genders_conflict, young_child
from facesearch.search.filters import Filter
from facesearch.search.ranking import (DEFAULT, RankingSettings, mixed_vector, pool_size, rerank,
                                       text_vector, weighted)
from facesearch.search.terms import COLUMNS, ClassTerm, needed_columns, probability_matrix, quality_weights
from facesearch.spec import AGE_KEY, CELEBA_ATTRIBUTES, CLASSES, REGIONS

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
#: Match modes of an image query (see the module's docstring); "default" first.
MATCHES: tuple[str, ...] = ("default", "person", "look-alike")
#: Identity neighbours fetched first when collecting the faces judged the query's person
#: (grown 4x until the farthest fetched is below the threshold).
SAME_PERSON_FETCH = 64
#: Look-alike mode leaves out more than the faces judged the query's person (probability 0.5):
#: also every face whose same-person probability reaches this, and every face of the query's
#: person (index.people). Not lower: the best look-alikes of a face are other people to whom
#: the identity network, too, gives a raised cosine (0.08-0.19 for a blonde query's ten best
#: look-alikes in the validation gallery), so a looser cut leaves out the very faces asked for
#: (at 0.05, a cosine of 0.07, one in five other people's faces goes; agreement fell to 0.778)
#: while the query's person's outliers (photos at cosine ~0 with the rest of their person) stay.
#: Those outliers are CelebA label noise: 9 validation photos filed under an identity show
#: another person (judged by eye; training/identity_label_noise.csv), and with them set aside
#: no look-alike hit is the query's person. Leaving out, besides, every face at probability
#: 0.5 with ANY face of the query's person (its people-grouping person and faces at 0.95 with
#: it) took out 8% more of the other people's faces (0.2 instead of 0.5: 28%) and cut the
#: label-counted own-person share only from 3.6% to 2.5% (0.2: 1.2%), agreement -0.002
#: (-0.011); a cut on the person's mean vector was weaker still. Measured in
#: training.identity_calibration.
LOOKALIKE_EXCLUDE_PROBABILITY = 0.2
#: Look-alike mode ranks the LOOKALIKE_POOL x k best faces by region similarity (weighted)
#: again, by that similarity plus LOOKALIKE_AGREEMENT_WEIGHT x 7 x the expected share of the
#: 40 CelebA attributes the face and the query agree on (from both faces' stored class
#: probabilities, `attribute_agreement`): faces that look alike and have the same visible
#: attributes first. Chosen on the tuning half of the validation queries (even positions,
#: training.identity_calibration `lookalike_mode`; pools 5-50 x weights 0.5-10): agreement
#: 0.806 -> 0.825 aligned, 0.797 -> 0.806 wild, the hits' mean region score 4.11 -> 3.93 of 7;
#: weight 10 gained 0.003 more at twice the region cost, and pools over 10 nothing. Calibrating
#: the 40 probabilities (per-attribute Platt) or weighting attributes by how reliably they are
#: predicted changed agreement by at most 0.002 either way, so the stored probabilities are
#: used as they are.
LOOKALIKE_POOL = 10
#: When the query face and a candidate are both estimated younger than
#: models.arcface.RELIABLE_FROM_AGE, look-alike mode leaves the candidate out only at this
#: identity cosine or more (the face itself, copies of its photo), not at the usual cut: young
#: children's raised cosines call them all one person, and on face chips every other baby was
#: left out (a baby's look-alikes were 6-14 years old). Candidates estimated older are left out
#: as for any query (a young-looking adult misread as a child keeps its person out).
CHILD_COPY_COSINE = 0.8
LOOKALIKE_AGREEMENT_WEIGHT = 3.0


class Space(Protocol):
    """The vector space a query searches (index.spaces.VectorSpace is one)."""

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]: ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray: ...


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

    def persons(self, ids: np.ndarray) -> np.ndarray:
        """(n,) int64: the person (index.people) of each of these faces, -1 for none."""
        ...

    def members(self, persons: Sequence[int]) -> np.ndarray:
        """Vector ids (int64) of every face of these persons."""
        ...

    def likeliest(self, name: str, n: int, clause=None) -> np.ndarray:
        """Vector ids of the (at most) n faces with the highest stored probability `name`
        (a terms.COLUMNS name), best first, among those meeting `clause` (SQL catalogs)."""
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
    identity: np.ndarray | None = None         # (512,) identity vector of the query face
    match: str = "default"                     # an image query's match mode (MATCHES)
    attributes: np.ndarray | None = None       # (len(COLUMNS),) the query face's probabilities
    one_per_person: bool = False               # look-alike mode: one face per other person

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
    #: A match-mode query's calibrated probability, per candidate's vector id, that it is the
    #: query's person; None when the identity space was not used.
    same_person: dict[int, float] | None = None


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


def rank(request: Request, centres: np.ndarray, space: Space, catalog: Catalog,
         identity: Space | None = None) -> Ranked:
    """The k best stored faces for a request, best first (the module's docstring: steps 1-4,
    and the match modes of an image query, which need `identity`, the identity space holding
    a vector for every face of `catalog`). Browsing (no face, no classes: `Request.browsing`)
    lists the first k faces meeting `where` (all faces without it): by the first number it
    compares that names no class (Filter.ordering, e.g. quality), best fit first, that number
    the score; else in index order, score 1. The catalog must then be a StoreCatalog.
    FaceSearchError for an unknown match mode, or a
    mode other than "default" that cannot apply (a text in the query, no identity vectors)."""
    if request.match not in MATCHES:
        raise FaceSearchError(f"unknown match mode {request.match!r}: use one of {', '.join(MATCHES)}")
    # faces without an identity vector (old photos missing from disk since) are only skipped
    usable = (request.face is not None and not request.terms and request.identity is not None
              and identity is not None and len(identity) > 0)
    if usable:
        return rank_match(request, space, identity, catalog)
    if request.match != "default":
        if request.face is None or request.terms:
            raise FaceSearchError(f"match {request.match!r} applies to image queries without a text")
        raise FaceSearchError(f"match {request.match!r} needs identity vectors, which this index lacks "
                              "for some faces: run `facesearch index` on its folders again to add them")
    vector = query_vector(request, centres)
    if request.browsing:
        clause = request.where.clause(catalog.dialect) if request.where is not None else sa.true()
        order = request.where.ordering() if request.where is not None else []
        if order:  # best fit first: the first number compared without a class (Filter.ordering)
            key, descending = order[0]
            ids = np.asarray(catalog.store.vector_ids_by(key, request.k, clause, descending), np.int64)
            known, _ = catalog.probabilities(ids, ())
            return Ranked(vector, [(float(catalog.rows[int(i)][0].attributes.get(key, 0.0)), int(i))
                                   for i in ids[known]], "browse")
        ids = np.sort(np.asarray(catalog.vector_ids_where(clause), np.int64))[:request.k]
        known, _ = catalog.probabilities(ids, ())
        return Ranked(vector, [(1.0, int(i)) for i in ids[known]], "browse")
    searched = weighted(vector, request.block_weights)
    pool = pool_size(request.k, request.ranking) if request.terms else request.k
    candidates, probabilities, strategy = _nearest(space, catalog, searched, pool, request.where,
                                                   needed_columns(request.terms))
    candidates, probabilities = _with_likeliest(request, space, catalog, searched, pool,
                                                candidates, probabilities)
    ranked = rerank(request.terms, candidates, probabilities, mixed=request.face is not None,
                    settings=request.ranking, reliability=_reliability(catalog, candidates))
    return Ranked(vector, ranked[:request.k], strategy)


def _reliability(catalog: Catalog, candidates: Sequence[tuple[float, int]]) -> np.ndarray | None:
    """(n,) terms.quality_weights of the candidates, read from the rows a StoreCatalog keeps;
    None for a catalog without rows (the evaluation's galleries hold no quality record)."""
    rows = getattr(catalog, "rows", None)
    if rows is None:
        return None
    return quality_weights([rows[i][0].attributes if i in rows else {} for _, i in candidates])


def rank_match(request: Request, space: Space, identity: Space, catalog: Catalog) -> Ranked:
    """An image query in its match mode (the module's docstring): `space` holds the master
    vectors, `identity` the identity vectors, under the same vector ids."""
    shipped = calibration()
    vector = np.asarray(request.face, dtype=np.float32)
    searched = weighted(vector, request.block_weights)
    query_identity = np.asarray(request.identity, dtype=np.float32)
    if request.match == "look-alike":
        return _look_alikes(request, vector, searched, space, identity, catalog)
    if request.match == "person":
        found = _search(identity, catalog, query_identity, request.k, request.where)
        same = {i: s for s, i in found}
        conflict = dict(zip(same, _conflicts(request, catalog, list(same))))
        # by calibrated probability: a face whose gender conflicts falls behind those that do not
        chosen = sorted(same, key=lambda i: float(shipped.probability(same[i], conflict[i])), reverse=True)
        scores = _scores(space, searched, chosen)
        candidates = list(zip(scores, chosen))
        strategy = "person"
    else:  # default: the faces judged the query's person, then the others as look-alikes
        near = _same_person(identity, catalog, query_identity, shipped.threshold, request.where)
        conflict = dict(zip(near, _conflicts(request, catalog, list(near))))
        judged = {i: s for i, s in near.items() if not conflict[i] or s >= shipped.conflict_threshold}
        first = sorted(judged, key=judged.get, reverse=True)[:request.k]
        # the others by region similarity alone (the default mode; --region/--weights
        # order them), the attribute re-ranking being look-alike mode's own
        rest = (_look_alikes(replace(request, k=request.k - len(first), attributes=None), vector,
                             searched, space, identity, catalog, leave_out=set(judged)).candidates
                if len(first) < request.k else [])
        candidates = list(zip(_scores(space, searched, first), first)) + rest
        rest_ids = [i for _, i in rest if i not in conflict]
        same = near | dict(zip(rest_ids, _identity_scores(identity, query_identity, rest_ids)))
        conflict |= dict(zip(rest_ids, _conflicts(request, catalog, rest_ids)))
        strategy = request.match
    ids = [i for _, i in candidates]
    return Ranked(vector, candidates, strategy, _probabilities(
        ids, [same[i] for i in ids], np.array([conflict[i] for i in ids], bool)))


def _look_alikes(request: Request, vector: np.ndarray, searched: np.ndarray, space: Space,
                 identity: Space, catalog: Catalog, leave_out: set[int] | None = None) -> Ranked:
    """Look-alike mode (LOOKALIKE_* above): the faces most like the query by region, and by
    their attributes when the query's probabilities are known, among the faces that are not
    its person: none at LOOKALIKE_EXCLUDE_PROBABILITY or more (so none judged its person), none
    of its person (index.people: the person of the face most like it by identity, when that
    face is judged its person; the query's own face when it is indexed), checked on the
    candidates by region (fetched 4x more until enough remain), so the cost does not grow with
    the number of faces near the query by identity in a large index. Default mode's
    look-alikes pass `leave_out` instead (the faces it shows first): only those are left out,
    so no face goes missing from a plain image query."""
    shipped = calibration()
    query_identity = np.asarray(request.identity, dtype=np.float32)
    cut = shipped.cosine(LOOKALIKE_EXCLUDE_PROBABILITY) if leave_out is None else None
    child = (request.attributes is not None
             and young_child(float(np.asarray(request.attributes)[COLUMNS.index(AGE_KEY)])))
    if leave_out is None:
        nearest = _search(identity, catalog, query_identity, 1, request.where)  # itself, if indexed
        person = (int(catalog.persons(np.array([nearest[0][1]], np.int64))[0])
                  if nearest and nearest[0][0] >= shipped.threshold else -1)
        leave_out = {int(i) for i in (catalog.members([person]) if person >= 0 else [])}
    pool = request.k * LOOKALIKE_POOL
    fetch = 2 * pool + len(leave_out)
    while True:  # candidates by region, those too close by identity dropped; more until enough
        fetched = _search(space, catalog, searched, fetch, request.where)
        found = [(s, i) for s, i in fetched if i not in leave_out]
        if cut is not None:
            # a face without an identity vector cannot be judged another person: left out too
            scores = np.array(_identity_scores(identity, query_identity, [i for _, i in found]))
            keep = scores < cut
            if child and found:  # two young children's cosine says little: other young
                # children stay unless copies of the query (CHILD_COPY_COSINE)
                _, matrix = catalog.probabilities(np.array([i for _, i in found], np.int64), [AGE_KEY])
                keep |= (matrix[:, COLUMNS.index(AGE_KEY)] < RELIABLE_FROM_AGE) & (scores < CHILD_COPY_COSINE)
            found = [pair for pair, kept in zip(found, keep) if kept]
        if len(found) >= pool or len(fetched) < fetch or fetch >= len(space):
            break
        fetch *= 4
    found = found[:pool]
    reliability = _reliability(catalog, found)
    if reliability is not None and found and (reliability < 1).any():
        # a tiny or blurred face's regions match little but each other (dark crops scored 5.5
        # of 7 against a video's query face): its region score is scaled down (and shown so)
        scaled = [(s * w if s > 0 else s, i) for (s, i), w in zip(found, reliability)]
        found = [scaled[n] for n in np.argsort(-np.asarray([s for s, _ in scaled]), kind="stable")]
    if request.attributes is not None and found:
        ids = np.array([i for _, i in found], np.int64)
        _, matrix = catalog.probabilities(ids, CELEBA_ATTRIBUTES)
        agreement = attribute_agreement(np.asarray(request.attributes, np.float32), matrix)
        value = [s + LOOKALIKE_AGREEMENT_WEIGHT * len(REGIONS) * a for (s, _), a in zip(found, agreement)]
        found = [found[n] for n in np.argsort(-np.asarray(value), kind="stable")]
    candidates = (_one_per_person(found, request.k, identity, catalog)
                  if request.match == "look-alike" and request.one_per_person else found[:request.k])
    ids = [i for _, i in candidates]
    return Ranked(vector, candidates, request.match,
                  _probabilities(ids, _identity_scores(identity, query_identity, ids),
                                 _conflicts(request, catalog, ids)))


def _one_per_person(found: list[tuple[float, int]], k: int, identity: Space, catalog: Catalog
                    ) -> list[tuple[float, int]]:
    """The first k of ranked (score, id) candidates keeping one face per person: a face is
    skipped when an earlier kept face is of its person (index.people) or is judged its person
    by identity (the calibrated threshold; faces not grouped into people): a casting desk
    wants other people, and the same stranger's second photo is no new answer to it (a
    trial's top 6 held two people twice each). Fewer than k when the pool holds fewer people.
    Not the default: on the validation galleries (29 and 30 identities) agreement falls from
    0.823 / 0.810 to 0.795 / 0.788 (fewer people to choose from; 44 of 330 aligned queries got
    fewer than 10 hits)."""
    if not found:
        return []
    ids = np.array([i for _, i in found], np.int64)
    persons = catalog.persons(ids)
    try:
        vectors = identity.reconstruct(ids)
    except KeyError:  # some lack an identity vector: only people tell them apart
        vectors = None
    threshold = calibration().threshold
    kept: list[int] = []
    seen: set[int] = set()
    for n in range(len(found)):
        if persons[n] >= 0 and int(persons[n]) in seen:
            continue
        if vectors is not None and kept and float((vectors[kept] @ vectors[n]).max()) >= threshold:
            continue
        kept.append(n)
        if persons[n] >= 0:
            seen.add(int(persons[n]))
        if len(kept) == k:
            break
    return [found[n] for n in kept]


def _conflicts(request: Request, catalog: Catalog, ids: list[int]) -> np.ndarray:
    """(len(ids),) bool: whether each stored face's gender head confidently disagrees with the
    query face's (models.arcface.genders_conflict); none when the query's probabilities are not
    known. A stored face without a gender reading reads 0.5 (terms.probability_matrix), which
    never conflicts."""
    if request.attributes is None or not ids:
        return np.zeros(len(ids), bool)
    known, matrix = catalog.probabilities(np.asarray(ids, np.int64), [MALE])
    column = COLUMNS.index(MALE)
    male = np.full(len(ids), np.nan)
    male[known] = matrix[:, column]
    return genders_conflict(float(np.asarray(request.attributes)[column]), male)


def _probabilities(ids: list[int], cosines: list[float], conflicts: np.ndarray) -> dict[int, float]:
    """{vector id: calibrated same-person probability (4 places)} of stored faces from their
    identity cosines with the query and whether their genders conflict with its (`_conflicts`);
    a face without an identity vector (a NaN cosine, `_identity_scores`) gets none."""
    probabilities = calibration().probability(np.array(cosines, np.float64), conflicts)
    return {i: round(float(p), 4) for i, p in zip(ids, probabilities) if not np.isnan(p)}


def attribute_agreement(query: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n,) the expected share of the 40 CelebA attributes on which each face agrees with the
    query face, reading each stored probability as the chance the face has the attribute:
    mean over attributes of p q + (1 - p)(1 - q). `query` (len(COLUMNS),), `probabilities`
    (n, len(COLUMNS)) in terms.COLUMNS order (the CelebA attributes come first)."""
    n = len(CELEBA_ATTRIBUTES)
    p, q = np.asarray(probabilities, np.float32)[:, :n], np.asarray(query, np.float32)[:n]
    return (p @ q + (1 - p) @ (1 - q)) / n


def _nearest(space: Space, catalog: Catalog, query: np.ndarray, n: int, where: Filter | None,
             names: Sequence[str] = ()) -> tuple[list[tuple[float, int]], np.ndarray, str]:
    """Step 3: the best (score, vector id) of one query vector in a space among the faces with
    a row (and meeting `where`): about `n`, more when vectors without rows were fetched past;
    their probability matrix (the columns `names` filled, terms.COLUMNS order); and how they
    were found ("plain", or a filtered search's "overfetch" / "restricted")."""
    strategy = "plain"
    if where is None:  # vectors left without rows by an interrupted run take places in the top n
        orphans = max(0, len(space) - catalog.count())
        scores, ids = space.search(query[None], min(n + orphans, max(len(space), 1)))
        scores, ids = scores[0], ids[0]
    else:
        found = search_filtered(catalog, space, query, n, where)
        scores, ids, strategy = found.scores, found.ids, found.strategy
    ids = np.asarray(ids, np.int64)
    keep = ids >= 0
    scores, ids = np.asarray(scores)[keep], ids[keep]
    known, probabilities = catalog.probabilities(ids, names)
    return [(float(s), int(i)) for s, i in zip(scores[known], ids[known])], probabilities, strategy


def _with_likeliest(request: Request, space: Space, catalog: Catalog, searched: np.ndarray,
                    pool: int, candidates: list[tuple[float, int]], probabilities: np.ndarray
                    ) -> tuple[list[tuple[float, int]], np.ndarray]:
    """Step 3b: a class without a centre (not in spec.CLASSES: emotions, pixel attributes such
    as red hair) cannot steer the query vector, so the pool also takes the `pool` faces most
    likely to have each such class the text asks for (not negated), with their (weighted)
    vector scores; the re-ranking then weighs them like the rest. Returns the candidates and
    their probability matrix, extended."""
    names = [term.name for term in request.terms
             if term.years is None and not term.negated and term.name not in CLASSES]
    if not names:
        return candidates, probabilities
    clause = request.where.clause(catalog.dialect) if request.where is not None else None
    seen = {i for _, i in candidates}
    extra: list[int] = []
    for name in names:
        for i in catalog.likeliest(name, pool, clause):
            if int(i) not in seen:
                seen.add(int(i))
                extra.append(int(i))
    if not extra:
        return candidates, probabilities
    ids = np.asarray(extra, np.int64)
    known, more = catalog.probabilities(ids, needed_columns(request.terms))
    ids = ids[known]
    scores = np.asarray(space.reconstruct(ids), np.float32) @ searched if len(ids) else []
    return (list(candidates) + [(float(s), int(i)) for s, i in zip(scores, ids)],
            np.concatenate([probabilities, more]) if len(ids) else probabilities)


def _search(space: Space, catalog: Catalog, query: np.ndarray, k: int, where: Filter | None
            ) -> list[tuple[float, int]]:
    """The k best (score, vector id) of one query vector in a space, among faces with a row
    (and meeting `where`)."""
    return _nearest(space, catalog, query, k, where)[0][:k]


def _same_person(identity: Space, catalog: Catalog, query: np.ndarray, threshold: float,
                 where: Filter | None) -> dict[int, float]:
    """{vector id: identity cosine} of every face (meeting `where`) judged the query's person:
    cosine at or above `threshold`."""
    fetch = SAME_PERSON_FETCH
    while True:
        found = _search(identity, catalog, query, fetch, where)
        if len(found) < fetch or found[-1][0] < threshold or fetch >= len(identity):
            return {i: s for s, i in found if s >= threshold}
        fetch *= 4


def _scores(space: Space, searched: np.ndarray, ids: list[int]) -> list[float]:
    """The (weighted) master scores of stored faces by vector id."""
    if not ids:
        return []
    return [float(v) for v in space.reconstruct(np.asarray(ids, np.int64)) @ searched]


def _identity_scores(identity: Space, query: np.ndarray, ids: list[int]) -> list[float]:
    """Identity cosines of stored faces with the query's identity vector; NaN for a face without
    an identity vector (indexed before the identity space, its photo missing since)."""
    if not ids:
        return []
    ids_array = np.asarray(ids, np.int64)
    try:
        return [float(v) for v in identity.reconstruct(ids_array) @ query]
    except KeyError:  # some lack one: the rare path
        scores = np.full(len(ids_array), np.nan)
        present = np.isin(ids_array, identity.ids())
        if present.any():
            scores[present] = identity.reconstruct(ids_array[present]) @ query
        return [float(v) for v in scores]


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

    def likeliest(self, name: str, n: int, clause=None) -> np.ndarray:
        return self.store.vector_ids_by(name, n, clause)

    def persons(self, ids: np.ndarray) -> np.ndarray:
        self.rows.update(self.store.faces_by_vector_ids([int(i) for i in ids if int(i) not in self.rows]))
        return np.array([self.rows[int(i)][0].person_id if int(i) in self.rows
                         and self.rows[int(i)][0].person_id is not None else -1 for i in ids], np.int64)

    def members(self, persons: Sequence[int]) -> np.ndarray:
        return vector_ids_of_persons(self.store, persons)

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
