"""The measures of a descriptor: identity retrieval (mAP, rank-1), look-alike quality and attribute
accuracy, on arrays of vectors and labels (training.evaluate runs them on the shipped model)."""
from __future__ import annotations

import numpy as np

from facesearch.spec import AGE_GROUPS, CELEBA_ATTRIBUTES, ETHNICITIES, GENDERS
from facesearch.training.data import UNKNOWN

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


def identity_report(vectors: np.ndarray, identity: np.ndarray, celeba: np.ndarray) -> dict:
    """Identity retrieval and look-alike agreement over the faces that have an identity."""
    known = identity != UNKNOWN
    return (identity_retrieval(vectors[known], identity[known])
            | lookalike_agreement(vectors[known], identity[known], celeba[known]))


#: Rows of the printed table: (key, label, format, anchor or target).
TABLE_ROWS = (
    ("attribute_mean", "mean accuracy, 40 CelebA attributes", "{:.1%}", "target 90%; LNets+ANet 87%, ResNet-50 91.3%"),
    ("attribute_majority_baseline", "  majority-class baseline", "{:.1%}", ""),
    ("gender", "gender accuracy", "{:.1%}", "target 92%"),
    ("age_mae", "age MAE (years, UTKFace)", "{:.2f}", "target 6.5; CORAL 6.39"),
    ("ethnicity", "ethnicity accuracy (5 classes)", "{:.1%}", "target 80%"),
    ("mAP", "identity mAP (leave-one-out)", "{:.3f}", "target 0.6 x dlib"),
    ("rank1", "identity rank-1", "{:.1%}", ""),
    ("lookalike", "look-alike attribute agreement (10 NN)", "{:.3f}", "target > dlib"),
    ("random", "  random pairs", "{:.3f}", ""),
)


def format_table(report: dict, anchor: dict | None = None) -> str:
    """The evaluation as a text table, with dlib's figures beside ours where measured."""
    anchor = anchor or {}
    lines = [f"{'measure':<42} {'facesearch':>11} {'dlib':>8}  anchor / target",
             "-" * 100]
    for key, label, fmt, note in TABLE_ROWS:
        if key not in report:
            continue
        ours = fmt.format(report[key])
        theirs = fmt.format(anchor[key]) if key in anchor else ""
        lines.append(f"{label:<42} {ours:>11} {theirs:>8}  {note}")
    lines.append(f"faces: {report.get('faces', '?')}, identity queries: {report.get('queries', '?')}")
    return "\n".join(lines)


def bcubed(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """BCubed precision, recall and F of a clustering (Bagga & Baldwin 1998; Amigó et al. 2009).

    `predicted` (n,) int: each item's cluster, a negative value meaning "in no cluster" (each
    such item counts as a cluster of its own); `truth` (n,) int: each item's true class. For
    every item, precision is the share of its cluster that has its class, recall the share of
    its class that is in its cluster (both counting the item itself); the figures are the means
    over items and F their harmonic mean. ValueError if the shapes differ or there are no items.
    """
    predicted = np.asarray(predicted).reshape(-1)
    truth = np.asarray(truth).reshape(-1)
    if predicted.shape != truth.shape or not len(truth):
        raise ValueError("bcubed needs two label arrays of the same, non-zero length")
    clusters = predicted.astype(np.int64).copy()
    alone = clusters < 0
    clusters[alone] = clusters.max(initial=0) + 1 + np.arange(int(alone.sum()))  # own clusters
    _, cluster_index = np.unique(clusters, return_inverse=True)
    _, class_index = np.unique(truth, return_inverse=True)
    both = np.zeros((cluster_index.max() + 1, class_index.max() + 1), np.int64)
    np.add.at(both, (cluster_index, class_index), 1)
    shared = both[cluster_index, class_index].astype(np.float64)  # items of my cluster and class
    precision = float(np.mean(shared / both.sum(axis=1)[cluster_index]))
    recall = float(np.mean(shared / both.sum(axis=0)[class_index]))
    f = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f": f}


class ExactSpace:
    """Vectors in memory as search.planner's Space: exact inner products (as FAISS Flat), the
    ids being row numbers. `vectors` (n, d) float32; evaluations rank their galleries with it."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.asarray(vectors, np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (q, k): the k best rows for each query row (`restrict` unused:
        galleries are searched whole)."""
        scores = np.asarray(queries, np.float32).reshape(-1, self.vectors.shape[1]) @ self.vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), order

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these ids (n, d)."""
        return self.vectors[np.asarray(ids, np.int64)]

