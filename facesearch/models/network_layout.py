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
#: The weights' (len(AGE_GROUPS),) mean age in years of each age group's training faces: the age
#: is read as the expected age over the age-group probabilities (DEX, "Deep EXpectation": Rothe,
#: Timofte and Van Gool, ICCV workshops 2015) rather than from the age head's regression. On the
#: 681 UTKFace validation faces of fs-mnv2-20261201-e30-s0-dlibkd-f8762b: MAE 4.91 years against
#: 5.54 (every age band but 0-9 better; on a sample of its training faces 2.87 against 3.67, where
#: it was chosen). Zeros where the weights predate it: the age head is read instead.
AGE_GROUP_MEANS = "age_group_means"
#: The weights' (1,) share of the age head's excess over the oldest group's mean that the oldest
#: group's probability adds: the expected age alone stops at that mean (80.0 years: 90- and
#: 99-year-olds read 80, and `age > 85` found no one), while the regression, read alone, is
#: worse overall. On a sample of UTKFace training faces (where it was chosen: 0, 0.25, 0.5, 0.75)
#: MAE 2.747 / 2.717 / 2.723 / 2.761 years; on the 681 validation faces 4.91 / 4.88 / 4.91 / 4.96,
#: those over 85 (11) 12.5 / 9.2 / 8.3 / 8.8. Zeros where the weights predate it.
AGE_TOP_SHARE = "age_top_share"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_probabilities(logits: np.ndarray, age_group_means: np.ndarray | None = None,
                        age_top_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, N_LOGITS) -> (probabilities (N, len(spec.CLASSES)) float32 in spec.CLASSES
    order, age (N,) float32 in years): sigmoid for the CelebA attributes, a softmax per group
    (gender, age group, ethnicity); the age the expected age over the age groups' probabilities
    given each group's mean age (`age_group_means`, AGE_GROUP_MEANS), the oldest group's
    probability adding `age_top_share` (AGE_TOP_SHARE) of the age head's excess over its mean;
    or without means (None or zeros) the age head x spec.AGE_SCALE, at least 0."""
    logits = np.asarray(logits, dtype=np.float32)
    probabilities = np.concatenate([
        1.0 / (1.0 + np.exp(-logits[:, HEADS["celeba"]])),
        _softmax(logits[:, HEADS["gender"]]),
        _softmax(logits[:, HEADS["age_group"]]),
        _softmax(logits[:, HEADS["ethnicity"]]),
    ], axis=1).astype(np.float32)
    regression = np.maximum(logits[:, HEADS["age"]][:, 0], 0) * AGE_SCALE
    if age_group_means is not None and np.any(age_group_means):
        groups = probabilities[:, HEADS["age_group"]]
        means = np.asarray(age_group_means, np.float32)
        ages = groups @ means + groups[:, -1] * float(age_top_share) * np.maximum(regression - means[-1], 0)
    else:
        ages = regression
    return probabilities, ages.astype(np.float32)
