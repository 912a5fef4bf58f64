"""The shipped descriptor model: weights, class centres and mean mesh, loaded once, run on faces."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import safe_open

from facesearch.spec import AGE_KEY, CLASSES, EMOTIONS, MASTER, MIRROR_AVERAGING, VECTOR_DIM, unit_blocks
from facesearch.errors import FaceSearchError
from facesearch.models.base import Embedder, Embeddings
from facesearch.models.emotion import EmotionHead, shipped_emotions, with_emotion_centres
from facesearch.models.threads import one_blas_thread
from facesearch.models.descriptor_numpy import BATCH as NUMPY_BATCH
from facesearch.models.descriptor_numpy import NumpyDescriptorNet
from facesearch.models.descriptor_onnx import onnx_backbone
from facesearch.models.network_layout import class_probabilities
from facesearch.settings import Settings

if TYPE_CHECKING:  # torch is imported only to train, evaluate or save (describing runs numpy)
    from facesearch.models.network import DescriptorNet

from facesearch.models.shipped import (CENTRES_KEY, MEAN_MESH_KEY, MODEL_CARD, WEIGHTS_DIR,  # noqa: F401
                                       WEIGHTS_FILE, weights_metadata)


@dataclass
class MasterEmbeddings(Embeddings):
    """Descriptor network outputs for a batch of N faces: master vectors and attributes."""

    # vectors: (N, 364) float32, 7 unit-norm blocks in spec.REGIONS order
    probabilities: np.ndarray  # (N, len(CLASSES)) float32
    ages: np.ndarray           # (N,) float32 years
    #: (N, 7) float32 probabilities of spec.EMOTIONS (models/emotion.py), None without a head.
    emotions: np.ndarray | None = None
    #: (N, network_layout.N_LOGITS) float32 classifier logits (mirror-averaged as the rest),
    #: what the probabilities and ages are read from (training reads them again, e.g.
    #: training.age_evidence); None for no faces.
    logits: np.ndarray | None = None

    def attributes(self, i: int) -> dict[str, float]:
        """Face i's class probabilities by class name, plus the age estimate and, when the
        emotion head ran, the 7 emotions' probabilities."""
        values = {name: round(float(p), 4) for name, p in zip(CLASSES, self.probabilities[i])}
        values[AGE_KEY] = round(float(self.ages[i]), 1)
        if self.emotions is not None:
            values |= {name: round(float(p), 4) for name, p in zip(EMOTIONS, self.emotions[i])}
        return values


class DescriptorModel(Embedder):
    """The trained network plus its class centres (the mean master vector of each class): the
    "master" embedder, 364 dims. `embed` runs the network in numpy (models/descriptor_numpy.py,
    no torch); `network`, the torch module (training, evaluation), is built when first asked for.
    Raises FaceSearchError when the weights are missing."""

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
        self.weights = weights
        with safe_open(str(weights), framework="np") as stored:
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
        self.centres = tensors.pop(CENTRES_KEY).astype(np.float32)
        tensors.pop(MEAN_MESH_KEY)
        self.numpy_network = NumpyDescriptorNet(tensors)
        # its convolutions on onnxruntime (models/descriptor_onnx.py), the rest in numpy
        self.numpy_network.backbone = onnx_backbone(self.numpy_network)
        self.metadata: dict[str, str] = weights_metadata(weights)
        self.version = self.metadata.get("version", "unknown")
        #: The emotion head trained on this model's vectors (models/emotion.py), or None.
        self.emotions = shipped_emotions(self.version)
        #: Class centres (len(CLASSES), 364), then the 7 emotions' when the head ships
        #: (spec.CENTRED_CLASSES order).
        self.centres = with_emotion_centres(self.centres, self.version)

    def embed(self, crops: np.ndarray, grid_masks: np.ndarray | None = None) -> MasterEmbeddings:
        """Aligned crops (N, 112, 96, 3) uint8 and grid masks (N, 7, 7, 6) -> master vectors
        (N, 364) float32, class probabilities and ages. FaceSearchError without grid masks."""
        if grid_masks is None:
            raise FaceSearchError("the master descriptor needs the faces' region masks (grid_masks)")
        with one_blas_thread():  # BLAS's spinning threads would take the other stages' CPU
            return embed_faces(self.numpy_network, crops, grid_masks, batch_size=NUMPY_BATCH,
                               emotions=self.emotions)

    @cached_property
    def network(self) -> DescriptorNet:
        """The torch network with these weights, in eval mode (imports torch; for training and
        evaluation: describing runs `numpy_network`)."""
        from safetensors.torch import load_file

        from facesearch.models.network import DescriptorNet

        tensors = load_file(str(self.weights))
        tensors.pop(CENTRES_KEY)
        tensors.pop(MEAN_MESH_KEY)
        network = DescriptorNet()
        network.load_state_dict({k: v.float() for k, v in tensors.items()})
        return network.eval()


