"""The shipped descriptor model: weights, class centres and mean mesh, loaded once, run on faces."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from facesearch.spec import AGE_KEY, CLASSES, MASTER, MIRROR_AVERAGING, REGION_DIM, REGIONS, VECTOR_DIM
from facesearch.errors import FaceSearchError
from facesearch.models.base import Embedder, Embeddings
from facesearch.models.network import DescriptorNet, class_probabilities, to_images
from facesearch.settings import Settings

from facesearch.models.shipped import (CENTRES_KEY, MEAN_MESH_KEY, MODEL_CARD, WEIGHTS_DIR,  # noqa: F401
                                       WEIGHTS_FILE, weights_metadata)


@dataclass
class MasterEmbeddings(Embeddings):
    """Descriptor network outputs for a batch of N faces: master vectors and attributes."""

    # vectors: (N, 364) float32, 7 unit-norm blocks in spec.REGIONS order
    probabilities: np.ndarray  # (N, len(CLASSES)) float32
    ages: np.ndarray           # (N,) float32 years

    def attributes(self, i: int) -> dict[str, float]:
        """Face i's class probabilities by class name, plus the age estimate."""
        values = {name: round(float(p), 4) for name, p in zip(CLASSES, self.probabilities[i])}
        values[AGE_KEY] = round(float(self.ages[i]), 1)
        return values


class DescriptorModel(Embedder):
    """The trained network plus its class centres (the mean master vector of each class): the
    "master" embedder, 364 dims. Raises FaceSearchError when the weights are missing."""

    name = MASTER
    dim = VECTOR_DIM
    uses_masks = True

    @classmethod
    def from_settings(cls, settings: Settings) -> DescriptorModel:
        """The shipped model, loaded once per process (what the embedder registry calls)."""
        return shipped_model()

    def __init__(self, weights: Path = WEIGHTS_FILE):
        if not weights.exists():
            raise FaceSearchError(f"model weights not found at {weights}; run `facesearch train`")
        tensors = load_file(str(weights))
        self.centres = tensors.pop(CENTRES_KEY).float().numpy()
        tensors.pop(MEAN_MESH_KEY)
        self.network = DescriptorNet()
        self.network.load_state_dict({k: v.float() for k, v in tensors.items()})
        self.network.eval()
        self.metadata: dict[str, str] = weights_metadata(weights)
        self.version = self.metadata.get("version", "unknown")

    def embed(self, crops: np.ndarray, grid_masks: np.ndarray | None = None) -> MasterEmbeddings:
        """Aligned crops (N, 112, 96, 3) uint8 and grid masks (N, 7, 7, 6) -> master vectors
        (N, 364) float32, class probabilities and ages. FaceSearchError without grid masks."""
        if grid_masks is None:
            raise FaceSearchError("the master descriptor needs the faces' region masks (grid_masks)")
        return embed_faces(self.network, crops, grid_masks)


@torch.no_grad()
def embed_faces(network: DescriptorNet, crops: np.ndarray, grid_masks: np.ndarray,
                   batch_size: int = 128, mirror: bool = MIRROR_AVERAGING) -> MasterEmbeddings:
    """Run a descriptor network (in eval mode) over aligned crops and their grid masks; with
    `mirror`, over each face and its mirror image, averaged (spec.MIRROR_AVERAGING)."""
    network.eval()
    device = next(network.parameters()).device
    vectors, probabilities, ages = [], [], []
    for start in range(0, len(crops), batch_size):
        images = to_images(crops[start:start + batch_size]).to(device)
        masks = torch.from_numpy(np.asarray(grid_masks[start:start + batch_size], np.float32)).to(device)
        v, logits = network(images, masks)
        if mirror:
            v_mirrored, logits_mirrored = network(images.flip(-1), masks.flip(-1))
            blocks = (v + v_mirrored).view(len(v), len(REGIONS), REGION_DIM)
            v = torch.nn.functional.normalize(blocks, dim=-1).flatten(1)
            logits = (logits + logits_mirrored) / 2
        p, a = class_probabilities(logits)
        vectors.append(v.cpu().numpy())
        probabilities.append(p.cpu().numpy())
        ages.append(a.cpu().numpy())
    if not vectors:
        return MasterEmbeddings(np.zeros((0, VECTOR_DIM), np.float32),
                                np.zeros((0, len(CLASSES)), np.float32), np.zeros(0, np.float32))
    return MasterEmbeddings(np.concatenate(vectors), np.concatenate(probabilities), np.concatenate(ages))


@lru_cache(maxsize=1)
def shipped_model() -> DescriptorModel:
    """The model that ships in the package, loaded once per process."""
    return DescriptorModel()


def mean_mesh(weights: Path = WEIGHTS_FILE) -> np.ndarray | None:
    """The mean face mesh stored with the weights (read alone, without loading the network)."""
    if not weights.exists():
        return None
    with safe_open(str(weights), framework="np") as tensors:
        return tensors.get_tensor(MEAN_MESH_KEY).astype(np.float32)


def save_model(network: DescriptorNet, centres: np.ndarray, mean_mesh: np.ndarray,
               metadata: dict[str, str], weights: Path = WEIGHTS_FILE) -> None:
    """Write float16 safetensors: the network, the class centres and the mean mesh."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in network.state_dict().items()
               if v.is_floating_point()}
    tensors |= {k: v for k, v in network.state_dict().items() if not v.is_floating_point()}
    tensors[CENTRES_KEY] = torch.from_numpy(centres).to(torch.float16)
    tensors[MEAN_MESH_KEY] = torch.from_numpy(mean_mesh).to(torch.float16)
    save_file(tensors, str(weights), metadata=metadata)
