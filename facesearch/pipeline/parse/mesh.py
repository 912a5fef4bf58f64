"""Region masks: the 7 facial regions of an aligned face, from face-mesh polygons and a person mask.

Eyes, eyebrows, lips and nose are the convex hulls of their face-mesh points; face skin is the
face oval less those; hair is the person (mediapipe's selfie segmentation) outside the face oval
and above the chin; the rest is background. Each pixel belongs to exactly one region.
"""
from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from facesearch.models import mediapipe as mediapipe_models
from facesearch.spec import FEATURE_GRID, REGIONS

#: Zoom of the crop the person segmenter sees (it works at 256 px; 112 px is too small).
SEGMENTER_ZOOM = 2
#: Person-mask probability above which a pixel is the person.
PERSON_THRESHOLD = 0.5
REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (40, 40, 40), "hair": (150, 75, 20), "face_skin": (240, 190, 150),
    "eyes": (40, 120, 255), "eyebrows": (120, 40, 160), "lips": (230, 30, 60),
    "nose": (40, 200, 90),
}


def _mesh_points(connections) -> tuple[int, ...]:
    return tuple(sorted({i for edge in connections for i in edge}))


class RegionSegmenter:
    """Makes the (7, H, W) one-hot region masks of an aligned face. Models load on first use."""

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

    def person_mask(self, crop: np.ndarray) -> np.ndarray:
        """Boolean (H, W) mask of the person in an aligned crop."""
        height, width = crop.shape[:2]
        big = cv2.resize(crop, (width * SEGMENTER_ZOOM, height * SEGMENTER_ZOOM),
                         interpolation=cv2.INTER_LINEAR)
        probability = mediapipe_models.run(self._person, big).segmentation_mask
        probability = cv2.resize(probability, (width, height), interpolation=cv2.INTER_AREA)
        return probability > PERSON_THRESHOLD

    def masks(self, crop: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """One-hot float32 masks (7, H, W) in REGIONS order for a crop and its mesh (crop pixels)."""
        height, width = crop.shape[:2]
        labels = np.full((height, width), REGIONS.index("background"), dtype=np.uint8)
        oval = self._hull_mask(mesh, self._parts["face_oval"], (height, width))
        chin_y = mesh[list(self._parts["face_oval"][0]), 1].max()
        above_chin = (np.arange(height) < chin_y)[:, None]
        labels[self.person_mask(crop) & ~oval & above_chin] = REGIONS.index("hair")
        labels[oval] = REGIONS.index("face_skin")
        for part in ("nose", "eyes", "eyebrows", "lips"):
            labels[self._hull_mask(mesh, self._parts[part], (height, width))] = REGIONS.index(part)
        return (labels[None] == np.arange(len(REGIONS))[:, None, None]).astype(np.float32)

    @staticmethod
    def _hull_mask(mesh: np.ndarray, groups, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=np.uint8)
        for group in groups:
            hull = cv2.convexHull(np.round(mesh[list(group)] * 4).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=2)
        return mask.astype(bool)


def coarse_masks(masks: np.ndarray) -> np.ndarray:
    """Region masks at the feature-map grid (7, 7, 6): the share of each cell, each mask's peak 1.

    Scaling each region to peak 1 keeps small regions (eyes, lips) from vanishing at stride 16.
    """
    grid_h, grid_w = FEATURE_GRID
    cells = np.stack([cv2.resize(mask, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
                      for mask in masks])
    peaks = cells.reshape(len(masks), -1).max(1)
    return (cells / np.maximum(peaks, 1e-6)[:, None, None]).astype(np.float32)


def overlay(crop: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The crop with each region tinted in its colour (for looking at masks)."""
    colors = np.array([REGION_COLORS[name] for name in REGIONS], dtype=np.float32)
    tint = np.tensordot(masks.transpose(1, 2, 0), colors, axes=1)
    return (crop * (1 - alpha) + tint * alpha).clip(0, 255).astype(np.uint8)

