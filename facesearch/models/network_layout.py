"""The descriptor network's layout and the reading of its outputs, without torch.

Shared by the torch network (models/network.py: training, evaluation) and its numpy forward pass
(models/descriptor_numpy.py: what describing a photo runs, so that a query needs no torch). The
weights' shapes say the rest (channels, hidden widths).
"""
from __future__ import annotations

import numpy as np

from facesearch.spec import AGE_GROUPS, AGE_SCALE, CELEBA_ATTRIBUTES, ETHNICITIES, GENDERS

#: MobileNetV2 inverted-residual settings (expansion, channels, repeats, stride), cut at stride 16.
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
BACKBONE_CHANNELS = MOBILENET_STAGES[-1][1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Slices of the classifier's logits: binary CelebA attributes, then three softmax groups, age.
HEADS = {
    "celeba": slice(0, len(CELEBA_ATTRIBUTES)),
    "gender": slice(len(CELEBA_ATTRIBUTES), len(CELEBA_ATTRIBUTES) + len(GENDERS)),
}
HEADS["age_group"] = slice(HEADS["gender"].stop, HEADS["gender"].stop + len(AGE_GROUPS))
HEADS["ethnicity"] = slice(HEADS["age_group"].stop, HEADS["age_group"].stop + len(ETHNICITIES))
HEADS["age"] = slice(HEADS["ethnicity"].stop, HEADS["ethnicity"].stop + 1)
N_LOGITS = HEADS["age"].stop


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_probabilities(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, N_LOGITS) -> (probabilities (N, len(spec.CLASSES)) float32 in spec.CLASSES
    order, age (N,) float32 in years): sigmoid for the CelebA attributes, a softmax per group
    (gender, age group, ethnicity), the age head x spec.AGE_SCALE, at least 0."""
    logits = np.asarray(logits, dtype=np.float32)
    probabilities = np.concatenate([
        1.0 / (1.0 + np.exp(-logits[:, HEADS["celeba"]])),
        _softmax(logits[:, HEADS["gender"]]),
        _softmax(logits[:, HEADS["age_group"]]),
        _softmax(logits[:, HEADS["ethnicity"]]),
    ], axis=1).astype(np.float32)
    ages = (np.maximum(logits[:, HEADS["age"]][:, 0], 0) * AGE_SCALE).astype(np.float32)
    return probabilities, ages
