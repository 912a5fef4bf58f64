"""The parser interface: an aligned face crop in, its 7 region masks out (spec.REGIONS order).

A backend (one file each in this folder, chosen by name through `parse.parser`) subclasses
`Parser`. It is handed the crop and the face's detection moved into crop pixels: a parser drawn
from landmarks or a dense mesh reads `face.points` (see `detect.base.Detection`), a learned
parser that needs only the pixels ignores `face`. `coarse_masks` takes any parser's masks to the
network's feature grid.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self

import cv2
import numpy as np

from facesearch.spec import FEATURE_GRID

if TYPE_CHECKING:
    from facesearch.pipeline.detect.base import Detection
    from facesearch.settings import Settings


class Parser(ABC):
    """Cuts an aligned face into the 7 regions. Create once and reuse; a backend loads its models
    on first use, so creating one is cheap. One instance is used by one thread at a time."""

    #: The backend's name, as Settings.parser and `parse.parser` spell it.
    name: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The backend configured by `settings` (what the registry calls); default: `cls()`."""
        return cls()

    @abstractmethod
    def masks(self, crop: np.ndarray, face: Detection) -> np.ndarray | None:
        """One-hot float32 masks (7, H, W) in spec.REGIONS order (every pixel in exactly one
        region) of an aligned (H, W, 3) uint8 RGB crop (H, W = spec.INPUT_SIZE: 112, 96), given
        the face's detection in crop pixels. None when this parser cannot parse the face (the
        face is then dropped)."""

    def masks_in_photo(self, pixels: np.ndarray, face: Detection, matrix: np.ndarray,
                       crop: np.ndarray) -> np.ndarray | None:
        """As `masks`, for a parser that reads the photo around the crop too: an (H, W, 3) uint8
        RGB photo, the face's detection in its pixels, the 2x3 photo -> aligned crop `matrix` and
        the aligned crop it cuts. Default: `masks` of the crop alone."""
        return self.masks(crop, face.transformed(matrix))


def coarse_masks(masks: np.ndarray) -> np.ndarray:
    """Region masks (7, H, W) at the feature-map grid (7, 7, 6) float32: the share of each cell,
    each mask scaled to peak 1 (an empty region stays 0).

    Scaling each region to peak 1 keeps small regions (eyes, lips) from vanishing at stride 16.
    """
    grid_h, grid_w = FEATURE_GRID
    cells = np.stack([cv2.resize(mask, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
                      for mask in masks])
    peaks = cells.reshape(len(masks), -1).max(1)
    return (cells / np.maximum(peaks, 1e-6)[:, None, None]).astype(np.float32)
