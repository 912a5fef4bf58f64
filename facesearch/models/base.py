"""The embedder interface: aligned face crops in, one vector per face out, from a model that says
what it is (name, version, dim), so that vectors of different models are never compared.

`descriptor.DescriptorModel` (name "master", 364 dims, with class probabilities and age) is one;
`arcface.IdentityModel` (name "identity", 512 dims, on ArcFace-aligned crops) is another.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class Embeddings:
    """An embedder's outputs for a batch of N faces."""

    vectors: np.ndarray  # (N, dim) float32

    def __len__(self) -> int:
        return len(self.vectors)

    def attributes(self, i: int) -> dict[str, float]:
        """Face i's predicted attributes by name (class probabilities, "age" in years); none
        unless the embedder predicts some."""
        return {}


class Embedder(ABC):
    """A network that turns aligned faces into vectors. Loading happens in the constructor (or a
    loader such as `descriptor.shipped_model`); `embed` is then safe to call from one thread at
    a time."""

    #: The vector space's name ("master", "identity"): vectors of two names never compare.
    name: str = ""
    #: Length of each vector.
    dim: int = 0
    #: The weights' version (stored with every photo it described): vectors compare only
    #: within one version.
    version: str = "unknown"
    #: Whether `embed` needs the grid masks.
    uses_masks: bool = False
    #: Which aligned crop `embed` takes: "master" (the (112, 96) crop of spec.ALIGN_TEMPLATE,
    #: PreparedFace.crop) or "identity" (the (112, 112) ArcFace crop, PreparedFace.identity_crop).
    crop: str = "master"

    @abstractmethod
    def embed(self, crops: np.ndarray, grid_masks: np.ndarray | None = None) -> Embeddings:
        """Vectors (N, dim) float32 of N aligned (N, 112, 96, 3) uint8 RGB crops; `grid_masks`
        (N, 7, 7, 6) float32 are their region masks at the feature grid, for embedders that
        use them (`uses_masks`). Raises FaceSearchError when a needed input is missing."""
