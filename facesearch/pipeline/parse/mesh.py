"""The "mesh" parser backend: the 7 regions of an aligned face from face-mesh polygons and a
person mask (mediapipe's selfie segmentation).

Eyes, eyebrows, lips and nose are the convex hulls of their face-mesh points; face skin is the
face oval less those; hair is the person (mediapipe's selfie segmentation) outside the face oval
and above the chin; the rest is background. Each pixel belongs to exactly one region. The mesh is
the detection's `points["mesh"]` (the "mediapipe" detector gives one); a face without one is
drawn from the mean mesh stored with the descriptor's weights.
"""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facesearch.models import mediapipe as mediapipe_models
from facesearch.pipeline.parse.base import Parser
from facesearch.spec import REGIONS

if TYPE_CHECKING:
    from facesearch.pipeline.detect.base import Detection

#: Zoom of the crop the person segmenter sees (it works at 256 px; 112 px is too small).
SEGMENTER_ZOOM = 2
#: Person-mask probability above which a pixel is the person.
PERSON_THRESHOLD = 0.5


def _mesh_points(connections) -> tuple[int, ...]:
    return tuple(sorted({i for edge in connections for i in edge}))


class MeshParser(Parser):
    """Region masks from the face mesh and a person mask. Models load on first use; one instance
    per thread (mediapipe graphs are not shared)."""

    name = "mesh"

    @cached_property
    def mean_mesh(self) -> np.ndarray | None:
        """(468, 2) mean face mesh in crop pixels, for faces without a mesh; None without weights."""
        from facesearch.models.descriptor import mean_mesh

        return mean_mesh()

    @cached_property
    def _parts(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        groups = {name: _mesh_points(edges)
                  for name, edges in mediapipe_models.mesh_connections().items()}
        return {
            "face_oval": (groups["FACEMESH_FACE_OVAL"],),
            "nose": (groups["FACEMESH_NOSE"],),
            "eyes": (groups["FACEMESH_LEFT_EYE"], groups["FACEMESH_RIGHT_EYE"]),
            "eyebrows": (groups["FACEMESH_LEFT_EYEBROW"], groups["FACEMESH_RIGHT_EYEBROW"]),
            "lips": (groups["FACEMESH_LIPS"],),
        }

    @cached_property
    def _person(self):
        return mediapipe_models.person_segmenter()

    def person_probability(self, crop: np.ndarray, zoom: int = SEGMENTER_ZOOM) -> np.ndarray:
        """Float32 (H, W) person probability 0..1 of an RGB crop: one selfie segmentation of the
        crop enlarged `zoom` times (the segmenter works at 256 x 256; 1: as it is)."""
        height, width = crop.shape[:2]
        if zoom == 1:
            return mediapipe_models.run(self._person, crop).segmentation_mask
        big = cv2.resize(crop, (width * zoom, height * zoom), interpolation=cv2.INTER_LINEAR)
        probability = mediapipe_models.run(self._person, big).segmentation_mask
        return cv2.resize(probability, (width, height), interpolation=cv2.INTER_AREA)

    def person_mask(self, crop: np.ndarray) -> np.ndarray:
        """Boolean (H, W) mask of the person in an aligned crop (segmented on its own)."""
        return self.person_probability(crop) > PERSON_THRESHOLD

    def masks(self, crop: np.ndarray, face: Detection, person: np.ndarray | None = None
              ) -> np.ndarray | None:
        """One-hot float32 masks (7, H, W) in REGIONS order of an aligned crop, drawn from the
        face's mesh (crop pixels), else the mean mesh; None when neither exists. `person`: the
        crop's (H, W) bool person mask when the caller has it (FacePreparer warps it from the
        head crop's segmentation); else the crop is segmented here."""
        mesh = face.points.get("mesh")
        if mesh is None:
            mesh = self.mean_mesh
        if mesh is None:
            return None
        return self.mesh_masks(crop, mesh, person)

    def mesh_masks(self, crop: np.ndarray, mesh: np.ndarray, person: np.ndarray | None = None
                   ) -> np.ndarray:
        """One-hot float32 masks (7, H, W) in REGIONS order for a crop (any size) and a (468, 2)
        mesh in its pixels; `person`, the crop's person mask when already computed."""
        labels = self.mesh_labels(crop, mesh, person)
        return (labels[None] == np.arange(len(REGIONS))[:, None, None]).astype(np.float32)

    def mesh_labels(self, crop: np.ndarray, mesh: np.ndarray, person: np.ndarray | None = None
                    ) -> np.ndarray:
        """uint8 (H, W) region index (REGIONS order) of each pixel of a crop, as mesh_masks."""
        height, width = crop.shape[:2]
        labels = np.full((height, width), REGIONS.index("background"), dtype=np.uint8)
        oval = self._hull_mask(mesh, self._parts["face_oval"], (height, width))
        chin_y = mesh[list(self._parts["face_oval"][0]), 1].max()
        above_chin = (np.arange(height) < chin_y)[:, None]
        person = self.person_mask(crop) if person is None else person
        labels[person & ~oval & above_chin] = REGIONS.index("hair")
        labels[oval] = REGIONS.index("face_skin")
        for part in ("nose", "eyes", "eyebrows", "lips"):
            labels[self._hull_mask(mesh, self._parts[part], (height, width))] = REGIONS.index(part)
        return labels

    @staticmethod
    def _hull_mask(mesh: np.ndarray, groups, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=np.uint8)
        for group in groups:
            hull = cv2.convexHull(np.round(mesh[list(group)] * 4).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=2)
        return mask.astype(bool)

