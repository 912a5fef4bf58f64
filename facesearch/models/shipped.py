"""What the shipped descriptor weights say about themselves, read without torch: the model's
version (the safetensors header's metadata) and its class centres. A text query needs only
these, so it does not load the network (models/descriptor.py loads it for photos)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError

#: The shipped weights and their model card, inside the package (nothing is downloaded).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "descriptor.safetensors"
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"
CENTRES_KEY = "class_centres"
#: Mean face mesh in aligned-crop pixels: region polygons for a face whose mesh was not found.
MEAN_MESH_KEY = "mean_mesh"


def weights_metadata(weights: Path = WEIGHTS_FILE) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (8-byte header length, then JSON)."""
    with open(weights, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return header.get("__metadata__", {})


@dataclass(frozen=True)
class ModelCard:
    """A descriptor model's version and class centres ((n classes, 364) float32, in
    spec.CENTRED_CLASSES order: models.master_card appends the emotions' when their head ships)."""

    version: str
    centres: np.ndarray


@lru_cache(maxsize=1)
def shipped_card(weights: Path = WEIGHTS_FILE) -> ModelCard:
    """The shipped model's version and centres, read once per process (a few ms, no torch).
    Raises FaceSearchError when the weights are missing."""
    if not weights.exists():
        raise FaceSearchError(f"model weights not found at {weights}; run `facesearch train`")
    from safetensors import safe_open

    with safe_open(str(weights), framework="np") as tensors:
        centres = tensors.get_tensor(CENTRES_KEY).astype(np.float32)
    return ModelCard(weights_metadata(weights).get("version", "unknown"), centres)
