"""Query vectors in master-vector space, and the text-query ranking shared by the API and the eval.

A description becomes directions in class-centre space: for each understood class j, the shift
from the average face to its centre c_j, block by block, scaled to unit length so that every
class named counts alike. A class steers the blocks of the regions it lives in
(config.CLASS_REGIONS); other blocks keep OFF_REGION_WEIGHT of its shift. The nearest faces to
that vector (a pool of `pool_size(k)`) are then re-ranked by how well their stored class
probabilities fit the description (`class_fit`: the weighted geometric mean, over the terms, of
the probability of each class, or of its absence for a negated one), the vector score breaking
ties. A text hit's score is that fit (0..1) + RERANK_VECTOR_WEIGHT x the centre-space score. A
mixed query (face + text) moves the face's blocks toward the classes, then re-ranks its pool by
face similarity + MIXED_FIT_WEIGHT x log(fit).

`FaceSearch.query` (FAISS + SQL) and `facesearch.text_eval` (numpy over validation faces, through
`search`) rank with the same `text_vector` / `mixed_vector`, `pool_size` and `rerank`. The
measured effect of every step and setting is in the docstring of facesearch/text_eval.py.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .config import (
    AGE_GROUPS,
    AGE_KEY,
    CLASS_REGIONS,
    CLASSES,
    GENDERS,
    REGION_DIM,
    REGIONS,
)
from .text import ClassTerm

#: Share of a class's centre shift kept in blocks of regions it does not live in.
OFF_REGION_WEIGHT = 0.5
#: How far a mixed query moves the face's blocks toward the described classes.
MIXED_STRENGTH = 1.0
#: Candidates fetched per requested hit before re-ranking by stored class probabilities ...
RERANK_POOL = 20
#: ... and at least this many (cheap next to the scan; a small k still gets a real choice).
MIN_POOL = 200
#: Weight of the centre-space score beside the class fit (in [0, 1]) when re-ranking text.
RERANK_VECTOR_WEIGHT = 0.05
#: Weight of log(class fit) beside the face similarity (sum of 7 cosines) in a mixed query.
MIXED_FIT_WEIGHT = 1.0
#: Probabilities are floored here before logs: one very unsure class cannot sink a face alone.
PROBABILITY_FLOOR = 0.01
#: Spread (years) of the age estimate around the true age, for the age-group fit from `age`.
AGE_SPREAD = 6.0

#: Columns of a probability matrix: every class, then the age estimate in years.
COLUMNS: tuple[str, ...] = (*CLASSES, AGE_KEY)
_AGE_GROUPS = {name: (first, last) for name, first, last in AGE_GROUPS}


@dataclass(frozen=True)
class Settings:
    """How a text or mixed query is ranked (the eval switches steps off to measure them)."""

    off_region_weight: float = OFF_REGION_WEIGHT
    unit_terms: bool = True          # every class's shift scaled to unit length before summing
    rerank: bool = True              # re-rank the pool by stored class probabilities
    pool_per_hit: int = RERANK_POOL
    min_pool: int = MIN_POOL
    vector_weight: float = RERANK_VECTOR_WEIGHT
    mixed_fit_weight: float = MIXED_FIT_WEIGHT


DEFAULT = Settings()


def _blocks(vector: np.ndarray) -> np.ndarray:
    return vector.reshape(len(REGIONS), REGION_DIM)


def average_face(centres: np.ndarray) -> np.ndarray:
    """The mean master vector, estimated as the mean of the two gender centres."""
    return centres[[CLASSES.index(g) for g in GENDERS]].mean(0)


def class_shift(term: ClassTerm, centres: np.ndarray, settings: Settings = DEFAULT) -> np.ndarray:
    """(7, 52) signed, weighted shift from the average face toward (or away from) a class."""
    shift = _blocks(centres[CLASSES.index(term.name)] - average_face(centres)).astype(np.float64)
    home = np.array([region in CLASS_REGIONS[term.name] for region in REGIONS])
    shift[~home] *= settings.off_region_weight
    if settings.unit_terms:
        shift /= max(np.linalg.norm(shift), 1e-9)
    return shift * term.weight * (-1.0 if term.negated else 1.0)


def text_vector(terms: Sequence[ClassTerm], centres: np.ndarray,
                settings: Settings = DEFAULT) -> np.ndarray:
    """A unit-norm query vector for a description's classes."""
    direction = sum(class_shift(term, centres, settings) for term in terms).reshape(-1)
    return (direction / max(np.linalg.norm(direction), 1e-9)).astype(np.float32)


def mixed_vector(face: np.ndarray, terms: Sequence[ClassTerm], centres: np.ndarray,
                 settings: Settings = DEFAULT) -> np.ndarray:
    """A face's vector with the blocks the text speaks about moved toward the named classes."""
    blocks = _blocks(face).astype(np.float64).copy()
    shift = sum(class_shift(term, centres, settings) for term in terms)
    for b, region in enumerate(REGIONS):
        if any(region in CLASS_REGIONS[term.name] for term in terms):
            step = shift[b] / max(np.linalg.norm(shift[b]), 1e-9)
            moved = blocks[b] + MIXED_STRENGTH * step
            blocks[b] = moved / max(np.linalg.norm(moved), 1e-9)
    return blocks.reshape(-1).astype(np.float32)


# --- class probabilities ---------------------------------------------------------------------
def probability_matrix(attributes: Sequence[Mapping[str, float]],
                       names: Sequence[str] = COLUMNS) -> np.ndarray:
    """(n, len(COLUMNS)) float32 from stored `attributes` dicts: the columns in `names` read
    (0.5 where a dict lacks one), the others left at 0.5."""
    matrix = np.full((len(attributes), len(COLUMNS)), 0.5, dtype=np.float32)
    for name in names:
        matrix[:, COLUMNS.index(name)] = [float(a.get(name, 0.5)) for a in attributes]
    return matrix


