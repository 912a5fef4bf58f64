"""A face as the pipeline hands it back: `FaceSearch.describe(photo)` returns these."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesearch.spec import region_block


@dataclass
class Face:
    """A face found in a photo: its master vector, its identity vector, where it is, and its
    predicted classes.

    Not to be confused with `facesearch.index.store.FaceRow`, the stored row of an indexed face.
    """

    vector: np.ndarray          # (364,) float32: 7 unit-norm blocks in spec.REGIONS order
    bbox: list[float]           # [x0, y0, x1, y1] in pixels of the original photo
    landmarks: list[list[float]]  # 5 points: eyes, nose tip, mouth corners
    attributes: dict[str, float]  # class -> probability, and "age" in years
    score: float                # detector confidence
    crop: np.ndarray = field(repr=False)   # aligned face (112, 96, 3)
    masks: np.ndarray = field(repr=False)  # region masks (7, 112, 96)
    #: (512,) float32 unit-norm ArcFace identity vector (models/arcface.py): same person or not.
    identity: np.ndarray | None = field(default=None, repr=False)

    def region_vector(self, region: str) -> np.ndarray:
        """The 52-dim block f_k of one region."""
        return region_block(self.vector, region)

    def to_dict(self) -> dict:
        """JSON-ready: bbox, landmarks, score, attributes, the vector and the identity vector as
        lists."""
        return {"bbox": self.bbox, "landmarks": self.landmarks, "score": self.score,
                "attributes": self.attributes, "vector": self.vector.tolist(),
                "identity": None if self.identity is None else self.identity.tolist()}
