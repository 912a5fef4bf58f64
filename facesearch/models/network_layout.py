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
#: The weights' (2, len(AGE_GROUPS)) mean and standard deviation, per age group, of the logit of
#: the network's own P(Young) (the CelebA attribute) on training faces of known age (UTKFace),
#: and (1,) the weight given to that evidence (training.age_evidence). The age-group heads learnt
#: ages from UTKFace's tight chips alone; CelebA's Young head learnt from photos with hats,
#: glasses and make-up. The age-group probabilities are multiplied by the likelihood of the
#: face's P(Young) under each group (Gaussian in logit space) raised to the weight, and the age
#: is read from the result, so a face the Young head calls young is read younger when the age
#: heads are unsure (not when they are sure). Zeros where the weights predate it: not applied.
AGE_YOUNG_EVIDENCE = "age_young_evidence"
AGE_YOUNG_WEIGHT = "age_young_weight"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


#: Where the Young attribute sits among the CelebA attributes (and so in the probabilities).
YOUNG = CELEBA_ATTRIBUTES.index("Young")


def young_logit(young: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of P(Young) values (any shape), p clipped to [1e-4, 1 - 1e-4]."""
    p = np.clip(np.asarray(young, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def with_young_evidence(groups: np.ndarray, young: np.ndarray, evidence: np.ndarray,
                        weight: float) -> np.ndarray:
    """Age-group probabilities (N, len(AGE_GROUPS)) times each group's likelihood of the faces'
    P(Young) (N,), a Gaussian in logit space with the group's (mean, sd) of `evidence` (2, G),
    raised to `weight`, renormalised (AGE_YOUNG_EVIDENCE); float32, same shape."""
    mean, sd = np.asarray(evidence, np.float64)[0], np.maximum(np.asarray(evidence, np.float64)[1], 1e-3)
    log_likelihood = -0.5 * ((young_logit(young)[:, None] - mean[None]) / sd[None]) ** 2 - np.log(sd)[None]
    log_posterior = np.log(np.maximum(np.asarray(groups, np.float64), 1e-12)) + weight * log_likelihood
    posterior = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
    return (posterior / posterior.sum(axis=1, keepdims=True)).astype(np.float32)


def class_probabilities(logits: np.ndarray, age_group_means: np.ndarray | None = None,
                        age_top_share: float = 0.0, young_evidence: np.ndarray | None = None,
                        young_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, N_LOGITS) -> (probabilities (N, len(spec.CLASSES)) float32 in spec.CLASSES
    order, age (N,) float32 in years): sigmoid for the CelebA attributes, a softmax per group
    (gender, age group, ethnicity), the age groups weighed by the evidence of the Young
    attribute when `young_evidence` (2, G) is given with a weight (AGE_YOUNG_EVIDENCE,
    `with_young_evidence`); the age the expected age over the age groups' probabilities
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
    if young_evidence is not None and young_weight > 0 and np.any(young_evidence):
        probabilities[:, HEADS["age_group"]] = with_young_evidence(
            probabilities[:, HEADS["age_group"]], probabilities[:, YOUNG], young_evidence, young_weight)
    regression = np.maximum(logits[:, HEADS["age"]][:, 0], 0) * AGE_SCALE
    if age_group_means is not None and np.any(age_group_means):
        groups = probabilities[:, HEADS["age_group"]]
        means = np.asarray(age_group_means, np.float32)
        ages = groups @ means + groups[:, -1] * float(age_top_share) * np.maximum(regression - means[-1], 0)
    else:
        ages = regression
    return probabilities, ages.astype(np.float32)