def needed_columns(terms: Sequence[ClassTerm]) -> list[str]:
    """The probability columns `term_probabilities` reads for these terms."""
    names = {term.name for term in terms}
    if names & set(GENDERS):
        names.add("Male")
    if names & set(_AGE_GROUPS):
        names.add(AGE_KEY)
    return sorted(names)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), vectorised (Abramowitz & Stegun 7.1.26 for erf: error below 2e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def term_probabilities(terms: Sequence[ClassTerm], probabilities: np.ndarray) -> np.ndarray:
    """(n, len(terms)): the probability that each face fits each term (1 - p if negated).

    Gender terms average the gender head with CelebA's `Male`; an age group averages the
    age-group head with the age estimate's chance to fall in the group (± AGE_SPREAD years):
    both heads are noisy alone, and neighbouring age groups are easily confused.
    """
    probabilities = np.asarray(probabilities).reshape(-1, len(COLUMNS))

    def column(name: str) -> np.ndarray:
        return probabilities[:, COLUMNS.index(name)].astype(np.float64)

    columns = []
    for term in terms:
        p = column(term.name)
        if term.name in GENDERS:
            male = column("Male")
            p = (p + (male if term.name == "male" else 1.0 - male)) / 2
        elif term.name in _AGE_GROUPS:
            first, last = _AGE_GROUPS[term.name]
            age = column(AGE_KEY)
            in_group = (_normal_cdf((last + 1 - age) / AGE_SPREAD)
                        - _normal_cdf((first - age) / AGE_SPREAD))
            p = (p + in_group) / 2
        columns.append(1.0 - p if term.negated else p)
    return np.stack(columns, axis=1) if columns else np.ones((len(probabilities), 0))


def class_fit(terms: Sequence[ClassTerm], probabilities: np.ndarray) -> np.ndarray:
    """(n,) in (0, 1]: weighted geometric mean over the terms of `term_probabilities`."""
    if not terms:
        return np.ones(len(probabilities))
    p = np.clip(term_probabilities(terms, probabilities), PROBABILITY_FLOOR, 1.0)
    weights = np.array([term.weight for term in terms])
    return np.exp(np.log(p) @ weights / max(weights.sum(), 1e-9))


def explain(terms: Sequence[ClassTerm], attributes: Mapping[str, float]) -> dict[str, float]:
    """Why a face fits a description: each understood term ("Blond_Hair", "NOT Eyeglasses")
    with the probability that the face fits it."""
    fits = term_probabilities(terms, probability_matrix([attributes], needed_columns(terms)))[0]
    return {f"{'NOT ' if t.negated else ''}{t.name}": round(float(p), 4)
            for t, p in zip(terms, fits)}


# --- the ranking -----------------------------------------------------------------------------
#: nearest(vector, n) -> (scores, ids): the n stored vectors with the largest inner product.
Nearest = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
#: fetch(ids) -> (known, probabilities): which ids have stored faces, and their probability
#: matrix rows (COLUMNS order), in the order of the known ids.
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def pool_size(k: int, settings: Settings = DEFAULT) -> int:
    """Candidates to fetch for k re-ranked hits."""
    return max(k * settings.pool_per_hit, settings.min_pool) if settings.rerank else k


def rerank(terms: Sequence[ClassTerm], candidates: Sequence[tuple[float, int]],
           probabilities: np.ndarray | Sequence[Mapping[str, float]], mixed: bool = False,
           settings: Settings = DEFAULT) -> list[tuple[float, int]]:
    """Re-rank (vector score, id) candidates by their stored class probabilities (a matrix in
    COLUMNS order, or the stored `attributes` dicts), best first.

    Text only: class_fit + vector_weight x vector score. Face and text (`mixed`): vector score
    (the face similarity) + mixed_fit_weight x log(class_fit). Unchanged without terms or with
    re-ranking switched off.
    """
    if not terms or not settings.rerank or not len(candidates):
        return list(candidates)
    if not isinstance(probabilities, np.ndarray):
        probabilities = probability_matrix(probabilities, needed_columns(terms))
    scores = np.array([score for score, _ in candidates], dtype=np.float64)
    fit = class_fit(terms, probabilities)
    if mixed:
        scores = scores + settings.mixed_fit_weight * np.log(fit)
    else:
        scores = fit + settings.vector_weight * scores
    order = np.argsort(-scores, kind="stable")
    return [(float(scores[i]), int(candidates[i][1])) for i in order]


def search(terms: Sequence[ClassTerm], centres: np.ndarray, k: int, nearest: Nearest,
           fetch: Fetch, face: np.ndarray | None = None, settings: Settings = DEFAULT,
           ) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """Rank stored faces for a text (`terms`), a face's vector (`face`), or both, the way
    `FaceSearch.query` does: query vector, `pool_size(k)` nearest, `rerank`.

    Returns the query vector and the k best (score, id), best first.
    """
    if face is None and not terms:
        raise ValueError("a query needs terms, a face, or both")
    if face is None:
        vector = text_vector(terms, centres, settings)
    elif terms:
        vector = mixed_vector(face, terms, centres, settings)
    else:
        vector = np.asarray(face, dtype=np.float32)
    scores, ids = nearest(vector, pool_size(k, settings) if terms else k)
    known, probabilities = fetch(np.asarray(ids, np.int64))
    candidates = [(float(s), int(i)) for s, i in zip(np.asarray(scores)[known], np.asarray(ids)[known])]
    return vector, rerank(terms, candidates, probabilities, face is not None, settings)[:k]
