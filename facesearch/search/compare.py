"""Same person or not: the faces of two photos compared pair by pair in the identity space, with
the calibrated probability of models.arcface (`FaceSearch.compare`, `facesearch compare A B`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesearch.models.arcface import calibration
from facesearch.pipeline.faces import Face


@dataclass
class Comparison:
    """One pair of faces: face `first` (0 = largest) of the first photo, face `second` of the
    second; their identity cosine (-1..1), the calibrated probability that they are one person
    (0-1), and the decision at the operating point (probability >= 0.5)."""

    first: int
    second: int
    first_bbox: list[float]
    second_bbox: list[float]
    similarity: float
    probability: float
    same_person: bool

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dict(vars(self))

    def summary(self) -> str:
        """One line: "face 0 - face 1: same person (probability 0.98, identity similarity 0.61)"."""
        verdict = "same person" if self.same_person else "not the same person"
        return (f"face {self.first} - face {self.second}: {verdict} (probability "
                f"{self.probability:.2f}, identity similarity {self.similarity:.3f})")


def compare_faces(first: list[Face], second: list[Face]) -> list[Comparison]:
    """Every pair (i, j) of faces of two photos, i over `first` then j over `second`, each with
    its identity vector (Face.identity, (512,) unit norm). ValueError if one lacks it."""
    if any(face.identity is None for face in (*first, *second)):
        raise ValueError("every face needs its identity vector")
    if not first or not second:
        return []
    cosines = np.stack([f.identity for f in first]) @ np.stack([f.identity for f in second]).T
    probabilities = calibration().probability(cosines)
    return [Comparison(i, j, a.bbox, b.bbox, round(float(cosines[i, j]), 4),
                       round(float(probabilities[i, j]), 4), bool(probabilities[i, j] >= 0.5))
            for i, a in enumerate(first) for j, b in enumerate(second)]
