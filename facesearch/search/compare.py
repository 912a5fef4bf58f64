"""Same person or not: the faces of two photos (or videos, whose faces are tracks) compared pair
by pair in the identity space, with the calibrated probability of models.arcface (lowered for
a pair whose gender heads confidently disagree: models.arcface.genders_conflict)
(`FaceSearch.compare`, `facesearch compare A B`; render.comparisons_table prints them)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from facesearch.models.arcface import (MALE, SAME_PERSON_PROBABILITY,
                                       calibration, genders_conflict, unreliable_age)
from facesearch.pipeline.faces import Face, TrackSpan
from facesearch.pipeline.detect.quality import RELIABLE_QUALITY, is_low_quality
from facesearch.spec import AGE_KEY


@dataclass
class Comparison:
    """One pair of faces: face `first` (0 = largest) of the first photo, face `second` of the
    second; their identity cosine (-1..1), the calibrated probability that they are one person
    (0-1), and the decision at the operating point (SAME_PERSON_PROBABILITY); `reliable` False
    when either face is estimated younger than models.arcface.RELIABLE_FROM_AGE or at least
    RELIABLE_UNTIL_AGE (young children and the very old are told apart poorly) or is of low quality (pipeline.detect.quality.RELIABLE_QUALITY: about 20 px or
    smaller, or badly blurred), `why` then saying which; `genders_conflict` True when their
    gender heads confidently disagree, which lowers the probability (models.arcface
    genders_conflict). A video's face is a track:
    `first_track` / `second_track` say which and when (seconds), None for a photo's face."""

    first: int
    second: int
    first_bbox: list[float]
    second_bbox: list[float]
    similarity: float
    probability: float
    same_person: bool
    reliable: bool = True
    first_track: TrackSpan | None = None
    second_track: TrackSpan | None = None
    why: str = ""
    genders_conflict: bool = False

    def to_dict(self) -> dict:
        """JSON-ready fields; a video face's track as `first_track` / `second_track` (track_id,
        start, end, time in seconds, frames), left out for a photo's face."""
        fields = {key: value for key, value in vars(self).items() if not key.endswith("_track")}
        for key in ("first_track", "second_track"):
            if getattr(self, key) is not None:
                fields[key] = getattr(self, key).to_dict()
        return fields


def compare_faces(first: list[Face], second: list[Face], same_photo: bool = False) -> list[Comparison]:
    """Every pair (i, j) of faces of two photos, i over `first` then j over `second`, each with
    its identity vector (Face.identity, (512,) unit norm); with `same_photo` (one photo's faces
    against each other) only i < j, when there are several. ValueError if one lacks it."""
    if any(face.identity is None for face in (*first, *second)):
        raise ValueError("every face needs its identity vector")
    if not first or not second:
        return []
    cosines = np.stack([f.identity for f in first]) @ np.stack([f.identity for f in second]).T
    conflict = genders_conflict(_males(first)[:, None], _males(second)[None, :])
    probabilities = calibration().probability(cosines, conflict)
    pairs = []
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            if same_photo and len(first) > 1 and j <= i:
                continue
            why = unreliable_because(a.attributes, b.attributes)
            pairs.append(Comparison(i, j, a.bbox, b.bbox, round(float(cosines[i, j]), 4),
                                    round(float(probabilities[i, j]), 4),
                                    bool(probabilities[i, j] >= SAME_PERSON_PROBABILITY), not why,
                                    a.track, b.track, why, bool(conflict[i, j])))
    return pairs


def _males(faces: list[Face]) -> np.ndarray:
    """(n,) the faces' P(male) by the gender head (attribute MALE; NaN where not estimated)."""
    return np.array([np.nan if face.attributes.get(MALE) is None else face.attributes[MALE]
                     for face in faces], np.float64)


def unreliable_because(*faces: Mapping[str, float]) -> str:
    """Why a same-person call between faces (their stored `attributes`) is not to be trusted, or
    '' when it is: one is estimated younger than RELIABLE_FROM_AGE or at least
    RELIABLE_UNTIL_AGE (models.arcface.unreliable_age), or its quality is under
    pipeline.detect.quality.RELIABLE_QUALITY (a 25 px face of quality 0.06 was called the same person as a
    stranger at 0.60 in a new user's trial)."""
    for face in faces:
        why = unreliable_age(face.get(AGE_KEY))
        if why:
            return why
    if any(is_low_quality(face) for face in faces):
        return f"a face of quality under {RELIABLE_QUALITY:g} (tiny or blurred)"
    return ""
