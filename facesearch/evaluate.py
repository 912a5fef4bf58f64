"""Measuring a descriptor: identity retrieval, look-alike quality and attribute accuracy."""
from __future__ import annotations

import numpy as np

from .config import AGE_GROUPS, CELEBA_ATTRIBUTES, ETHNICITIES, GENDERS
from .dataset import UNKNOWN

#: Nearest other-identity faces compared in the look-alike measure.
LOOKALIKES = 10


def identity_retrieval(vectors: np.ndarray, identity: np.ndarray) -> dict[str, float]:
    """Leave-one-out mAP and rank-1: every face queries all others; same identity is relevant.

    Faces whose identity has no other face are not queries (they still act as distractors).
    """
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    average_precisions, rank1 = [], []
    for i in range(len(vectors)):
        if identity[i] == UNKNOWN:
            continue
        relevant = identity == identity[i]
        relevant[i] = False
        if not relevant.any():
            continue
        order = np.argsort(-similarity[i])[:-1]  # the query itself sorts last
        hits = relevant[order]
        precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
        average_precisions.append(precision_at_hit.mean())
        rank1.append(float(hits[0]))
    return {"mAP": float(np.mean(average_precisions)) if average_precisions else float("nan"),
            "rank1": float(np.mean(rank1)) if rank1 else float("nan"),
            "queries": len(rank1)}


def lookalike_agreement(vectors: np.ndarray, identity: np.ndarray, attributes: np.ndarray,
                        seed: int = 0) -> dict[str, float]:
    """Mean share of the 40 attributes a face shares with its 10 nearest faces of other
    identities, beside the same share for random pairs of different identities."""
    similarity = vectors @ vectors.T
    same = identity[:, None] == identity[None, :]
    similarity[same] = -np.inf
    nearest = np.argsort(-similarity, axis=1)[:, :LOOKALIKES]
    agreement = (attributes[:, None, :] == attributes[nearest]).mean(axis=(1, 2))
    rng = np.random.default_rng(seed)
    partners = rng.integers(0, len(vectors), size=(len(vectors), LOOKALIKES))
    valid = ~same[np.arange(len(vectors))[:, None], partners]
    random_agreement = (attributes[:, None, :] == attributes[partners]).mean(axis=2)[valid]
    return {"lookalike": float(agreement.mean()), "random": float(random_agreement.mean())}


def attribute_accuracy(probabilities: np.ndarray, ages: np.ndarray, celeba: np.ndarray,
                       gender: np.ndarray, age: np.ndarray, ethnicity: np.ndarray) -> dict:
    """Per-attribute accuracy over CelebA-labelled faces, gender accuracy, age MAE, ethnicity."""
    report: dict = {}
    labelled = celeba[:, 0] != UNKNOWN
    n_celeba = len(CELEBA_ATTRIBUTES)
    if labelled.any():
        predicted = probabilities[labelled, :n_celeba] > 0.5
        per_attribute = (predicted == (celeba[labelled] == 1)).mean(0)
        report["attributes"] = dict(zip(CELEBA_ATTRIBUTES, map(float, per_attribute)))
        report["attribute_mean"] = float(per_attribute.mean())
        majority = np.maximum(celeba[labelled].mean(0), 1 - celeba[labelled].mean(0))
        report["attribute_majority_baseline"] = float(majority.mean())
    gender_slice = slice(n_celeba, n_celeba + len(GENDERS))
    known = gender != UNKNOWN
    if known.any():
        report["gender"] = float((probabilities[known, gender_slice].argmax(1) == gender[known]).mean())
    aged = age != UNKNOWN
    if aged.any():
        report["age_mae"] = float(np.abs(ages[aged] - age[aged]).mean())
    ethnicity_start = n_celeba + len(GENDERS) + len(AGE_GROUPS)
    known = ethnicity != UNKNOWN
    if known.any():
        predicted = probabilities[known, ethnicity_start:ethnicity_start + len(ETHNICITIES)].argmax(1)
        report["ethnicity"] = float((predicted == ethnicity[known]).mean())
    return report
