"""From a photo to network inputs: detect every face, align it, cut its 7 region masks."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facesearch.pipeline import alignment
from facesearch.pipeline.detect.mediapipe import FaceDetector
from facesearch.settings import DEFAULTS, Settings
from facesearch.pipeline.parse.mesh import RegionSegmenter, coarse_masks


@dataclass
class PreparedFace:
    """A face ready for the descriptor network, with its place in the original photo."""

    bbox: np.ndarray        # (4,) x0, y0, x1, y1 in pixels of the original photo
    landmarks: np.ndarray   # (5, 2) in pixels of the original photo
    score: float            # detector confidence
    crop: np.ndarray        # (112, 96, 3) uint8 aligned face
    masks: np.ndarray       # (7, 112, 96) one-hot region masks of the crop
    mesh: np.ndarray        # (468, 2) face mesh in crop pixels
    mesh_found: bool        # False: `mesh` is the mean mesh

    @property
    def grid_masks(self) -> np.ndarray:
        """The masks at the feature-map grid, as the network takes them."""
        return coarse_masks(self.masks)


class FacePreparer:
    """Detection -> alignment -> region masks. Create once; models load on first use."""

    def __init__(self, settings: Settings = DEFAULTS, detector: FaceDetector | None = None):
        self.detector = detector or FaceDetector(min_score=settings.min_detection_score)
        self.segmenter = RegionSegmenter()

    @cached_property
    def mean_mesh(self) -> np.ndarray | None:
        from facesearch.models.descriptor import mean_mesh

        return mean_mesh()

    def prepare(self, pixels: np.ndarray, scale: float = 1.0) -> list[PreparedFace]:
        """Every face of an RGB photo, largest first; `scale` maps pixels to original pixels."""
        faces = []
        for face in self.detector.detect(pixels):
            matrix = alignment.template_transform(face.landmarks)
            crop = alignment.warp(pixels, matrix)
            if face.mesh is not None:
                mesh = alignment.transform_points(face.mesh, matrix)
            elif self.mean_mesh is not None:
                mesh = self.mean_mesh
            else:
                continue
            faces.append(PreparedFace(bbox=face.bbox * scale, landmarks=face.landmarks * scale,
                                      score=face.score, crop=crop,
                                      masks=self.segmenter.masks(crop, mesh), mesh=mesh,
                                      mesh_found=face.mesh is not None))
        return faces
