"""Query vectors in master-vector space, and the text-query ranking shared by the API and the eval.

A description becomes directions in class-centre space: for each understood class j, the shift
from the average face to its centre c_j, block by block, scaled to unit length so that every
class named counts alike. A class steers the blocks of the regions it lives in
(spec.CLASS_REGIONS); other blocks keep OFF_REGION_WEIGHT of its shift. The nearest faces to
that vector (a pool of `pool_size(k)`) are then re-ranked by how well their stored class
probabilities fit the description (`class_fit`: the weighted geometric mean, over the terms, of
the probability of each class, or of its absence for a negated one), the vector score breaking
ties; a face of low quality (pipeline.detect.quality.RELIABLE_QUALITY) has its fit scaled down, its classes
being guesses. A text hit's score is that fit (0..1) + RERANK_VECTOR_WEIGHT x the centre-space score. A
mixed query (face + text) moves the face's blocks toward the classes, then re-ranks its pool by
face similarity + MIXED_FIT_WEIGHT x log(fit).

Region weights scale a query's blocks (`region_weights`, `weighted`), so its inner product with
a stored vector is the weighted sum of the seven region similarities.

search/planner.py runs these steps in order for `FaceSearch.query`, the text evaluation and the
benchmarks alike. The measured effect of every step and setting is in the docstring of
facesearch/training/text_eval.py.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facesearch.search.terms import ClassTerm, class_fit, needed_columns, probability_matrix
from facesearch.errors import FaceSearchError
from facesearch.spec import CENTRED_CLASSES, CLASS_REGIONS, CLASSES, GENDERS, REGION_DIM, REGIONS

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


@dataclass(frozen=True)
class RankingSettings:
    """How a text or mixed query is ranked (the eval switches steps off to measure them)."""

    off_region_weight: float = OFF_REGION_WEIGHT
    unit_terms: bool = True          # every class's shift scaled to unit length before summing
    rerank: bool = True              # re-rank the pool by stored class probabilities
    pool_per_hit: int = RERANK_POOL
    min_pool: int = MIN_POOL
    vector_weight: float = RERANK_VECTOR_WEIGHT
    mixed_fit_weight: float = MIXED_FIT_WEIGHT


DEFAULT = RankingSettings()


def _blocks(vector: np.ndarray) -> np.ndarray:
    return vector.reshape(len(REGIONS), REGION_DIM)


def average_face(centres: np.ndarray) -> np.ndarray:
    """The mean master vector, estimated as the mean of the two gender centres."""
    return centres[[CLASSES.index(g) for g in GENDERS]].mean(0)


def class_shift(term: ClassTerm, centres: np.ndarray, settings: RankingSettings = DEFAULT) -> np.ndarray:
    """(7, 52) signed, weighted shift from the average face toward (or away from) a class; zeros
    for a class without a centre (pixel attributes; emotions when `centres`, rows in
    spec.CENTRED_CLASSES order, lacks their rows: no emotion head ships), which steers the
    ranking through its probability alone (`rerank`, planner's pool)."""
    row = CENTRED_CLASSES.index(term.name) if term.name in CENTRED_CLASSES else len(centres)
    if row >= len(centres):
        return np.zeros((len(REGIONS), REGION_DIM))
    shift = _blocks(centres[row] - average_face(centres)).astype(np.float64)
    home = np.array([region in CLASS_REGIONS[term.name] for region in REGIONS])
    shift[~home] *= settings.off_region_weight
    if settings.unit_terms:
        shift /= max(np.linalg.norm(shift), 1e-9)
    return shift * term.weight * (-1.0 if term.negated else 1.0)


def text_vector(terms: Sequence[ClassTerm], centres: np.ndarray,
                settings: RankingSettings = DEFAULT) -> np.ndarray:
    """A unit-norm query vector for a description's classes."""
    direction = sum(class_shift(term, centres, settings) for term in terms).reshape(-1)
    return (direction / max(np.linalg.norm(direction), 1e-9)).astype(np.float32)


def mixed_vector(face: np.ndarray, terms: Sequence[ClassTerm], centres: np.ndarray,
                 settings: RankingSettings = DEFAULT) -> np.ndarray:
    """A face's vector with the blocks the text speaks about moved toward the named classes."""
    blocks = _blocks(face).astype(np.float64).copy()
    shift = sum(class_shift(term, centres, settings) for term in terms)
    for b, region in enumerate(REGIONS):
        if any(region in CLASS_REGIONS.get(term.name, ()) for term in terms) and np.any(shift[b]):
            step = shift[b] / max(np.linalg.norm(shift[b]), 1e-9)
            moved = blocks[b] + MIXED_STRENGTH * step
            blocks[b] = moved / max(np.linalg.norm(moved), 1e-9)
    return blocks.reshape(-1).astype(np.float32)


# --- the ranking -----------------------------------------------------------------------------
def pool_size(k: int, settings: RankingSettings = DEFAULT) -> int:
    """Candidates to fetch for k re-ranked hits."""
    return max(k * settings.pool_per_hit, settings.min_pool) if settings.rerank else k


def rerank(terms: Sequence[ClassTerm], candidates: Sequence[tuple[float, int]],
           probabilities: np.ndarray | Sequence[Mapping[str, float]], mixed: bool = False,
           settings: RankingSettings = DEFAULT, reliability: np.ndarray | None = None
           ) -> list[tuple[float, int]]:
    """Re-rank (vector score, id) candidates by their stored class probabilities (a matrix in
    COLUMNS order, or the stored `attributes` dicts), best first.

    Text only: class_fit (times the candidates' `reliability`, (n,) in (0, 1], when given:
    terms.quality_weights) + vector_weight x vector score. Face and text (`mixed`): vector score
    (the face similarity) + mixed_fit_weight x log(class_fit). Unchanged without terms or with
    re-ranking switched off.
    """
    if not terms or not settings.rerank or not len(candidates):
        return list(candidates)
    if not isinstance(probabilities, np.ndarray):
        probabilities = probability_matrix(probabilities, needed_columns(terms))
    scores = np.array([score for score, _ in candidates], dtype=np.float64)
    fit = class_fit(terms, probabilities)
    if reliability is not None and not mixed:
        fit = fit * np.asarray(reliability, np.float64)
    if mixed:
        scores = scores + settings.mixed_fit_weight * np.log(fit)
    else:
        scores = fit + settings.vector_weight * scores
    order = np.argsort(-scores, kind="stable")
    return [(float(scores[i]), int(candidates[i][1])) for i in order]


# --- region weights -----------------------------------------------------------------------------
_REGION_ALIASES = {"skin": "face_skin", "face": "face_skin", "brows": "eyebrows",
                   "mouth": "lips", "bg": "background"}


def region_name(name: str) -> str:
    """The canonical region for a user's spelling (case, '-' or ' ' for '_', a few aliases)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _REGION_ALIASES.get(key, key)
    if key not in REGIONS:
        close = difflib.get_close_matches(key, REGIONS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise FaceSearchError(f"unknown region {name!r}{hint}; regions: {', '.join(REGIONS)}")
    return key


def parse_weights(text: str) -> dict[str, float]:
    """'hair=2,eyes=1,background=0' -> {'hair': 2.0, 'eyes': 1.0, 'background': 0.0}."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise FaceSearchError(f"--weights (weights=): {part!r} is not REGION=NUMBER (e.g. hair=2,eyes=1)")
        try:
            weights[region_name(name)] = float(value)
        except ValueError:
            raise FaceSearchError(f"--weights (weights=): {value.strip()!r} is not a number (in {part!r})") from None
    if not weights:
        raise FaceSearchError("--weights (weights=) is empty (e.g. hair=2,eyes=1,background=0)")
    return weights


def region_weights(weights: Mapping[str, float] | None = None, region: str | None = None
                   ) -> np.ndarray | None:
    """(7,) weights in REGIONS order, or None for the plain sum: `region` keeps that region only;
    `weights` scales the named regions (the others keep 1)."""
    if weights is None and region is None:
        return None
    if weights is not None and region is not None:
        raise FaceSearchError("give region weights or one region, not both")
    result = np.zeros(len(REGIONS)) if region is not None else np.ones(len(REGIONS))
    for name, value in ({region_name(region): 1.0} if region is not None else weights).items():
        value = float(value)
        if not math.isfinite(value):
            raise FaceSearchError(f"region weight {name}={value} is not a finite number")
        result[REGIONS.index(region_name(name))] = value
    if not np.any(result):
        raise FaceSearchError("every region weight is 0: nothing would be compared")
    return result


def weighted(vector: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """A query vector with each region's block scaled by its weight: because stored blocks are
    unit-norm, its inner product with a stored vector is the weighted sum of region scores."""
    if weights is None:
        return vector
    return (vector.reshape(len(REGIONS), REGION_DIM) * weights[:, None]).reshape(-1).astype(np.float32)