def _torch_forward(network: DescriptorNet, with_features: bool = False):
    """A torch network as a numpy function: (images (B, 3, H, W), masks) -> (vectors, logits,
    backbone features flattened (B, 4032) or None without `with_features`), run in eval mode
    without gradients on the network's device (as NumpyDescriptorNet.outputs)."""
    import torch

    network.eval()
    device = next(network.parameters()).device

    def forward(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            x = torch.from_numpy(images).to(device)
            v, logits = network(x, torch.from_numpy(masks).to(device))
            features = network.features(x).flatten(1).cpu().numpy() if with_features else None
        return v.cpu().numpy(), logits.cpu().numpy(), features

    return forward


def embed_faces(network: DescriptorNet | NumpyDescriptorNet, crops: np.ndarray, grid_masks: np.ndarray,
                batch_size: int = 128, mirror: bool = MIRROR_AVERAGING,
                emotions: EmotionHead | None = None) -> MasterEmbeddings:
    """Run a descriptor network (the torch module, in eval mode, or its numpy forward) over
    aligned crops (N, 112, 96, 3) uint8 and their grid masks (N, 7, 7, 6); with `mirror`, over
    each face and its mirror image, averaged (spec.MIRROR_AVERAGING): the logits, and each
    region block then re-normalised. With an emotion head (models/emotion.py), also the 7
    emotions' probabilities, from the backbone features of the same pass beside the master
    vectors (the face's and its mirror image's logits averaged), or from what else it reads.
    Ages as network_layout.class_probabilities reads them with the network's age-group means."""
    reads_features = emotions is not None and emotions.reads != "vector"
    if isinstance(network, NumpyDescriptorNet):
        forward, means, top = network.outputs, network.age_group_means, network.age_top_share
        evidence, weight = network.age_young_evidence, network.age_young_weight
    else:
        forward, means = _torch_forward(network, reads_features), network.age_group_means.cpu().numpy()
        top = float(network.age_top_share[0])
        evidence, weight = network.age_young_evidence.cpu().numpy(), float(network.age_young_weight[0])
    vectors, probabilities, ages, expressions, all_logits = [], [], [], [], []
    for start in range(0, len(crops), batch_size):
        images = np.ascontiguousarray(crops[start:start + batch_size]).transpose(0, 3, 1, 2)
        images = np.ascontiguousarray(images, dtype=np.float32) / 255
        masks = np.ascontiguousarray(grid_masks[start:start + batch_size], dtype=np.float32)
        v, logits, features = forward(images, masks)
        features_mirrored = None
        if mirror:
            v_mirrored, logits_mirrored, features_mirrored = forward(
                np.ascontiguousarray(images[..., ::-1]), np.ascontiguousarray(masks[..., ::-1]))
            v = unit_blocks(v + v_mirrored)
            logits = (logits + logits_mirrored) / 2
        p, a = class_probabilities(logits, means, top, evidence, weight)
        vectors.append(v.astype(np.float32))
        probabilities.append(p)
        ages.append(a)
        all_logits.append(np.asarray(logits, np.float32))
        if reads_features:
            expressions.append(emotions.predict(
                emotions.inputs(features, v), None if features_mirrored is None else emotions.inputs(features_mirrored, v)))
    if not vectors:
        return MasterEmbeddings(np.zeros((0, VECTOR_DIM), np.float32),
                                np.zeros((0, len(CLASSES)), np.float32), np.zeros(0, np.float32),
                                None if emotions is None else np.zeros((0, len(EMOTIONS)), np.float32))
    embedded = MasterEmbeddings(np.concatenate(vectors), np.concatenate(probabilities), np.concatenate(ages),
                                logits=np.concatenate(all_logits))
    if emotions is not None:
        embedded.emotions = np.concatenate(expressions) if reads_features else emotions.predict(embedded.vectors)
    return embedded


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
    import torch
    from safetensors.torch import save_file

    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in network.state_dict().items()
               if v.is_floating_point()}
    tensors |= {k: v for k, v in network.state_dict().items() if not v.is_floating_point()}
    tensors[CENTRES_KEY] = torch.from_numpy(centres).to(torch.float16)
    tensors[MEAN_MESH_KEY] = torch.from_numpy(mean_mesh).to(torch.float16)
    save_file(tensors, str(weights), metadata=metadata)
