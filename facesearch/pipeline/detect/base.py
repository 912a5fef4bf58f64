"""The detector interface: an RGB image in, its faces out (box, score, 5 alignment landmarks).

A backend (one file each in this folder, chosen by name through `detect.detector`) subclasses
`Detector`. Whatever else a backend finds about a face (mediapipe's 468-point face mesh, say)
travels in `Detection.points` as named point sets, so that the pipeline can move them into the
aligned crop with the landmarks and a parser that wants them finds them there; a parser that
needs only the crop never looks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

import numpy as np

from facesearch.pipeline import alignment
from facesearch.pipeline.detect.quality import FaceQuality

if TYPE_CHECKING:
    from facesearch.settings import Settings


@dataclass
class Detection:
    """One face: where it is, how sure the detector is, and its 5 alignment landmarks.

    Every coordinate is in pixels of one image: the image given to the detector, or (after
    `transformed`) the aligned crop.
    """

    bbox: np.ndarray        # (4,) float: x0, y0, x1, y1
    score: float            # detector confidence in (0, 1]
    landmarks: np.ndarray   # (5, 2): left eye, right eye, nose tip, mouth left, mouth right
    #: Backend extras, each a (n, 2) point set in the same pixels, e.g. "mesh": (468, 2) (the
    #: mediapipe face mesh). A point set the backend could not find is absent, never None.
    points: dict[str, np.ndarray] = field(default_factory=dict)
    #: Degrees (0, 90, 180 or 270, counter-clockwise) the image was turned for this
    #: face to stand upright (a photo stored sideways); the landmarks keep the upright face's
    #: order, so aligning by them gives an upright crop. Coordinates stay in the image's pixels.
    rotation: int = 0
    #: The face's quality record (size, score, border cut, blur) when the backend measured it.
    quality: FaceQuality | None = None

    @property
    def area(self) -> float:
        """The box's area in square pixels."""
        return box_area(self.bbox)

    @property
    def mesh(self) -> np.ndarray | None:
        """The (468, 2) face mesh when the backend found one (points["mesh"]), else None."""
        return self.points.get("mesh")

    def transformed(self, matrix: np.ndarray) -> Detection:
        """This detection in other pixels, through a 2x3 affine `matrix` (e.g. image -> aligned
        crop): landmarks and points mapped, the box the bounding box of its mapped corners."""
        x0, y0, x1, y1 = self.bbox
        corners = alignment.transform_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), matrix)
        return Detection(bbox=np.concatenate([corners.min(0), corners.max(0)]), score=self.score,
                         landmarks=alignment.transform_points(self.landmarks, matrix),
                         points={name: alignment.transform_points(value, matrix)
                                 for name, value in self.points.items()},
                         rotation=self.rotation, quality=self.quality)


class Detector(ABC):
    """Finds every face in an RGB image. Create once and reuse; a backend loads its models on
    first use, so creating one is cheap. One instance is used by one thread at a time."""

    #: The backend's name, as Settings.detector and `detect.detector` spell it.
    name: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The backend configured by `settings` (what the registry calls); default: `cls()`."""
        return cls()

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces of an (H, W, 3) uint8 RGB image, largest box first, in its pixels; an
        empty list when there is none."""


def box_area(box: np.ndarray) -> float:
    """Area of an (x0, y0, x1, y1) box in square pixels."""
    return float((box[2] - box[0]) * (box[3] - box[1]))
