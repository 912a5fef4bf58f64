"""Query vectors in master-vector space: from a face, from a description, or both.

A description becomes directions in class-centre space: for each understood class j, the shift
from the average face to its centre c_j, block by block. A class steers the blocks of the regions
it lives in (config.CLASS_REGIONS); other blocks get OFF_REGION_WEIGHT of its shift.
"""
from __future__ import annotations

import numpy as np

from .config import CLASS_REGIONS, CLASSES, GENDERS, REGION_DIM, REGIONS
from .text import ClassTerm

#: Share of a class's centre shift kept in blocks of regions it does not live in.
OFF_REGION_WEIGHT = 0.25
#: How far a mixed query moves the face's blocks toward the described classes.
MIXED_STRENGTH = 1.0
#: Candidates fetched per requested hit before re-ranking by stored class probabilities.
RERANK_POOL = 20
#: Weight of the vector score beside the class-probability evidence when re-ranking.
RERANK_VECTOR_WEIGHT = 0.5


def _blocks(vector: np.ndarray) -> np.ndarray:
    return vector.reshape(len(REGIONS), REGION_DIM)


def average_face(centres: np.ndarray) -> np.ndarray:
    """The mean master vector, estimated as the mean of the two gender centres."""
    return centres[[CLASSES.index(g) for g in GENDERS]].mean(0)


def class_shift(term: ClassTerm, centres: np.ndarray) -> np.ndarray:
    """(7, 52) signed, weighted shift from the average face toward (or away from) a class."""
    shift = _blocks(centres[CLASSES.index(term.name)] - average_face(centres)).copy()
    home = np.array([region in CLASS_REGIONS[term.name] for region in REGIONS])
    shift[~home] *= OFF_REGION_WEIGHT
    return shift * term.weight * (-1.0 if term.negated else 1.0)


def text_vector(terms: list[ClassTerm], centres: np.ndarray) -> np.ndarray:
    """A unit-norm query vector for a description's classes."""
    direction = sum(class_shift(term, centres) for term in terms).reshape(-1)
    return (direction / max(np.linalg.norm(direction), 1e-9)).astype(np.float32)


def mixed_vector(face: np.ndarray, terms: list[ClassTerm], centres: np.ndarray) -> np.ndarray:
    """A face's vector with the blocks the text speaks about moved toward the named classes."""
    blocks = _blocks(face).astype(np.float64).copy()
    shift = sum(class_shift(term, centres) for term in terms)
    for b, region in enumerate(REGIONS):
        if any(region in CLASS_REGIONS[term.name] for term in terms):
            step = shift[b] / max(np.linalg.norm(shift[b]), 1e-9)
            moved = blocks[b] + MIXED_STRENGTH * step
            blocks[b] = moved / max(np.linalg.norm(moved), 1e-9)
    return blocks.reshape(-1).astype(np.float32)


def class_evidence(terms: list[ClassTerm], attributes: dict[str, float]) -> float:
    """Mean log-probability that a face fits the terms (1 - p for a negated class)."""
    total, weights = 0.0, 0.0
    for term in terms:
        p = float(attributes.get(term.name, 0.5))
        p = 1.0 - p if term.negated else p
        total += term.weight * np.log(min(max(p, 1e-4), 1.0))
        weights += term.weight
    return total / max(weights, 1e-9)


def rerank_score(vector_score: float, terms: list[ClassTerm], attributes: dict[str, float]) -> float:
    """Text-query ranking: the class-probability evidence plus the centre-space score."""
    return class_evidence(terms, attributes) + RERANK_VECTOR_WEIGHT * vector_score
