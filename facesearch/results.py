"""What the API hands back: faces found in a photo and search hits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import REGION_DIM, REGIONS


@dataclass
class Face:
    """A face found in a photo: its master vector, where it is, and its predicted classes."""

    vector: np.ndarray          # (364,) float32: 7 unit-norm blocks in REGIONS order
    bbox: list[float]           # [x0, y0, x1, y1] in pixels of the original photo
    landmarks: list[list[float]]  # 5 points: eyes, nose tip, mouth corners
    attributes: dict[str, float]  # class -> probability, and "age" in years
    score: float                # detector confidence
    crop: np.ndarray = field(repr=False)   # aligned face (112, 96, 3)
    masks: np.ndarray = field(repr=False)  # region masks (7, 112, 96)

    def region_vector(self, region: str) -> np.ndarray:
        """The 52-dim block f_k of one region."""
        return region_block(self.vector, region)

    def to_dict(self) -> dict:
        return {"bbox": self.bbox, "landmarks": self.landmarks, "score": self.score,
                "attributes": self.attributes, "vector": self.vector.tolist()}


@dataclass
class Hit:
    """One search result: a stored face, its total score and the per-region similarities."""

    rank: int
    score: float
    path: str
    face_id: int
    bbox: list[float]
    regions: dict[str, float]
    attributes: dict[str, float]

    def to_dict(self) -> dict:
        return dict(vars(self))


def region_block(vector: np.ndarray, region: str) -> np.ndarray:
    """Slice one region's block out of a master vector."""
    start = REGIONS.index(region) * REGION_DIM
    return vector[..., start:start + REGION_DIM]


def region_similarities(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, 7) per-region dot products between one query (364,) and n stored vectors.

    Stored blocks have unit norm and query blocks are normalised here, so each value is that
    region's cosine; for a face query (unit blocks) they add up to the FAISS score.
    """
    blocks = vectors.reshape(len(vectors), len(REGIONS), REGION_DIM)
    query_blocks = query.reshape(len(REGIONS), REGION_DIM)
    query_blocks = query_blocks / np.maximum(np.linalg.norm(query_blocks, axis=1, keepdims=True), 1e-9)
    return np.einsum("nrd,rd->nr", blocks, query_blocks)
